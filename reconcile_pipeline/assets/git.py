"""Stage 2: git stats, one step per shard, at most 3 at once (per run and across runs)."""

import time

import dagster as dg
import pandas as pd

from reconcile_pipeline.concurrency import CELERY_QUEUE_TAG, GIT_POOL, GIT_TAG
from reconcile_pipeline.core.git_shards import GitShard, run_shard
from reconcile_pipeline.executors import celery_git_queue
from reconcile_pipeline.resources import GitWorktrees


@dg.op(
    tags={**GIT_TAG, CELERY_QUEUE_TAG: celery_git_queue()},
    pool=GIT_POOL,
    description="Git stats of one shard of worktrees, one after another.",
)
def compute_git_shard(
    context: dg.OpExecutionContext, git: GitWorktrees, shard: GitShard
) -> pd.DataFrame:
    started = time.perf_counter()
    frame = run_shard(shard, allowed_roots=git.roots(), timeout_s=git.timeout_s)
    context.log.info(
        f"{len(shard.targets)} worktrees, {int(frame['git_processes'].sum())} git processes, "
        f"{time.perf_counter() - started:.2f} s"
    )
    return frame
