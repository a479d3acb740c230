"""Stage 2: git stats, one step per shard, at most 3 git processes at once (per run and across
runs: the git pool's slots, see pools.py)."""

import time

import dagster as dg
import pandas as pd

from reconcile_pipeline.concurrency import CELERY_QUEUE_TAG, GIT_POOL, GIT_TAG
from reconcile_pipeline.core.git_shards import GitShard, run_shard
from reconcile_pipeline.defs.resources import GitWorktrees
from reconcile_pipeline.executors import celery_git_queue
from reconcile_pipeline.pools import git_slots


@dg.op(
    tags={**GIT_TAG, CELERY_QUEUE_TAG: celery_git_queue()},
    pool=GIT_POOL,
    description="Git stats of one shard of worktrees, as many at a time as the step holds git "
    "slots.",
)
def compute_git_shard(
    context: dg.OpExecutionContext, git: GitWorktrees, shard: GitShard
) -> pd.DataFrame:
    started = time.perf_counter()
    with git_slots(context) as parallel:
        frame = run_shard(
            shard, allowed_roots=git.roots(), timeout_s=git.timeout_s, parallel=parallel
        )
    context.log.info(
        f"{len(shard.targets)} workspaces, {parallel} at a time, "
        f"{int(frame['git_processes'].sum())} git processes, "
        f"{time.perf_counter() - started:.2f} s"
    )
    return frame
