"""The operator's commands, run as docs/RUNBOOK.md writes them: mute a known drift with a reason
and an expiry, list and remove suppressions, and follow the table's change feed."""

from __future__ import annotations

import sys

from reconcile_pipeline.core.ledger import DriftLedger
from reconcile_pipeline.core.store import SnapshotStore
from reconcile_pipeline_tests.support.processes import dagster_home, pipeline_env, run_command

CLI = [sys.executable, "-m", "reconcile_pipeline.cli"]


def test_suppress_list_unsuppress_and_follow_the_changes(tmp_path):
    home = dagster_home(tmp_path / "home")
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    env = pipeline_env(home, RECONCILE_PIPELINE_DB_URL=url)
    store = SnapshotStore(url)
    store.upsert("w1", {"project_id": "p1", "name": "a"}, source="event")
    store.upsert("w1", {"name": "b"}, source="event")
    store.remove("w1", source="app")

    out = run_command(
        [*CLI, "suppress", "--workspace", "w1", "--field", "name"]
        + ["--reason", "renamed by hand, fix coming", "--for", "2h"],
        env,
    ).stdout
    assert out.startswith("suppression 1: name of w1, for 2h")
    run_command(
        [*CLI, "suppress", "--project", "p1", "--field", "*", "--reason", "x", "--for", "1d"], env
    )
    listed = run_command([*CLI, "suppressions"], env).stdout.splitlines()
    assert len(listed) == 2 and listed[0].startswith("1: name of w1 (expires in 2.0 h")
    assert "renamed by hand, fix coming" in listed[0] and listed[1].startswith("2: * of project p1")

    bad = run_command(
        [*CLI, "suppress", "--workspace", "w1", "--field", "color"]
        + ["--reason", "x", "--for", "1h"],
        env,
        check=False,
    )
    assert bad.returncode == 2 and "not a drift-compared field" in bad.stderr
    bad = run_command(
        [*CLI, "suppress", "--workspace", "w1", "--field", "name"]
        + ["--reason", "x", "--for", "soon"],
        env,
        check=False,
    )
    assert bad.returncode == 2 and "a duration is a number and m, h or d" in bad.stderr

    assert run_command([*CLI, "unsuppress", "1"], env).stdout.strip() == "suppression 1 removed"
    assert len(DriftLedger(url).suppressions()) == 1
    assert run_command([*CLI, "unsuppress", "1"], env, check=False).returncode == 2

    changes = [line.split("\t") for line in run_command([*CLI, "changes"], env).stdout.splitlines()]
    assert [(c[1], c[2], c[3]) for c in changes] == [
        ("insert", "w1", "v1"),
        ("update", "w1", "v2"),
        ("remove", "w1", "v2"),
    ]
    after_first = run_command([*CLI, "changes", "--after", changes[0][0]], env).stdout
    assert len(after_first.splitlines()) == 2
    store.engine.dispose()
