"""Dagster pools: the git cap of 3 and the one writer across runs and launch paths. (The limits
an instance gets are ``integration/test_pool_limits.py``.)

A daemon-launched run (sensor → run queue → run worker, step processes) and a
``reconcile-pipeline reconcile`` run (in the CLI process, bypassing the queue), started together
on one instance with a slow git, never run more than 3 git processes at once and never have two
write steps at once; both succeed and the table ends equal to the expectations.
"""

from __future__ import annotations

import os
import subprocess

import dagster as dg
import pytest

from reconcile_pipeline.concurrency import GIT_LIMIT, GIT_POOL
from reconcile_pipeline_tests.support.expected import (
    expected_snapshots,
    read_table,
    table_differences,
)
from reconcile_pipeline_tests.support.gitrepos import git_calls, git_windows, slow_git
from reconcile_pipeline_tests.support.processes import BIN, REPO, Stack, dagster_home, wait_for
from reconcile_pipeline_tests.support.runs import max_overlap, open_instance, step_windows

WRITE_STEP = "reconcile_chain.reconcile_snapshots"


@pytest.mark.slow
def test_cli_run_beside_a_daemon_run_keeps_three_git_processes_and_one_writer(tmp_path):
    home = dagster_home(tmp_path / "home", ("dagster-daemon", "reconcile-pipeline", "dagster"))
    # Slow enough that the CLI run, which starts seconds later (its imports), meets the
    # daemon's run even on a slow machine.
    git, log = slow_git(tmp_path / "slowbin", delay_s=0.4)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILE_")}
    env.update(
        DAGSTER_HOME=str(home),
        PYTHONUNBUFFERED="1",
        GIT_PYTHON_GIT_EXECUTABLE=str(git),
        PATH=f"{git.parent}{os.pathsep}{env['PATH']}",
    )
    cli = str(BIN / "reconcile-pipeline")
    for args in (
        [cli, "demo", "--workspaces", "40"],
        [str(BIN / "dagster"), "instance", "migrate"],
    ):
        done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    log.write_text("")

    # The daemon's runs use step processes (3 shard steps at once); the CLI's runs in process
    # (one shard step at a time with every free git slot): both ways of holding the 3 slots.
    stack = Stack(home=home, env={**env, "RECONCILE_IN_PROCESS_MAX_WORKSPACES": "0"})
    try:
        stack.start_daemon(tmp_path / "daemon.log")
        with open_instance(home) as instance:

            def daemon_run_started():
                stack.check_alive()
                runs = instance.get_runs(dg.RunsFilter(job_name="reconcile_job"))
                return [r for r in runs if r.status == dg.DagsterRunStatus.STARTED]

            daemon_run = wait_for(daemon_run_started, 240, "the sensor's first run to start")[0]
            cli_run = subprocess.run(
                [cli, "reconcile"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
            )
            assert cli_run.returncode == 0, cli_run.stdout + cli_run.stderr

            def daemon_run_finished():
                run = instance.get_run_by_id(daemon_run.run_id)
                return run if run.is_finished else None

            finished = wait_for(daemon_run_finished, 300, "the daemon's run to finish")
            cli_runs = [
                r
                for r in instance.get_runs(dg.RunsFilter(job_name="reconcile_job"))
                if r.run_id != daemon_run.run_id and r.status == dg.DagsterRunStatus.SUCCESS
            ]
            steps = {r.run_id: step_windows(instance, r.run_id) for r in (finished, *cli_runs)}
    finally:
        stack.stop_all()
        print(stack.logs())

    writes = [windows[WRITE_STEP] for windows in steps.values()]
    # The runs did meet: the CLI run's first step began before the daemon run's last one ended.
    runs_met = min(s for r in cli_runs for s, _ in steps[r.run_id].values()) < max(
        e for _, e in steps[finished.run_id].values()
    )
    windows = git_windows(log)
    print(
        f"\ngit processes: {len(windows)}, at most {max_overlap(windows)} at once; "
        f"write steps {len(writes)}, at most {max_overlap(writes)} at once; runs met: {runs_met}"
    )
    assert finished.status == dg.DagsterRunStatus.SUCCESS
    assert len(cli_runs) >= 1
    app_db = home / "demo_app" / "app.db"
    stored = read_table(home / "pipeline.db")
    expected = expected_snapshots(app_db, home / "demo_app" / "session_runtime.json")
    assert table_differences(stored, expected) == []
    # Both runs did the git work: a status and a diff per worktree with stats, each.
    with_stats = sum(row["git_total"] is not None for row in expected.values())
    assert sum(c in ("status", "diff") for c in git_calls(log)) >= 2 * 2 * with_stats
    assert runs_met
    assert max_overlap(windows) <= GIT_LIMIT
    assert max_overlap(writes) == 1
    # The pools stayed at their limits; no slot is left claimed.
    with open_instance(home) as instance:
        info = instance.event_log_storage.get_concurrency_info(GIT_POOL)
        assert info.slot_count == GIT_LIMIT and info.claimed_slots == []
