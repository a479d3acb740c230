"""Dagster pools: the git cap and the one writer on every launch path (sensor, UI, backfill,
``dg launch``, ``reconcile-pipeline reconcile``), across runs.

OSS Dagster keeps pool limits in the instance's database (``dagster instance concurrency set``,
or the UI's Concurrency page), not in ``dagster.yaml``. The first step of every reconcile run sets
ours where nobody has set them yet, so a new or wiped instance is never unlimited; a limit an
operator set stays as it is.

A git shard step holds one slot of the git pool, claimed by Dagster before the step starts. In a
run in process (one shard step, nothing else claiming in that run) it also claims the free
slots, without waiting, runs that many worktrees at a time, and frees them when it ends. Step
processes hold one slot each and run one worktree at a time: claims from several processes at
once can race on the embedded instance's storage (SQLite has no SELECT ... FOR UPDATE SKIP LOCKED,
so two claimers can take the same free slot), and three steps that start together use the three
slots anyway.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import dagster as dg

from reconcile_pipeline.concurrency import GIT_LIMIT, GIT_POOL, POOL_LIMITS
from reconcile_pipeline.dagster_internals import PoolGranularity
from reconcile_pipeline.executors import runs_in_process


def _enforced(instance: dg.DagsterInstance) -> bool:
    storage = instance.event_log_storage
    return (
        storage.supports_global_concurrency_limits
        and storage.get_pool_config().pool_granularity != PoolGranularity.RUN
    )


def ensure_pool_limits(instance: dg.DagsterInstance) -> dict[str, int]:
    """Set the pipeline's pools to their limits where no one has set a limit (absent, or only
    the instance's default); returns every pool's limit in force."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return {}
    current = {pool.name: pool for pool in storage.get_pool_limits()}
    limits = {}
    for name, limit in POOL_LIMITS.items():
        pool = current.get(name)
        if pool is None or pool.from_default:
            storage.set_concurrency_slots(name, limit)
            limits[name] = limit
        else:
            limits[name] = pool.limit
    return limits


@contextlib.contextmanager
def git_slots(context: dg.OpExecutionContext) -> Iterator[int]:
    """How many worktrees this git shard step may run at a time: in a run in process, its own
    slot plus the free slots of the git pool it could claim at once (up to GIT_LIMIT), freed on
    exit; in step processes, or where the instance does not enforce pools, one at a time."""
    instance = context.instance
    if not _enforced(instance) or not runs_in_process(context.run.run_config):
        yield 1
        return
    storage = instance.event_log_storage
    run_id = context.run_id
    own = context.get_step_execution_context().step.key
    extra: list[str] = []
    try:
        for i in range(2, GIT_LIMIT + 1):
            key = f"{own}#slot{i}"
            status = storage.claim_concurrency_slot(GIT_POOL, run_id, key)
            if not status.is_claimed:
                storage.free_concurrency_slot_for_step(run_id, key)  # drop the queued claim
                break
            extra.append(key)
        yield 1 + len(extra)
    finally:
        for key in extra:
            storage.free_concurrency_slot_for_step(run_id, key)
