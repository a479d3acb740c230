"""Faults of the app DB against real in-process runs (``support.faults`` says what every fault must
leave): the app DB unreachable (a SQLite file moved away, a PostgreSQL database renamed away) fails
the extract after its retries and touches nothing, then the next run repairs; an app DB in no known
schema fails at once, without retries.
"""

from __future__ import annotations

import contextlib
import time

import dagster as dg
import pytest
import sqlalchemy as sa

from reconcile_pipeline.core.store import SnapshotStore
from reconcile_pipeline.defs.resources import SessionRuntime
from reconcile_pipeline_tests.support.app_db import AppDb
from reconcile_pipeline_tests.support.databases import (
    PG_ADMIN_URL,
    create_pg_database,
    drop_pg_database,
    make_engine,
    sql,
)
from reconcile_pipeline_tests.support.expected import (
    consistency_problems,
    expected_snapshots,
    read_table,
)
from reconcile_pipeline_tests.support.faults import (
    assert_converged,
    copy_app,
    count_events,
    error_lines,
    failures,
    file_runtime,
    ledger_runs,
    live_projects,
)
from reconcile_pipeline_tests.support.runs import (
    EXTRACT_STEP,
    add_partitions,
    check_evaluation,
    reconcile,
    resources,
)


class SqliteOutage:
    """The app DB file moved away (restore in progress, unmounted volume) and back."""

    def __init__(self, demo, tmp_path):
        self.path = copy_app(demo, tmp_path)
        self.url = f"sqlite:///{self.path}"
        self.runtime = file_runtime(demo)
        self.runtime_path = demo.session_runtime_path

    def projects(self):
        return live_projects(self.path)

    def change(self):
        sql(self.path, 'UPDATE "Workspace" SET "name" = "name" || \' (renamed)\'')

    def expected(self):
        return expected_snapshots(self.path, self.runtime_path)

    def down(self):
        self.path.rename(self.path.with_name("app.db.away"))

    def up(self):
        self.path.with_name("app.db.away").rename(self.path)

    def message(self):
        # Which database is gone: the operator must not have to guess between the app DB and
        # the pipeline DB (both are opened by this step).
        return [str(self.path)]

    def close(self):
        pass


class PostgresOutage:
    """The app DB on PostgreSQL: its database renamed away (it does not exist) and back."""

    def __init__(self, demo, tmp_path):
        self.url = create_pg_database("rp_app")
        self.name = self.url.rsplit("/", 1)[1]
        self.runtime = SessionRuntime(kind="none")
        self.app = AppDb(self.url)
        for project in ("pa", "pb"):
            self.app.add_project_with_workspaces(project, 4)
        self.app.dispose()

    def projects(self):
        return ["pa", "pb"]

    def change(self):
        self.app.execute('UPDATE "Workspace" SET "name" = "name" || \' (renamed)\'')
        self.app.dispose()

    def expected(self):
        return None  # checked through the product's convergence check and the names

    def _admin(self, sql):
        engine = make_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
        with engine.connect() as conn:
            conn.exec_driver_sql(sql)
        engine.dispose()

    def _rename(self, old, new):
        self._admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{old}' AND pid <> pg_backend_pid()"
        )
        self._admin(f'ALTER DATABASE "{old}" RENAME TO "{new}"')

    def down(self):
        self._rename(self.name, self.name + "_away")

    def up(self):
        self._rename(self.name + "_away", self.name)

    def message(self):
        return [f'database "{self.name}" does not exist']

    def close(self):
        with contextlib.suppress(Exception):
            self.up()
        drop_pg_database(self.url)


