"""The executor of ``reconcile_job``, chosen by configuration: same code, one machine or many.

``RECONCILE_EXECUTOR`` (read when the code location is loaded, like every other setting):

- ``multiprocess`` (default): steps in local processes. At most 4 steps at once, and at most 3
  git shard steps (op tag ``reconcile/git=shard``) per run; forkserver with the definitions
  preloaded, so a step starts in ~0.3 s.
- ``celery``: dagster-celery's ``celery_executor``. Every step is a Celery task on a broker;
  separate ``dagster-celery worker start`` processes run them. The git shard steps carry the op tag
  ``dagster-celery/queue=<RECONCILE_CELERY_GIT_QUEUE>`` and go to that queue only, served by
  workers that see the worktrees, with 3 slots in total: the cap of 3 is the git workers'
  concurrency (global: across runs too). Everything else goes to the default queue.
  ``RECONCILE_CELERY_BROKER`` / ``RECONCILE_CELERY_BACKEND`` (URLs, read by Dagster from the
  environment of the run process, never written into the run config) default to dagster-celery's
  ``pyamqp://guest@localhost:5672//`` and ``rpc://``; ``RECONCILE_CELERY_DEFAULT_QUEUE``
  defaults to dagster-celery's ``dagster``.
- ``k8s``: dagster-k8s's ``k8s_job_executor`` (install ``dagster-k8s==0.29.27`` in the image):
  one Kubernetes Job per step, the same per-run limits as ``multiprocess`` (max_concurrent 4, git
  tag limit 3), and ``RECONCILE_K8S_GIT_STEP_CONFIG`` (JSON, dagster-k8s's per-step k8s config:
  ``container_config``, ``pod_spec_config``, ...) applied to the git shard op only, e.g. the
  worktrees volume and a node selector. See docs/DISTRIBUTED.md.

Only dagster's own executors: the celery and k8s integrations are imported when selected.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping

import dagster as dg

EXECUTOR_ENV = "RECONCILE_EXECUTOR"
MULTIPROCESS = "multiprocess"
CELERY = "celery"
K8S = "k8s"
EXECUTOR_KINDS = (MULTIPROCESS, CELERY, K8S)

# At most 3 git shard steps at once; one more step slot so the git limit is what binds.
GIT_CONCURRENCY_LIMIT = 3
MAX_CONCURRENT_STEPS = GIT_CONCURRENCY_LIMIT + 1

# dagster_celery.tags.DAGSTER_CELERY_QUEUE_TAG, spelled out so that the assets do not import
# celery (the test suite checks that both agree).
CELERY_QUEUE_TAG = "dagster-celery/queue"
CELERY_BROKER_ENV = "RECONCILE_CELERY_BROKER"
CELERY_BACKEND_ENV = "RECONCILE_CELERY_BACKEND"
CELERY_GIT_QUEUE_ENV = "RECONCILE_CELERY_GIT_QUEUE"
CELERY_DEFAULT_QUEUE_ENV = "RECONCILE_CELERY_DEFAULT_QUEUE"
DEFAULT_GIT_QUEUE = "reconcile_git"
K8S_GIT_STEP_CONFIG_ENV = "RECONCILE_K8S_GIT_STEP_CONFIG"

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


def _queue_name(env: Mapping[str, str], name: str, default: str) -> str:
    value = (env.get(name) or "").strip() or default
    if not _QUEUE_NAME.match(value):
        raise ValueError(f"{name} must match {_QUEUE_NAME.pattern}, got {value!r}")
    return value


def celery_git_queue(env: Mapping[str, str] = os.environ) -> str:
    """The Celery queue of the git shard steps (RECONCILE_CELERY_GIT_QUEUE, default
    ``reconcile_git``). Only workers that can see the worktrees may listen on it."""
    return _queue_name(env, CELERY_GIT_QUEUE_ENV, DEFAULT_GIT_QUEUE)


def executor_kind(env: Mapping[str, str] = os.environ) -> str:
    kind = (env.get(EXECUTOR_ENV) or "").strip().lower() or MULTIPROCESS
    if kind not in EXECUTOR_KINDS:
        raise ValueError(f"{EXECUTOR_ENV} must be one of {', '.join(EXECUTOR_KINDS)}, got {kind!r}")
    return kind


def _tag_limits(git_tag: Mapping[str, str]) -> list[dict]:
    return [{"key": k, "value": v, "limit": GIT_CONCURRENCY_LIMIT} for k, v in git_tag.items()]


def multiprocess_reconcile_executor(git_tag: Mapping[str, str]) -> dg.ExecutorDefinition:
    return dg.multiprocess_executor.configured(
        {
            # Above the CPU count (2 here) so the git limit, not the core count, is what binds.
            "max_concurrent": MAX_CONCURRENT_STEPS,
            "tag_concurrency_limits": _tag_limits(git_tag),
            # forkserver + preload: a step starts in ~0.3 s instead of re-importing everything.
            "start_method": {"forkserver": {"preload_modules": ["reconcile_pipeline.definitions"]}},
        },
        name="reconcile_executor",
    )


def celery_config(env: Mapping[str, str] = os.environ) -> dict:
    """The celery_executor config. Broker and backend URLs stay in the environment
    (``{"env": ...}``): they may carry passwords, and the run config is shown in the UI."""
    config: dict = {}
    for key, name in (("broker", CELERY_BROKER_ENV), ("backend", CELERY_BACKEND_ENV)):
        if (env.get(name) or "").strip():
            config[key] = {"env": name}
    if (env.get(CELERY_DEFAULT_QUEUE_ENV) or "").strip():
        config["config_source"] = {
            "task_default_queue": _queue_name(env, CELERY_DEFAULT_QUEUE_ENV, "dagster")
        }
    return config


def celery_reconcile_executor(env: Mapping[str, str] = os.environ) -> dg.ExecutorDefinition:
    from dagster_celery import celery_executor

    return celery_executor.configured(celery_config(env), name="reconcile_celery_executor")


def k8s_config(
    git_tag: Mapping[str, str], git_op: str, env: Mapping[str, str] = os.environ
) -> dict:
    config: dict = {
        "max_concurrent": MAX_CONCURRENT_STEPS,
        "tag_concurrency_limits": _tag_limits(git_tag),
    }
    raw = (env.get(K8S_GIT_STEP_CONFIG_ENV) or "").strip()
    if raw:
        try:
            step_config = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"{K8S_GIT_STEP_CONFIG_ENV} must be JSON: {exc}") from exc
        if not isinstance(step_config, dict):
            raise ValueError(f"{K8S_GIT_STEP_CONFIG_ENV} must be a JSON object")
        # Keyed by op name: every mapped shard step of the op gets it.
        config["per_step_k8s_config"] = {git_op: step_config}
    return config


def k8s_reconcile_executor(
    git_tag: Mapping[str, str], git_op: str, env: Mapping[str, str] = os.environ
) -> dg.ExecutorDefinition:
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor.configured(
        k8s_config(git_tag, git_op, env), name="reconcile_k8s_executor"
    )


def build_executor(
    git_tag: Mapping[str, str], git_op: str, env: Mapping[str, str] = os.environ
) -> dg.ExecutorDefinition:
    """The executor RECONCILE_EXECUTOR selects. ``git_tag`` is the op tag of the git shard
    steps (limited to 3 per run by the multiprocess and k8s executors), ``git_op`` their op."""
    kind = executor_kind(env)
    if kind == CELERY:
        return celery_reconcile_executor(env)
    if kind == K8S:
        return k8s_reconcile_executor(git_tag, git_op, env)
    return multiprocess_reconcile_executor(git_tag)
