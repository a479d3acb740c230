"""The code location: ``dg dev`` (or ``dagster-webserver -w workspace.yaml``) loads ``defs``."""

from __future__ import annotations

import dagster as dg

from reconcile_pipeline import settings
from reconcile_pipeline.assets import ASSETS
from reconcile_pipeline.dagster_env import apply_dagster_env_defaults
from reconcile_pipeline.jobs import reconcile_executor, reconcile_job
from reconcile_pipeline.loggers import console_logger
from reconcile_pipeline.resources import default_resources, from_env
from reconcile_pipeline.retention import RunRetention, purge_old_runs_job, retention_schedule
from reconcile_pipeline.sensors import reconciliation_sensor

apply_dagster_env_defaults()
settings.check_all()  # a bad setting fails the load here, with its name

defs = dg.Definitions(
    assets=ASSETS,
    jobs=[reconcile_job, purge_old_runs_job],
    sensors=[reconciliation_sensor],
    schedules=[retention_schedule],
    resources={
        **default_resources(),
        "retention": RunRetention(
            max_age_hours=from_env("RECONCILE_RUN_RETENTION_HOURS"),
            asset_history_days=from_env("RECONCILE_ASSET_HISTORY_DAYS"),
            keep_latest=from_env("RECONCILE_RUN_RETENTION_KEEP"),
        ),
    },
    executor=reconcile_executor,
    loggers={"console": console_logger},
)
