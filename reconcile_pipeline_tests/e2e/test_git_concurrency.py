"""The git work of real runs in a fresh process (``execute_job`` with the code location's
executor): the git shard steps never run more than 3 at once, and do reach 3 (a control job
without the tag limit reaches 4); neither do git processes, also in process where one step holds
the free git slots; the step count does not grow with the workspaces; and
GIT_PYTHON_GIT_EXECUTABLE selects the git the pipeline runs.

Every run happens in a subprocess with its own environment (see support.runs).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reconcile_pipeline.concurrency import GIT_LIMIT, GIT_POOL, POOL_LIMITS
from reconcile_pipeline.demo.build import build_demo_app, demo_session_runtime
from reconcile_pipeline_tests.support.databases import sql
from reconcile_pipeline_tests.support.gitrepos import git_calls, git_windows, slow_git
from reconcile_pipeline_tests.support.processes import dagster_home, pipeline_env
from reconcile_pipeline_tests.support.runs import (
    SHARD_STEP_PREFIX,
    add_project_partitions,
    app_env,
    execute,
    max_overlap,
    open_instance,
    step_windows,
)

REAL_GIT = shutil.which("git")


def shard_run(
    home: Path, app, db: Path, git: Path, *, control: bool = False, mode: str = "multiprocess"
) -> dict:
    log = git.parent / "calls.log"
    log.write_text("")
    env = app_env(
        home,
        app,
        db,
        RECONCILE_GIT_MAX_SHARDS="6",
        RECONCILE_GIT_MIN_SHARD_SIZE="1",
        # GitPython's documented switch (see the test below); the slow git also goes first on
        # PATH.
        GIT_PYTHON_GIT_EXECUTABLE=git,
        PATH=f"{git.parent}{os.pathsep}{os.environ['PATH']}",
    )
    partition_range = add_project_partitions(home, app.app_db_path)
    if control:  # the control has no tag limit; the git pool must not bind either
        with open_instance(home) as instance:
            instance.event_log_storage.set_concurrency_slots(GIT_POOL, 12)
    result = execute(env, partition_range, control=control, mode=mode)
    assert result["success"], result["stderr"][-5000:]
    with open_instance(home) as instance:
        windows = step_windows(instance, result["run_id"])
        result["events"] = len(instance.all_logs(result["run_id"]))
        if control:
            instance.event_log_storage.set_concurrency_slots(GIT_POOL, GIT_LIMIT)
    shards = [w for key, w in windows.items() if key.startswith(SHARD_STEP_PREFIX)]
    result["steps"] = len(windows)
    result["shard_steps"] = len(shards)
    result["overlap"] = max_overlap(shards)
    result["git_overlap"] = max_overlap(git_windows(log))
    result["git_calls"] = sum(c in ("status", "diff") for c in git_calls(log))
    result["shard_s"] = round(max(e for _, e in shards) - min(s for s, _ in shards), 2)
    return result


@pytest.mark.slow
def test_git_shards_run_three_at_a_time_and_steps_do_not_grow(tmp_path, demo60):
    """Slow git (0.2 s a call), 6 shards, executor max_concurrent 4: the shard steps' STEP_START
    to STEP_SUCCESS windows in the event log overlap at most 3 deep, and exactly 3, and so do the
    git processes, while the control job without the tag limit (and a git pool of 12) reaches 4
    steps. 20 and 60 workspaces give the same steps."""
    app60, _ = demo60
    app20 = build_demo_app(tmp_path / "demo20", workspaces=20)
    demo_session_runtime(app20)
    git, log = slow_git(tmp_path / "slowbin")

    home60 = dagster_home(tmp_path / "home60")
    home20 = dagster_home(tmp_path / "home20")
    big = shard_run(home60, app60, tmp_path / "p60.db", git)
    small = shard_run(home20, app20, tmp_path / "p20.db", git)
    # The control runs on the larger fleet: longer shards overlap fully even on a busy machine.
    control = shard_run(home60, app60, tmp_path / "p60.db", git, control=True)

    print(
        "\n"
        + "\n".join(
            f"{name}: steps {r['steps']} (shards {r['shard_steps']}), max shard overlap "
            f"{r['overlap']}, git processes at once {r['git_overlap']}, shard phase {r['shard_s']} s, event-log rows {r['events']}, "
            f"execute_job {r['duration_s']} s"
            for name, r in (("60 ws", big), ("20 ws", small), ("control 60 ws", control))
        )
    )
    # The slow git really ran the git work (about two calls per present worktree).
    assert big["git_calls"] >= 2 * app60.worktrees
    assert big["shard_steps"] == small["shard_steps"] == 6
    assert big["overlap"] == 3 and small["overlap"] == 3
    # Three steps that start together hold the git pool's 3 slots: one worktree at a time each.
    assert big["git_overlap"] == 3 and small["git_overlap"] == 3
    # Without the tag limit the same measurement sees max_concurrent (4) shards at once.
    assert control["overlap"] == 4
    assert big["steps"] == small["steps"]


@pytest.mark.slow
def test_in_process_run_uses_the_free_git_slots_and_never_more(tmp_path, demo60):
    """In process the run has one git shard, whatever RECONCILE_GIT_MAX_SHARDS says, and it
    takes the git pool's free slots: 3 git processes at once when the pool is free, never more;
    1 when another run holds 2 slots."""
    app, _ = demo60
    git, _ = slow_git(tmp_path / "slowbin", delay_s=0.1)
    home = dagster_home(tmp_path / "home")
    free = shard_run(home, app, tmp_path / "p.db", git, mode="in_process")
    with open_instance(home) as instance:
        storage = instance.event_log_storage
        assert {p.name: p.limit for p in storage.get_pool_limits()} == POOL_LIMITS
        for step in ("other_step_a", "other_step_b"):  # another run holds 2 of the 3 slots
            assert storage.claim_concurrency_slot(GIT_POOL, "other-run", step).is_claimed
    busy = shard_run(home, app, tmp_path / "p.db", git, mode="in_process")
    with open_instance(home) as instance:
        instance.event_log_storage.free_concurrency_slots_for_run("other-run")
        info = instance.event_log_storage.get_concurrency_info(GIT_POOL)
    print(
        f"\nfree pool: {free['git_overlap']} at once; 2 slots held elsewhere: {busy['git_overlap']}"
    )
    assert free["shard_steps"] == busy["shard_steps"] == 1
    assert free["git_overlap"] == 3
    assert busy["git_overlap"] == 1
    assert info.claimed_slots == [] and info.pending_steps == []  # every slot went back


def test_git_stats_honour_git_python_git_executable(tmp_path, demo60):
    """GitPython's GIT_PYTHON_GIT_EXECUTABLE selects the git the pipeline runs (e.g. a daemon
    whose PATH has no git)."""
    app, expected = demo60
    workspace = next(r for r in expected.values() if r["git_total"] is not None)
    path = sql(
        app.app_db_path,
        'SELECT "worktreePath" FROM "Workspace" WHERE "id" = ?',
        (workspace["workspace_id"],),
    )[0][0]
    log = tmp_path / "calls.log"
    wrapper = tmp_path / "logging-git"
    wrapper.write_text(f'#!/bin/bash\necho "$1" >> "{log}"\nexec "{REAL_GIT}" "$@"\n')
    wrapper.chmod(0o755)
    env = pipeline_env(tmp_path, GIT_PYTHON_GIT_EXECUTABLE=wrapper)
    code = (
        "import sys\nfrom reconcile_pipeline.core.git_stats import workspace_git_stats\n"
        "s = workspace_git_stats(sys.argv[1], 'main')\nassert s.reason is None, s.reason\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, path], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().split()
    assert "status" in calls and "diff" in calls, f"git calls through the wrapper: {calls}"
