"""The code location: ``dagster dev -w workspace.yaml`` or ``-m reconcile_pipeline.definitions``."""

from __future__ import annotations

import dagster as dg

from reconcile_pipeline.assets import ASSET_CHECKS, ASSETS
from reconcile_pipeline.dagster_env import apply_dagster_env_defaults
from reconcile_pipeline.io_manager import ProjectFramesIOManager
from reconcile_pipeline.jobs import reconcile_executor, reconcile_job
from reconcile_pipeline.resources import default_resources, env_number, env_or
from reconcile_pipeline.retention import RunRetention, purge_old_runs_job, retention_schedule
from reconcile_pipeline.sensors import reconciliation_sensor

apply_dagster_env_defaults()

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=ASSET_CHECKS,
    jobs=[reconcile_job, purge_old_runs_job],
    sensors=[reconciliation_sensor],
    schedules=[retention_schedule],
    resources={
        **default_resources(),
        "frames_io_manager": ProjectFramesIOManager(base_dir=env_or("RECONCILE_FRAMES_DIR", "")),
        "retention": RunRetention(
            max_age_hours=env_number("RECONCILE_RUN_RETENTION_HOURS", 24.0),
            keep_latest=int(env_number("RECONCILE_RUN_RETENTION_KEEP", 100)),
        ),
    },
    executor=reconcile_executor,
)
