"""The reconcile job the sensor launches, and its executor (executors.py)."""

from __future__ import annotations

import dagster as dg

from reconcile_pipeline.assets import GROUP, compute_git_shard
from reconcile_pipeline.concurrency import RUN_TAG
from reconcile_pipeline.executors import build_executor

# RECONCILE_EXECUTOR: multiprocess (default; in process per run for a small fleet), celery, k8s.
reconcile_executor = build_executor(compute_git_shard.name)

reconcile_job = dg.define_asset_job(
    "reconcile_job",
    selection=dg.AssetSelection.groups(GROUP),
    tags=RUN_TAG,
    description="Reconcile the workspace snapshot table for a range of projects (all, on a tick).",
)
