"""The reconcile job the sensor launches (its executor is the code location's: executors.py)."""

from __future__ import annotations

import dagster as dg

from reconcile_pipeline.concurrency import RUN_TAG
from reconcile_pipeline.defs.reconciliation.assets import ASSET_GROUP

JOB_NAME = "reconcile_job"

reconcile_job = dg.define_asset_job(
    JOB_NAME,
    selection=dg.AssetSelection.groups(ASSET_GROUP),
    tags=RUN_TAG,
    description="Reconcile the workspace snapshot table for a range of projects (all, on a tick).",
)
