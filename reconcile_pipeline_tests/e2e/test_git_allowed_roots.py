"""Git never runs outside the configured roots: a real multiprocess run (own process group, own
DAGSTER_HOME) with ``RECONCILE_GIT_ALLOWED_ROOTS`` set and ``GIT_PYTHON_GIT_EXECUTABLE`` pointing at
a wrapper script that logs every git invocation (cwd and argv): worktrees outside the roots (a
path outside, ``..`` out of it, a symlink out of it) get a reason and no git process ever runs for
them; and the pipeline DB URL's password is nowhere in the run's records.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from reconcile_pipeline_tests.support import gitrepos as gr
from reconcile_pipeline_tests.support.app_db import AppDb
from reconcile_pipeline_tests.support.expected import read_table
from reconcile_pipeline_tests.support.processes import dagster_home, pipeline_env
from reconcile_pipeline_tests.support.runs import (
    add_project_partitions,
    check_evaluations,
    execute,
    open_instance,
    table_rows,
)
from reconcile_pipeline_tests.support.secrets import leaks, secret_url


def _wrapper(path: Path, log: Path) -> Path:
    real_git = subprocess.run(["which", "git"], capture_output=True, text=True).stdout.strip()
    path.write_text(
        f'#!/bin/sh\nprintf \'%s\\t%s\\n\' "$(pwd -P)" "$*" >> \'{log}\'\nexec {real_git} "$@"\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.mark.slow
def test_git_never_runs_outside_allowed_roots_in_a_real_multiprocess_run(tmp_path, pg_url):
    root = tmp_path / "allowed"
    outside = tmp_path / "outside"
    outside.mkdir()
    project = gr.make_project(root / "proj")
    inside = gr.add_worktree(project.repo, root / "wt" / "inside", "inside")
    gr.write(inside, "src/app.py", "changed\n")
    escaped = gr.add_worktree(project.repo, outside / "escaped", "escaped")
    linked = gr.add_worktree(project.repo, outside / "linked", "linked")
    (root / "link").symlink_to(linked)

    app = AppDb(f"sqlite:///{tmp_path / 'app.db'}")
    app.add_project("p")
    app.add_workspace("inside", "p", worktreePath=str(inside))
    app.add_workspace("outside", "p", worktreePath=str(escaped))
    app.add_workspace(
        "dotdot", "p", worktreePath=str(root / "wt" / ".." / ".." / "outside" / "escaped")
    )
    app.add_workspace("symlink", "p", worktreePath=str(root / "link"))
    app.dispose()

    log = tmp_path / "git-invocations.log"
    wrapper = _wrapper(tmp_path / "git-wrapper", log)
    home = dagster_home(tmp_path / "home")
    pipeline_url = secret_url(pg_url)
    env = pipeline_env(
        home,
        RECONCILE_APP_DB_URL=app.url,
        RECONCILE_PIPELINE_DB_URL=pipeline_url,
        RECONCILE_GIT_ALLOWED_ROOTS=str(root),
        GIT_PYTHON_GIT_EXECUTABLE=str(wrapper),
    )
    partition_range = add_project_partitions(home, tmp_path / "app.db")
    result = execute(env, partition_range)
    assert result["success"], result["stderr"][-3000:]

    invocations = [line.split("\t", 1) for line in log.read_text().splitlines()]
    cwds = {os.path.realpath(cwd) for cwd, _ in invocations}
    assert os.path.realpath(inside) in cwds, "the wrapper did not see the inside worktree"
    forbidden = [os.path.realpath(escaped), os.path.realpath(linked), str(outside)]
    ran_outside = [
        (cwd, args)
        for cwd, args in invocations
        if any(cwd.startswith(f) or f in args for f in forbidden)
    ]
    assert ran_outside == [], ran_outside

    with open_instance(home) as instance:
        coverage = check_evaluations(instance, result["run_id"])["git_stats_coverage"]
        reasons = {
            r["workspace_id"]: r["reason"] for r in table_rows(coverage.metadata["null_reasons"])
        }
        for workspace_id in ("outside", "dotdot", "symlink"):
            assert "worktree path outside allowed roots" in reasons[workspace_id]
        assert leaks(instance, result["run_id"]) == []  # the pipeline URL's password
    rows = read_table(pg_url)
    assert rows["inside"]["git_total"] == 1
    assert all(rows[w]["git_total"] is None for w in ("outside", "dotdot", "symlink"))
    print(
        f"\nSAFETY git wrapper: {len(invocations)} git invocations, "
        f"{len(cwds)} distinct cwds, none outside {root}"
    )
