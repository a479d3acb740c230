"""The reconcile job the sensor launches, and its executor (executors.py): local processes by
default, dagster-celery or dagster-k8s by configuration; git work capped at 3 steps."""

from __future__ import annotations

import dagster as dg

from reconcile_pipeline.assets import GIT_CONCURRENCY_TAG, compute_git_shard
from reconcile_pipeline.executors import GIT_CONCURRENCY_LIMIT, build_executor

__all__ = ["GIT_CONCURRENCY_LIMIT", "RUN_TAG", "reconcile_executor", "reconcile_job"]

# Run tag shared by every reconcile run; the run queue lets one such run go at a time.
RUN_TAG = {"reconcile_pipeline/run": "reconcile"}

# RECONCILE_EXECUTOR: multiprocess (default: max_concurrent 4, git tag limit 3, forkserver),
# celery or k8s.
reconcile_executor = build_executor(GIT_CONCURRENCY_TAG, compute_git_shard.name)

reconcile_job = dg.define_asset_job(
    "reconcile_job",
    selection=dg.AssetSelection.groups("reconciliation"),
    tags=RUN_TAG,
    description="Reconcile the workspace snapshot table for a range of projects (all, on a tick).",
)
