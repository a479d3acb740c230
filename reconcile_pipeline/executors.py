"""The executor of ``reconcile_job``, chosen by configuration: same code, one machine or many.
Only Dagster's own executors; the celery and k8s integrations are imported when selected.

``RECONCILE_EXECUTOR`` (read when the code location is loaded, like every other setting):

- ``multiprocess`` (default): Dagster's ``multi_or_in_process_executor``, with its mode chosen per
  run (run config ``execution: config: mode``): ``multiprocess`` runs steps in local processes
  (forkserver with the definitions preloaded, at most 4 steps and 3 git shard steps at once);
  ``in_process`` runs every step in the run's own process, with one git shard that takes the
  free git slots (3 worktrees at a time when no other run holds one; pools.py).
  The sensor and ``reconcile-pipeline reconcile`` choose ``in_process`` for a fleet of up to
  RECONCILE_IN_PROCESS_MAX_WORKSPACES workspaces, where starting step processes costs more than
  the git work they would share; runs launched from the UI default to ``multiprocess``.
- ``celery``: dagster-celery's ``celery_executor``. Every step is a Celery task on a broker;
  separate ``dagster-celery worker start`` processes run them. The git shard steps carry the op tag
  ``dagster-celery/queue=<RECONCILE_CELERY_GIT_QUEUE>`` and go to that queue only, served by
  workers that see the worktrees, with 3 slots in total: the cap of 3 is the git workers'
  concurrency (global: across runs too). Broker and backend URLs stay in the environment of the
  run process (``{"env": ...}``), never in the run config.
- ``k8s``: dagster-k8s's ``k8s_job_executor`` (install ``dagster-k8s==0.29.27`` in the image):
  one Kubernetes Job per step, the same per-run limits as ``multiprocess``, and
  ``RECONCILE_K8S_GIT_STEP_CONFIG`` (dagster-k8s's per-step k8s config) applied to the git shard
  op only. See docs/DISTRIBUTED.md.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import dagster as dg

from reconcile_pipeline import settings
from reconcile_pipeline.concurrency import MAX_CONCURRENT_STEPS, git_tag_limits

MULTIPROCESS = "multiprocess"
IN_PROCESS = "in_process"
CELERY = "celery"
K8S = "k8s"

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


def _queue_name(env: Mapping[str, str], name: str) -> str:
    value = str(settings.value(name, env) or "dagster")
    if not _QUEUE_NAME.match(value):
        raise settings.SettingError(f"{name} must match {_QUEUE_NAME.pattern}, got {value!r}")
    return value


def celery_git_queue(env: Mapping[str, str] = os.environ) -> str:
    """The Celery queue of the git shard steps. Only workers that can see the worktrees may
    listen on it."""
    return _queue_name(env, "RECONCILE_CELERY_GIT_QUEUE")


def executor_kind(env: Mapping[str, str] = os.environ) -> str:
    return settings.value("RECONCILE_EXECUTOR", env)


def _local_config(config: Mapping[str, str]) -> dict:
    if config.get("mode", MULTIPROCESS) == IN_PROCESS:
        return {IN_PROCESS: {}}
    return {
        MULTIPROCESS: {
            # Above the CPU count (2 here) so the git limit, not the core count, is what binds.
            "max_concurrent": MAX_CONCURRENT_STEPS,
            "tag_concurrency_limits": git_tag_limits(),
            # forkserver + preload: a step starts in a fraction of a second, not a re-import.
            "start_method": {"forkserver": {"preload_modules": ["reconcile_pipeline.definitions"]}},
        }
    }


def local_reconcile_executor() -> dg.ExecutorDefinition:
    return dg.multi_or_in_process_executor.configured(
        _local_config,
        name="reconcile_executor",
        config_schema={
            "mode": dg.Field(
                dg.Enum(
                    "ReconcileExecutionMode", [dg.EnumValue(MULTIPROCESS), dg.EnumValue(IN_PROCESS)]
                ),
                default_value=MULTIPROCESS,
                description="multiprocess: steps in local processes, 3 git shards at once; "
                "in_process: every step in the run's process, one git shard with the free "
                "git slots",
            )
        },
    )


def celery_config(env: Mapping[str, str] = os.environ) -> dict:
    """The celery_executor config. Broker and backend URLs stay in the environment
    (``{"env": ...}``): they may carry passwords, and the run config is shown in the UI."""
    config: dict = {}
    for key, name in (
        ("broker", "RECONCILE_CELERY_BROKER"),
        ("backend", "RECONCILE_CELERY_BACKEND"),
    ):
        if settings.is_set(name, env):
            config[key] = {"env": name}
    if settings.is_set("RECONCILE_CELERY_DEFAULT_QUEUE", env):
        config["config_source"] = {
            "task_default_queue": _queue_name(env, "RECONCILE_CELERY_DEFAULT_QUEUE")
        }
    return config


def celery_reconcile_executor(env: Mapping[str, str] = os.environ) -> dg.ExecutorDefinition:
    from dagster_celery import celery_executor

    return celery_executor.configured(celery_config(env), name="reconcile_celery_executor")


def k8s_config(git_op: str, env: Mapping[str, str] = os.environ) -> dict:
    config: dict = {
        "max_concurrent": MAX_CONCURRENT_STEPS,
        "tag_concurrency_limits": git_tag_limits(),
    }
    step_config = settings.value("RECONCILE_K8S_GIT_STEP_CONFIG", env)
    if step_config:
        # Keyed by op name: every mapped shard step of the op gets it.
        config["per_step_k8s_config"] = {git_op: step_config}
    return config


def k8s_reconcile_executor(
    git_op: str, env: Mapping[str, str] = os.environ
) -> dg.ExecutorDefinition:
    from dagster_k8s import k8s_job_executor

    return k8s_job_executor.configured(k8s_config(git_op, env), name="reconcile_k8s_executor")


def build_executor(git_op: str, env: Mapping[str, str] = os.environ) -> dg.ExecutorDefinition:
    """The executor RECONCILE_EXECUTOR selects; ``git_op`` is the git shard op's name."""
    kind = executor_kind(env)
    if kind == CELERY:
        return celery_reconcile_executor(env)
    if kind == K8S:
        return k8s_reconcile_executor(git_op, env)
    return local_reconcile_executor()


def runs_in_process(run_config: Mapping) -> bool:
    """Whether a run with this run config executes every step in its own process."""
    execution = run_config.get("execution") or {}
    return (execution.get("config") or {}).get("mode") == IN_PROCESS


def run_config(workspaces: int, env: Mapping[str, str] = os.environ) -> dict:
    """The run config of a reconcile run over ``workspaces`` workspaces: in process for a small
    fleet under the local executor; nothing to choose under celery or k8s."""
    if executor_kind(env) != MULTIPROCESS:
        return {}
    small = workspaces <= settings.value("RECONCILE_IN_PROCESS_MAX_WORKSPACES", env)
    return {"execution": {"config": {"mode": IN_PROCESS if small else MULTIPROCESS}}}
