"""The reconcile job the sensor launches, and the executor that caps git work at 3 steps."""

from __future__ import annotations

import dagster as dg

from reconcile_pipeline.assets import GIT_CONCURRENCY_TAG

GIT_CONCURRENCY_LIMIT = 3
# Run tag shared by every reconcile run; the run queue lets one such run go at a time.
RUN_TAG = {"reconcile_pipeline/run": "reconcile"}

[(_tag_key, _tag_value)] = GIT_CONCURRENCY_TAG.items()
reconcile_executor = dg.multiprocess_executor.configured(
    {
        # Above the CPU count (2 here) so the git limit, not the core count, is what binds.
        "max_concurrent": GIT_CONCURRENCY_LIMIT + 1,
        "tag_concurrency_limits": [
            {"key": _tag_key, "value": _tag_value, "limit": GIT_CONCURRENCY_LIMIT}
        ],
        # forkserver + preload: a step starts in ~0.3 s instead of re-importing everything.
        "start_method": {"forkserver": {"preload_modules": ["reconcile_pipeline.definitions"]}},
    },
    name="reconcile_executor",
)

reconcile_job = dg.define_asset_job(
    "reconcile_job",
    selection=dg.AssetSelection.groups("reconciliation"),
    tags=RUN_TAG,
    description="Reconcile the workspace snapshot table for a range of projects (all, on a tick).",
)
