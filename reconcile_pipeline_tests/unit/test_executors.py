"""The executor chosen by configuration (reconcile_pipeline/executors.py): RECONCILE_EXECUTOR
selects it; the multiprocess one is exactly the historical one (max_concurrent 4, tag limit 3 on
reconcile/git=shard, forkserver + preload); the celery one keeps broker/backend URLs in the
environment; the queue tag is dagster-celery's; the k8s config puts the worktree volume on the git
op's pods only. Real runs on celery workers are ``e2e/test_celery_executor.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os

import dagster as dg
import pytest

from reconcile_pipeline import executors
from reconcile_pipeline.concurrency import CELERY_QUEUE_TAG, GIT_TAG


def resolved(executor_def: dg.ExecutorDefinition, config: dict | None = None) -> dict:
    """The config Dagster's own executor gets, after our configured mapping (if any)."""
    result = executor_def.apply_config_mapping({"config": config or {}})
    assert result.success, result.errors
    return result.value["config"]


MULTIPROCESS = {
    "max_concurrent": 4,
    "tag_concurrency_limits": [{"key": "reconcile/git", "value": "shard", "limit": 3}],
    "start_method": {"forkserver": {"preload_modules": ["reconcile_pipeline.definitions"]}},
    "retries": {"enabled": {}},
}


def test_multiprocess_is_the_default_and_in_process_is_chosen_per_run():
    from reconcile_pipeline.definitions import defs

    reconcile_executor = defs.executor

    assert executors.executor_kind({}) == "multiprocess"
    assert executors.executor_kind({"RECONCILE_EXECUTOR": " Multiprocess "}) == "multiprocess"
    built = executors.build_executor("compute_git_shard", {})
    assert built.name == "reconcile_executor"
    assert resolved(built) == {"multiprocess": MULTIPROCESS}
    assert resolved(built, {"mode": "in_process"}) == {"in_process": {"retries": {"enabled": {}}}}
    if not os.environ.get("RECONCILE_EXECUTOR"):  # the code location as loaded by this process
        assert reconcile_executor.name == "reconcile_executor"
        assert resolved(reconcile_executor) == {"multiprocess": MULTIPROCESS}
    # The run config a tick asks for, by fleet size (RECONCILE_IN_PROCESS_MAX_WORKSPACES).
    small = {"RECONCILE_IN_PROCESS_MAX_WORKSPACES": "100"}
    assert executors.run_config(100, small) == {"execution": {"config": {"mode": "in_process"}}}
    assert executors.run_config(101, small) == {"execution": {"config": {"mode": "multiprocess"}}}
    assert executors.run_config(10, {"RECONCILE_EXECUTOR": "celery"}) == {}
    # What the extract step plans its git shards by (one shard for a run in process).
    assert executors.runs_in_process(executors.run_config(100, small))
    assert not executors.runs_in_process(executors.run_config(101, small))
    for other in ({}, {"execution": None}, {"execution": {"config": {"broker": {"env": "B"}}}}):
        assert not executors.runs_in_process(other), other


def test_unknown_executor_kind_is_a_clear_error():
    with pytest.raises(ValueError, match="RECONCILE_EXECUTOR must be one of"):
        executors.build_executor("compute_git_shard", {"RECONCILE_EXECUTOR": "ray"})
    with pytest.raises(ValueError, match="RECONCILE_CELERY_GIT_QUEUE"):
        executors.celery_git_queue({"RECONCILE_CELERY_GIT_QUEUE": "no spaces"})


def test_celery_executor_from_env_keeps_urls_out_of_the_config(monkeypatch):
    from dagster_celery.tags import DAGSTER_CELERY_QUEUE_TAG

    assert CELERY_QUEUE_TAG == DAGSTER_CELERY_QUEUE_TAG
    env = {
        "RECONCILE_EXECUTOR": "celery",
        "RECONCILE_CELERY_BROKER": "redis://:secret@broker:6379/2",
        "RECONCILE_CELERY_BACKEND": "redis://:secret@broker:6379/3",
        "RECONCILE_CELERY_DEFAULT_QUEUE": "reconcile_default",
    }
    config = executors.celery_config(env)
    assert config == {
        "broker": {"env": "RECONCILE_CELERY_BROKER"},
        "backend": {"env": "RECONCILE_CELERY_BACKEND"},
        "config_source": {"task_default_queue": "reconcile_default"},
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    built = executors.build_executor("compute_git_shard", env)
    assert built.name == "reconcile_celery_executor"
    config = resolved(built)
    assert config["broker"] == env["RECONCILE_CELERY_BROKER"]  # read from the environment
    assert config["backend"] == env["RECONCILE_CELERY_BACKEND"]
    # Nothing set: dagster-celery's own defaults (local RabbitMQ, rpc:// results).
    assert executors.celery_config({}) == {}


def test_git_shard_op_carries_the_queue_tag_and_other_ops_do_not():
    from reconcile_pipeline.definitions import defs
    from reconcile_pipeline.defs.reconciliation.assets import compute_git_shard

    queue = executors.celery_git_queue()
    assert compute_git_shard.tags == {**GIT_TAG, "dagster-celery/queue": queue}
    assert executors.celery_git_queue({}) == "reconcile_git"
    job = defs.resolve_job_def("reconcile_job")
    tagged = {
        node.name
        for node in job.graph.iterate_op_defs()
        if "dagster-celery/queue" in node.tags  # only the git shard op
    }
    assert tagged == {"compute_git_shard"}


def test_k8s_config_routes_only_the_git_op():
    step = {
        "pod_spec_config": {
            "volumes": [{"name": "worktrees", "persistent_volume_claim": {"claim_name": "wt"}}],
            "node_selector": {"reconcile/worktrees": "true"},
        },
        "container_config": {
            "volume_mounts": [{"name": "worktrees", "mount_path": "/srv/worktrees"}]
        },
    }
    env = {"RECONCILE_EXECUTOR": "k8s", "RECONCILE_K8S_GIT_STEP_CONFIG": json.dumps(step)}
    config = executors.k8s_config("compute_git_shard", env)
    assert config == {
        "max_concurrent": 4,
        "tag_concurrency_limits": [{"key": "reconcile/git", "value": "shard", "limit": 3}],
        "per_step_k8s_config": {"compute_git_shard": step},
    }
    with pytest.raises(ValueError, match="RECONCILE_K8S_GIT_STEP_CONFIG must be JSON"):
        executors.k8s_config("x", {"RECONCILE_K8S_GIT_STEP_CONFIG": "{nope"})
    # With dagster-k8s installed (the Kubernetes image), the config also validates against it
    # and dagster-k8s turns the git op's part into the k8s objects it puts on the step pods.
    if importlib_available("dagster_k8s"):
        from dagster_k8s.job import UserDefinedDagsterK8sConfig

        built = executors.build_executor("compute_git_shard", env)
        assert built.name == "reconcile_k8s_executor"
        config = resolved(built)
        assert (config["max_concurrent"], config["tag_concurrency_limits"]) == (
            4,
            [{"key": "reconcile/git", "value": "shard", "limit": 3}],
        )
        git_pods = UserDefinedDagsterK8sConfig.from_dict(
            config["per_step_k8s_config"]["compute_git_shard"]
        )
        assert git_pods.pod_spec_config["node_selector"] == {"reconcile/worktrees": "true"}
        assert git_pods.container_config["volume_mounts"] == [
            {"name": "worktrees", "mount_path": "/srv/worktrees"}
        ]


def importlib_available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None