@pytest.mark.slow  # waits out the extract's retry policy (2 s + 4 s) on purpose
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_app_db_unreachable_fails_after_retries_touches_nothing_then_repairs(
    memory_instance, demo24, tmp_path, backend, request
):
    demo = demo24
    if backend == "postgresql":
        request.getfixturevalue("pg_url")  # skips (or fails in CI) without a server
    outage = (SqliteOutage if backend == "sqlite" else PostgresOutage)(demo, tmp_path)
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    res = resources(outage.url, url, session_runtime=outage.runtime)
    try:
        instance = memory_instance
        add_partitions(instance, outage.projects())
        assert reconcile(instance, res).success
        # The table drifts (an event the reconciliation must repair) and the app moves on.
        store = SnapshotStore(url)
        first = sorted(read_table(url))[0]
        store.upsert(first, {"status": "FAILED", "pr_state": "MERGED"}, source="event")
        outage.change()
        before = read_table(url)
        runs_before = ledger_runs(url)

        outage.down()
        started = time.monotonic()
        failed = reconcile(instance, res, raise_on_error=False)
        elapsed = time.monotonic() - started
        assert not failed.success
        errors = failures(failed)
        assert list(errors) == [EXTRACT_STEP], errors
        for text in outage.message():
            assert text in errors[EXTRACT_STEP], (
                f"the failure does not say which database is unreachable ({text!r}): "
                + " | ".join(error_lines(errors[EXTRACT_STEP]))
            )
        # The asset's RetryPolicy (2 retries, 2 s then 4 s) ran before giving up.
        assert count_events(failed, dg.DagsterEventType.STEP_UP_FOR_RETRY, EXTRACT_STEP) == 2
        assert elapsed >= 5.5
        # Nothing downstream ran: the table and the ledger are exactly as before.
        assert read_table(url) == before
        assert ledger_runs(url) == runs_before
        assert not failed.get_asset_materialization_events()

        outage.up()
        repaired = reconcile(instance, res)
        assert repaired.success
        converged = check_evaluation(repaired, "table_matches_authoritative")
        assert converged.passed and converged.metadata["events_won"].value == 0
        rows = read_table(url)
        assert consistency_problems(rows) == []
        assert all(r["name"].endswith("(renamed)") for r in rows.values())
        expected = outage.expected()
        if expected is not None:
            assert_converged(url, expected)
        else:  # the hand-built PostgreSQL app: every workspace READY, no PR
            assert {(r["status"], r["pr_state"]) for r in rows.values()} == {("READY", "NONE")}
        print(
            f"\nFAULT app_db_down[{backend}]: failed after {elapsed:.1f} s, 2 retries; "
            f"{errors[EXTRACT_STEP].splitlines()[0][:160]}"
        )
    finally:
        outage.close()


def test_an_unknown_schema_fails_the_run_once_without_retries_and_touches_nothing(
    memory_instance, demo24, tmp_path
):
    """A run started anyway (UI, CLI) on an app DB that matches no schema generation: the extract
    fails at once with the reason, its retry policy is not spent on it, nothing downstream runs.
    Once the app DB is readable again the next run reconciles."""
    demo = demo24
    path = copy_app(demo, tmp_path)
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    res = resources(f"sqlite:///{path}", url, session_runtime=file_runtime(demo))
    instance = memory_instance
    add_partitions(instance, live_projects(path))
    assert reconcile(instance, res).success
    before = read_table(url)
    sql(path, 'ALTER TABLE "WorkspaceRunScript" RENAME TO "WorkspaceRunScriptOld"')
    started = time.monotonic()
    failed = reconcile(instance, res, raise_on_error=False)
    assert time.monotonic() - started < 5  # no 2 s + 4 s of retry backoff
    assert not failed.success
    errors = failures(failed)
    assert list(errors) == [EXTRACT_STEP], errors
    assert "matches no known schema generation" in errors[EXTRACT_STEP]
    assert "table WorkspaceRunScript" in errors[EXTRACT_STEP]
    assert count_events(failed, dg.DagsterEventType.STEP_UP_FOR_RETRY, EXTRACT_STEP) == 0
    assert read_table(url) == before
    sql(path, 'ALTER TABLE "WorkspaceRunScriptOld" RENAME TO "WorkspaceRunScript"')
    assert reconcile(instance, res).success


# ---- (b) the pipeline DB restarted in the middle of the upsert ---------------------------------


# ---- (c) worktrees deleted or corrupted between the extract and git -----------------------------


# ---- (d) the session runtime down, slow or returning garbage ------------------------------------


# ---- (e) a run SIGKILLed in the middle ------------------------------------------------------
