"""How much runs at once, in one place: the git cap of 3 (per run and across runs), the one
writer of the snapshot table, and the run-level limit of one reconcile run at a time.

- Within a run, the executor's tag concurrency limit lets at most ``GIT_LIMIT`` steps tagged
  ``GIT_TAG`` run at once (multiprocess and k8s executors).
- Across runs and launch paths (sensor, UI, ``dg launch``, ``reconcile-pipeline reconcile``,
  which runs in the CLI process and bypasses the run queue), Dagster pools cap git processes:
  pool ``GIT_POOL`` has ``GIT_LIMIT`` slots and a git shard step runs as many worktrees at a time
  as it holds slots (pools.py); the table's write step takes the one slot of pool ``WRITE_POOL``.
- Under the celery executor the git steps go to their own queue, served by workers that see the
  worktrees; the cap is then those workers' concurrency.
"""

from __future__ import annotations

GIT_LIMIT = 3
GIT_TAG = {"reconcile/git": "shard"}
GIT_POOL = "reconcile_git"
WRITE_POOL = "reconcile_write"
WRITE_LIMIT = 1
POOL_LIMITS = {GIT_POOL: GIT_LIMIT, WRITE_POOL: WRITE_LIMIT}

# One more step slot than git slots, so that the git limit, not the step limit, is what binds.
MAX_CONCURRENT_STEPS = GIT_LIMIT + 1

# The run tag every reconcile run carries; the run queue lets one such run go at a time.
RUN_TAG = {"reconcile_pipeline/run": "reconcile"}

# dagster_celery.tags.DAGSTER_CELERY_QUEUE_TAG, spelled out so that the assets do not import
# celery (the test suite checks that both agree).
CELERY_QUEUE_TAG = "dagster-celery/queue"
DEFAULT_GIT_QUEUE = "reconcile_git"


def git_tag_limits() -> list[dict]:
    """The executor's tag_concurrency_limits: at most GIT_LIMIT git shard steps per run."""
    return [{"key": k, "value": v, "limit": GIT_LIMIT} for k, v in GIT_TAG.items()]
