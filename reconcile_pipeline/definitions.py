"""The code location: ``dagster dev -w workspace.yaml`` or ``-m reconcile_pipeline.definitions``."""

from __future__ import annotations

import dagster as dg

from reconcile_pipeline.assets import ASSET_CHECKS, ASSETS
from reconcile_pipeline.io_manager import ProjectFramesIOManager
from reconcile_pipeline.jobs import reconcile_executor, reconcile_job
from reconcile_pipeline.resources import default_resources
from reconcile_pipeline.sensors import reconciliation_sensor

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=ASSET_CHECKS,
    jobs=[reconcile_job],
    sensors=[reconciliation_sensor],
    resources={**default_resources(), "frames_io_manager": ProjectFramesIOManager()},
    executor=reconcile_executor,
)
