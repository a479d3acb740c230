"""The pipeline DB restarted in the middle of the upsert (a private PostgreSQL cluster this test
owns, stopped fast while the upsert waits on a row lock, or immediately in the middle of a bulk
update): the run fails with the reason, the table is untouched or fully updated, never half, and
the next run converges (``support.faults``).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
from pathlib import Path

import pytest

from reconcile_pipeline.defs.resources import SessionRuntime
from reconcile_pipeline_tests.support.app_db import AppDb
from reconcile_pipeline_tests.support.databases import (
    private_cluster,
    private_cluster_unavailable,
    scalar,
    sql,
)
from reconcile_pipeline_tests.support.expected import (
    consistency_problems,
    expected_snapshots,
    read_table,
)
from reconcile_pipeline_tests.support.faults import (
    assert_converged,
    error_lines,
    failures,
)
from reconcile_pipeline_tests.support.processes import wait_for
from reconcile_pipeline_tests.support.runs import (
    RECONCILE_STEP,
    add_partitions,
    check_evaluation,
    reconcile,
    resources,
)

# Both tests stop and restart one cluster: one worker, one after the other.
pytestmark = pytest.mark.xdist_group("private_pg_cluster")


@pytest.fixture(scope="module")
def cluster():
    """A PostgreSQL cluster of this module's own (initdb, a free port), to stop and start."""
    reason = private_cluster_unavailable()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"private PostgreSQL cluster unavailable: {reason}")
        pytest.skip(f"private PostgreSQL cluster unavailable: {reason}")
    with private_cluster() as c:
        yield c


def bulk_app(path: Path, n: int) -> None:
    """An app DB with ``n`` workspaces in 2 projects, written in one transaction."""
    AppDb(f"sqlite:///{path}", generation=2).dispose()  # the schema: every field on Workspace
    conn = sqlite3.connect(path)
    try:
        with conn:
            for p in ("pa", "pb"):
                conn.execute(
                    'INSERT INTO "Project" ("id","name","slug","repoPath","worktreeBasePath",'
                    '"defaultBranch","isArchived","createdAt","updatedAt") '
                    "VALUES (?, ?, ?, '/r', '/w', 'main', 0, 1, 1)",
                    (p, f"Project {p}", p),
                )
            conn.executemany(
                'INSERT INTO "Workspace" ("id","projectId","name","status","branchName",'
                '"runScriptStatus","prUrl","prNumber","prState","prCiStatus","ratchetEnabled",'
                '"ratchetState","hasHadSessions","createdAt","updatedAt") VALUES '
                "(?, ?, ?, 'READY', ?, 'IDLE', ?, ?, 'OPEN', 'SUCCESS', 1, 'IDLE', 1, ?, ?)",
                [
                    (
                        f"w{i:05d}",
                        ("pa", "pb")[i % 2],
                        f"Workspace {i}",
                        f"feat/{i}",
                        f"https://example.invalid/pr/{i}",
                        i,
                        1_735_689_600_000 + i,
                        1_735_689_600_000 + i,
                    )
                    for i in range(n)
                ],
            )
    finally:
        conn.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "mode"),
    [("row_lock", "fast"), ("bulk_update", "immediate")],
    ids=["blocked_on_row_lock-stop_fast", "mid_bulk_update-stop_immediate"],
)
def test_pipeline_db_restarted_during_upsert(memory_instance, cluster, tmp_path, how, mode):
    if not cluster.running():  # an earlier test failed while it was stopped
        cluster.start()
    db = f"pipeline_{how}"
    url = cluster.create_database(db)
    app_path = tmp_path / "app.db"
    bulk_app(app_path, 40 if how == "row_lock" else 2000)
    runtime = tmp_path / "runtime.json"
    runtime.write_text('{"sessions": {}}')
    res = resources(
        f"sqlite:///{app_path}",
        url,
        session_runtime=SessionRuntime(kind="file", location=str(runtime)),
    )
    holder = None
    stopper: dict = {}
    instance = memory_instance
    add_partitions(instance, ["pa", "pb"])
    assert reconcile(instance, res).success
    sql(app_path, 'UPDATE "Workspace" SET "name" = "name" || \' v2\', "prState" = \'MERGED\'')
    before = read_table(url)
    ids = sorted(before)

    admin = cluster.url()
    if how == "row_lock":
        # A second process holds the lock of the last row: the run's upsert locks every
        # other row of its batch, then waits on this one, inside its transaction.
        holder = subprocess.Popen(
            [
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(cluster.port),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                "BEGIN; SELECT workspace_id FROM workspace_snapshot "
                f"WHERE workspace_id = '{ids[-1]}' FOR UPDATE; SELECT pg_sleep(300);",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(
            lambda: scalar(
                admin,
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
                "AND query LIKE '%pg_sleep%' AND state = 'active'",
                db=db,
            ),
            60,
            "the lock holder",
        )
        condition = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND wait_event_type = 'Lock'"
        )
    else:
        condition = (
            "SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
            "AND query LIKE 'UPDATE workspace_snapshot%' "
            "AND state IN ('active', 'idle in transaction')"
        )

    def stop_when_writing():
        try:
            wait_for(lambda: scalar(admin, condition, db=db), 120, how, interval=0.005)
            stopper["seen"] = scalar(
                admin,
                "SELECT string_agg(state || ': ' || left(query, 60), ' | ') "
                "FROM pg_stat_activity WHERE datname = :db",
                db=db,
            )
            cluster.stop(mode)
            stopper["stopped"] = True
        except Exception as exc:  # let the run finish; the test fails below
            stopper["error"] = repr(exc)
            if holder is not None:
                holder.kill()

    thread = threading.Thread(target=stop_when_writing, daemon=True)
    thread.start()
    failed = reconcile(instance, res, raise_on_error=False)
    thread.join(timeout=180)
    if holder is not None:
        holder.kill()
        holder.wait(timeout=30)
    assert stopper.get("stopped"), stopper
    assert not failed.success
    errors = failures(failed)
    # The write is the last stage of the reconcile_snapshots step (authoritative, drift, write).
    assert list(errors) == [RECONCILE_STEP], errors
    error = errors[RECONCILE_STEP]
    assert "OperationalError" in error
    assert any(
        text in error
        for text in (
            "terminating connection due to administrator command",
            "server closed the connection unexpectedly",
            "connection already closed",
            "Connection refused",
        )
    ), error

    cluster.start()
    after = read_table(url)
    assert after.keys() == before.keys(), "rows lost or added"
    assert consistency_problems(after) == []
    renamed = [w for w in ids if after[w]["name"].endswith(" v2")]
    # One transaction: untouched or fully updated, never half.
    assert after == before or len(renamed) == len(ids), (len(renamed), len(ids))
    outcome = "untouched" if after == before else "fully updated"

    repaired = reconcile(instance, res)
    assert repaired.success
    assert_converged(url, expected_snapshots(app_path, runtime))
    assert check_evaluation(repaired, "table_matches_authoritative").passed
    print(
        f"\nFAULT pipeline_db_restart[{how}, stop -m {mode}]: {len(ids)} rows, "
        f"stopped while {stopper['seen']!r}; table {outcome}; run error: "
        f"{[line for line in error_lines(error) if 'OperationalError' in line][:1]}"
    )
