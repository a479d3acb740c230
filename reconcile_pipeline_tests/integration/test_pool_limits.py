"""Dagster pools on a real instance: ``ensure_pool_limits`` sets the pipeline's pools (the git cap
of 3, the one writer) on a new instance and leaves an operator's limit alone. Both caps across
real runs and launch paths are ``e2e/test_pools.py``."""

from __future__ import annotations

from reconcile_pipeline.concurrency import GIT_POOL, POOL_LIMITS, WRITE_POOL
from reconcile_pipeline.pools import ensure_pool_limits


def test_ensure_pool_limits_sets_missing_limits_and_keeps_the_operators(instance):
    storage = instance.event_log_storage
    assert storage.get_pool_limits() == []
    assert ensure_pool_limits(instance) == POOL_LIMITS
    assert {p.name: p.limit for p in storage.get_pool_limits()} == POOL_LIMITS
    storage.set_concurrency_slots(GIT_POOL, 2)  # what `dagster instance concurrency set` does
    assert ensure_pool_limits(instance) == {GIT_POOL: 2, WRITE_POOL: 1}
    assert storage.get_concurrency_info(GIT_POOL).slot_count == 2
