"""Real faults against real runs: the app DB gone, the pipeline DB restarted in the middle of the
upsert (a private PostgreSQL cluster this test owns), worktrees deleted or corrupted between the
extract and git, the session runtime down/slow/garbage (a real local HTTP server), and runs
SIGKILLed at several moments (real multiprocess runs in their own process group).

After every fault: the table is either untouched or fully updated (every row self-consistent:
derived fields equal the contract's derivation of its raw fields, versions sane), the failure says why,
and the next run converges to expectations computed without product code (plain sqlite3, plain
git, the runtime JSON: ``support.expected.expected_snapshots``).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from reconcile_pipeline.concurrency import POOL_LIMITS
from reconcile_pipeline.core.ledger import DriftLedger
from reconcile_pipeline.core.store import SnapshotStore
from reconcile_pipeline.defs.reconciliation.partitions import range_tags
from reconcile_pipeline.defs.reconciliation.sensor import reconciliation_sensor
from reconcile_pipeline.defs.resources import AppDatabase, SessionRuntime
from reconcile_pipeline.demo.build import build_demo_app, demo_session_runtime
from reconcile_pipeline_tests.support.app_db import AppDb
from reconcile_pipeline_tests.support.databases import (
    PG_ADMIN_URL,
    create_pg_database,
    drop_pg_database,
    engine_for,
    make_engine,
    private_cluster,
    private_cluster_unavailable,
)
from reconcile_pipeline_tests.support.expected import (
    consistency_problems,
    expected_snapshots,
    read_table,
    table_differences,
)
from reconcile_pipeline_tests.support.processes import REPO, dagster_home, pipeline_env, wait_for
from reconcile_pipeline_tests.support.runs import (
    EXTRACT_STEP,
    RECONCILE_STEP,
    SHARD_STEP_PREFIX,
    add_partitions,
    add_project_partitions,
    before_git,
    check_evaluation,
    check_metadata,
    metadata_of,
    open_instance,
    partitions,
    reconcile,
    resources,
    run_summary,
    table_rows,
    with_hooks,
)
from reconcile_pipeline_tests.support.soak import group_values

E = dg.DagsterEventType


# ---- shared setup ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A 24-workspace demo app (real worktrees, sessions, runtime file), read only: tests that
    change the app DB work on a copy of app.db (the worktrees are shared, never modified)."""
    app = build_demo_app(tmp_path_factory.mktemp("faults") / "demo", workspaces=24, seed=5)
    demo_session_runtime(app, seed=5)
    return app


@contextlib.contextmanager
def memory_instance():
    """A real instance with in-memory storage (runs, events, partitions): about twice as fast
    per in-process run as a SQLite-backed one."""
    instance = dg.DagsterInstance.ephemeral()
    try:
        yield instance
    finally:
        instance.dispose()


def copy_app(demo, tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    shutil.copy(demo.app_db_path, path)
    return path


def app_sql(path: Path, statement: str, params: tuple = ()) -> None:
    conn = sqlite3.connect(path, timeout=30)
    try:
        with conn:
            conn.execute(statement, params)
    finally:
        conn.close()


def live_projects(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [r[0] for r in conn.execute('SELECT "id" FROM "Project" WHERE "isArchived" = 0')]
    finally:
        conn.close()


def file_runtime(demo) -> SessionRuntime:
    return SessionRuntime(kind="file", location=str(demo.session_runtime_path))


def failures(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """step key -> error text of its STEP_FAILURE."""
    out = {}
    for event in result.all_events:
        if event.event_type == E.STEP_FAILURE:
            error = event.event_specific_data.error
            out[event.step_key] = error.to_string() if error else ""
    return out


def error_lines(text: str) -> list[str]:
    """The message lines of an error chain (no stack frames)."""
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.startswith(" ") and "Stack Trace" not in line
    ]


def count_events(result: dg.ExecuteInProcessResult, kind: dg.DagsterEventType, step: str) -> int:
    return sum(1 for e in result.all_events if e.event_type == kind and e.step_key == step)


def assert_converged(url: str, expected: dict) -> None:
    rows = read_table(url)
    assert consistency_problems(rows) == []
    diffs = table_differences(rows, expected)
    assert diffs == [], f"{len(diffs)} differences, e.g. {diffs[:5]}"


def ledger_runs(url: str) -> set[str]:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.text("SELECT run_id FROM reconcile_run")).scalars())
    finally:
        engine.dispose()


# ---- (a) the app DB unreachable ---------------------------------------------------------------


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
        app_sql(self.path, 'UPDATE "Workspace" SET "name" = "name" || \' (renamed)\'')

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
    demo, tmp_path, backend, request
):
    if backend == "postgresql":
        request.getfixturevalue("pg_url")  # skips (or fails in CI) without a server
    outage = (SqliteOutage if backend == "sqlite" else PostgresOutage)(demo, tmp_path)
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    res = resources(outage.url, url, session_runtime=outage.runtime)
    try:
        with memory_instance() as instance:
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
            assert count_events(failed, E.STEP_UP_FOR_RETRY, EXTRACT_STEP) == 2
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


def test_an_unknown_schema_fails_the_run_once_without_retries_and_touches_nothing(demo, tmp_path):
    """A run started anyway (UI, CLI) on an app DB that matches no schema generation: the extract
    fails at once with the reason, its retry policy is not spent on it, nothing downstream runs.
    Once the app DB is readable again the next run reconciles."""
    path = copy_app(demo, tmp_path)
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    res = resources(f"sqlite:///{path}", url, session_runtime=file_runtime(demo))
    with memory_instance() as instance:
        add_partitions(instance, live_projects(path))
        assert reconcile(instance, res).success
        before = read_table(url)
        app_sql(path, 'ALTER TABLE "WorkspaceRunScript" RENAME TO "WorkspaceRunScriptOld"')
        started = time.monotonic()
        failed = reconcile(instance, res, raise_on_error=False)
        assert time.monotonic() - started < 5  # no 2 s + 4 s of retry backoff
        assert not failed.success
        errors = failures(failed)
        assert list(errors) == [EXTRACT_STEP], errors
        assert "matches no known schema generation" in errors[EXTRACT_STEP]
        assert "table WorkspaceRunScript" in errors[EXTRACT_STEP]
        assert count_events(failed, E.STEP_UP_FOR_RETRY, EXTRACT_STEP) == 0
        assert read_table(url) == before
        app_sql(path, 'ALTER TABLE "WorkspaceRunScriptOld" RENAME TO "WorkspaceRunScript"')
        assert reconcile(instance, res).success


# ---- (b) the pipeline DB restarted in the middle of the upsert ---------------------------------


@pytest.fixture(scope="module")
def cluster():
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


def _scalar(url: str, sql: str, **params):
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "mode"),
    [("row_lock", "fast"), ("bulk_update", "immediate")],
    ids=["blocked_on_row_lock-stop_fast", "mid_bulk_update-stop_immediate"],
)
def test_pipeline_db_restarted_during_upsert(cluster, tmp_path, how, mode):
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
    with memory_instance() as instance:
        add_partitions(instance, ["pa", "pb"])
        assert reconcile(instance, res).success
        app_sql(
            app_path, 'UPDATE "Workspace" SET "name" = "name" || \' v2\', "prState" = \'MERGED\''
        )
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
                lambda: _scalar(
                    admin,
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
                    "AND query LIKE '%pg_sleep%' AND state = 'active'",
                    db=db,
                ),
                60,
                "the lock holder",
            )
            condition = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
                "AND wait_event_type = 'Lock'"
            )
        else:
            condition = (
                "SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
                "AND query LIKE 'UPDATE workspace_snapshot%' "
                "AND state IN ('active', 'idle in transaction')"
            )

        def stop_when_writing():
            try:
                wait_for(lambda: _scalar(admin, condition, db=db), 120, how, interval=0.005)
                stopper["seen"] = _scalar(
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


# ---- (c) worktrees deleted or corrupted between the extract and git -----------------------------


def test_worktree_deleted_or_corrupted_between_extract_and_git(tmp_path):
    app = build_demo_app(tmp_path / "demo", workspaces=14, projects=2, seed=21)
    demo_session_runtime(app, seed=21)
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    res = resources(app.app_db_url, url, session_runtime=file_runtime(app))
    with memory_instance() as instance:
        add_partitions(instance, live_projects(app.app_db_path))
        tags = range_tags(partitions(instance))
        assert reconcile(instance, res).success
        with_stats = {w: r for w, r in read_table(url).items() if r["git_total"] is not None}
        victims = sorted(with_stats)[:3]
        assert len(victims) == 3
        conn = sqlite3.connect(app.app_db_path)
        paths = dict(conn.execute('SELECT "id", "worktreePath" FROM "Workspace"'))
        conn.close()

        def damage() -> None:  # after the extract read the paths, before git runs
            shutil.rmtree(deleted)
            (garbage / ".git").write_bytes(b"\x00\xffthis is not a gitdir line\n" * 3)
            (dangling / ".git").write_text("gitdir: /nonexistent/worktrees/gone\n")

        deleted, garbage, dangling = (Path(paths[w]) for w in victims)
        before_git(damage)
        rest = reconcile(instance, with_hooks(res), tags=tags)
    assert rest.success
    git = check_metadata(check_evaluation(rest, "git_stats_coverage"))
    reasons = {r["workspace_id"]: r["reason"] for r in table_rows(git["null_reasons"])}
    for victim in victims:
        assert victim in reasons, (victim, reasons)
    assert "worktree path is missing" in reasons[victims[0]]
    rows = read_table(url)
    assert consistency_problems(rows) == []
    for victim in victims:
        assert rows[victim]["git_total"] is None and rows[victim]["git_has_uncommitted"] is None
    # Every other worktree still has its stats, equal to plain git's.
    expected = expected_snapshots(app.app_db_path, app.session_runtime_path)
    assert table_differences(rows, expected) == []
    shown = [reasons[v].split(":")[0] for v in victims]
    print(f"\nFAULT worktree_gone_between_steps: run ok; null reasons {shown}")


# ---- (d) the session runtime down, slow or returning garbage ------------------------------------


class RuntimeServer:
    """A real local HTTP server for the session runtime, in one of several bad moods."""

    def __init__(self, mode: str, document: bytes):
        self.mode = mode
        self.document = document
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                server.hits += 1
                if server.mode == "slow":
                    time.sleep(3)
                    body, status = server.document, 200
                elif server.mode == "garbage":
                    body, status = b"<html>\x00\xff not json", 200
                elif server.mode == "broken_contract":
                    body, status = b'{"sessions": [{"s1": {"isWorking": true}}]}', 200
                elif server.mode == "error_500":
                    body, status = b"internal error", 500
                else:
                    body, status = server.document, 200
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client gave up (timeout): fine
                    pass

            def log_message(self, *args):
                pass

        self.hits = 0
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/runtime"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize(
    ("mode", "reason_words"),
    [
        ("down", ["failed after 2 attempts", "Connection refused"]),
        ("slow", ["failed after 2 attempts", "timed out"]),
        ("garbage", ["invalid JSON"]),
        ("broken_contract", ["bad session runtime document", "expected an object"]),
        ("error_500", ["failed after 2 attempts", "HTTP 500"]),
    ],
)
def test_session_runtime_unavailable_leaves_the_session_group_alone(
    demo, tmp_path, mode, reason_words
):
    app_path = copy_app(demo, tmp_path)
    app_url = f"sqlite:///{app_path}"
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    good = resources(app_url, url, session_runtime=file_runtime(demo))
    server = RuntimeServer(mode, demo.session_runtime_path.read_bytes())
    if mode == "down":
        server.close()  # nothing listens on that port any more
    try:
        runtime = SessionRuntime(kind="http", location=server.url, timeout_s=0.5, retries=1)
        bad = resources(app_url, url, session_runtime=runtime)
        with memory_instance() as instance:
            add_partitions(instance, live_projects(app_path))
            assert reconcile(instance, good).success
            # Session fields now differ from the truth (an event the runtime would contradict),
            # and the app DB moves on (a change the run must still apply).
            store = SnapshotStore(url)
            ids = sorted(read_table(url))
            for w in ids:
                truth = store.get(w)
                store.upsert(
                    w,
                    {
                        "is_working": not truth["is_working"],
                        "pending_request_type": "user_question",
                    },
                    source="event",
                )
            app_sql(app_path, 'UPDATE "Workspace" SET "branchName" = \'moved/\' || "id"')
            before = read_table(url)

            started = time.monotonic()
            result = reconcile(instance, bad)
            elapsed = time.monotonic() - started
            assert result.success
            auth = metadata_of(result, "authoritative_snapshots")
            assert auth["session_runtime"].startswith("session runtime unknown: "), auth[
                "session_runtime"
            ]
            for word in reason_words:
                assert word in auth["session_runtime"], auth["session_runtime"]
            assert run_summary(result)["unknown_cells"] == 0  # whole fields, not bad cells
            drift = check_metadata(check_evaluation(result, "drift_rate_below_threshold"))
            assert drift["drift_session"] == 0  # unknown is not drift
            assert drift["drift_workspace"] == len(ids)  # the branch move is
            assert check_evaluation(result, "table_matches_authoritative").passed
            after = read_table(url)
            assert consistency_problems(after) == []
            for w in ids:
                # The session group is not written (values and timestamp as before)...
                assert group_values(after[w], "session") == group_values(before[w], "session")
                assert after[w]["ts_session"] == before[w]["ts_session"]
                # ...and everything else is reconciled.
                assert after[w]["branch_name"] == f"moved/{w}"

            # The runtime back: the session group converges too.
            assert reconcile(instance, good).success
            assert_converged(url, expected_snapshots(app_path, demo.session_runtime_path))
    finally:
        if mode != "down":
            server.close()
    print(
        f"\nFAULT session_runtime[{mode}]: run ok in {elapsed:.1f} s; "
        f"session_runtime={auth['session_runtime'][:150]!r}"
    )


def test_a_bad_runtime_entry_is_a_per_row_reason_and_the_rest_is_reconciled(demo, tmp_path):
    """One broken entry in the runtime document (docs/CONTRACT.md, session runtime): its
    workspace's session group is unknown for the run, with the reason in reconcile_problem; every
    other workspace's session group is still reconciled."""
    app_path = copy_app(demo, tmp_path)
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    doc = json.loads(demo.session_runtime_path.read_text())
    victim = sorted(doc["sessions"])[0]
    doc["sessions"][victim]["isWorking"] = "yes"
    bad_path = tmp_path / "runtime.json"
    bad_path.write_text(json.dumps(doc))
    with sqlite3.connect(app_path) as conn:
        (victim_ws,) = conn.execute(
            f'SELECT "workspaceId" FROM "{agent_table(app_path)}" WHERE "id" = ?', (victim,)
        ).fetchone()
    with memory_instance() as instance:
        add_partitions(instance, live_projects(app_path))
        good = resources(f"sqlite:///{app_path}", url, session_runtime=file_runtime(demo))
        assert reconcile(instance, good).success
        store = SnapshotStore(url)
        for w, row in read_table(url).items():  # events the runtime contradicts, everywhere
            store.upsert(w, {"is_working": not row["is_working"]}, source="event")
        before = read_table(url)
        runtime = SessionRuntime(kind="file", location=str(bad_path))
        result = reconcile(
            instance, resources(f"sqlite:///{app_path}", url, session_runtime=runtime)
        )
        assert result.success
        assert check_evaluation(result, "table_matches_authoritative").passed
    after = read_table(url)
    assert group_values(after[victim_ws], "session") == group_values(before[victim_ws], "session")
    truth = expected_snapshots(app_path, demo.session_runtime_path)
    for w in after:
        if w != victim_ws:
            assert group_values(after[w], "session") == group_values(truth[w], "session"), w
    problems = DriftLedger(url).problems(result.run_id)
    mine = problems[problems["source"] == "session_runtime"]
    assert sorted(mine["field"]) == ["is_working", "pending_request_type", "session_summaries"]
    assert set(mine["workspace_id"]) == {victim_ws}
    assert mine["reason"].str.contains("isWorking must be a bool").all()


def agent_table(app_path: Path) -> str:
    with sqlite3.connect(app_path) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    return "AgentSession" if "AgentSession" in tables else "ClaudeSession"


# ---- (e) a run SIGKILLed in the middle ------------------------------------------------------


class KilledRun:
    """A multiprocess reconcile run (support.runs's runner) in its own process group."""

    def __init__(self, env: dict, partition_range: str, log_dir: Path):
        self.out = open(log_dir / "run.out", "ab")  # noqa: SIM115 (closed in kill)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reconcile_pipeline_tests.support.runs", "execute"]
            + ["--range", partition_range],
            env=env,
            cwd=REPO,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pgid = self.proc.pid

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pgid, signal.SIGKILL)
        self.proc.wait(timeout=60)
        self.out.close()
        # Every process of the run (runner, forkserver, step processes) is gone.
        wait_for(lambda: not _group_alive(self.pgid), 30, f"process group {self.pgid} to exit")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # Zombies of an exited group still count as members; reap ours, ignore what init reaps.
    return any(_pgid_of(pid) == pgid and not _zombie(pid) for pid in _pids())


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _pgid_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


def new_run_id(home: Path, known: set[str]) -> str | None:
    with open_instance(home) as instance:
        runs = [r.run_id for r in instance.get_runs(limit=5) if r.run_id not in known]
    return runs[0] if runs else None


def started_steps(home: Path, run_id: str) -> set[str]:
    with open_instance(home) as instance:
        return {e.step_key for e in instance.all_logs(run_id, of_type=E.STEP_START)}


def run_env(home: Path, app_path: Path, pipeline_url: str, runtime: Path) -> dict:
    return pipeline_env(
        home,
        RECONCILE_APP_DB_URL=f"sqlite:///{app_path}",
        RECONCILE_PIPELINE_DB_URL=pipeline_url,
        RECONCILE_SESSION_RUNTIME="file",
        RECONCILE_SESSION_RUNTIME_LOCATION=runtime,
    )


def _names_updated(url: str, app_path: Path) -> bool:
    conn = sqlite3.connect(app_path)
    names = dict(conn.execute('SELECT "id", "name" FROM "Workspace"'))
    conn.close()
    rows = read_table(url)
    return bool(rows) and all(r["name"] == names[w] for w, r in rows.items())


def check_after_kill(url: str, before: dict, app_path: Path) -> str:
    """Consistent rows; the batch applied entirely or not at all. Returns which."""
    after = read_table(url)
    assert after.keys() == before.keys(), "rows lost or added by a killed run"
    assert consistency_problems(after) == []
    for w, row in after.items():
        assert row["version"] >= before[w]["version"], w
    conn = sqlite3.connect(app_path)
    names = dict(conn.execute('SELECT "id", "name" FROM "Workspace"'))
    conn.close()
    updated = [w for w in after if after[w]["name"] == names[w]]
    if after == before:
        return "untouched"
    assert len(updated) == len(after), f"half a batch: {len(updated)} of {len(after)} rows"
    return "fully updated"


def held_pool_slot_runs(instance: dg.DagsterInstance) -> set[str]:
    return {
        slot.run_id
        for pool in POOL_LIMITS
        for slot in instance.event_log_storage.get_concurrency_info(pool).claimed_slots
    }


def end_like_run_monitoring(instance: dg.DagsterInstance, run_id: str) -> None:
    """What run monitoring does to a dead worker's run: fail it, then (after
    free_slots_after_run_end_seconds) give back the pool slots it still held."""
    instance.report_run_failed(instance.get_run_by_id(run_id))
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)


@pytest.mark.slow
@pytest.mark.timeout(400)
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_run_sigkilled_mid_way_leaves_a_consistent_table(demo, tmp_path, backend, request):
    """SQLite: SIGKILL when a git shard step has started (git processes running), and right
    after the upsert committed (before the step reports its materialization).
    PostgreSQL: SIGKILL while the upsert holds row locks and waits (a psql process holds the
    last row), then release the lock. Then one more run converges."""
    url = (
        f"sqlite:///{tmp_path / 'pipeline.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    app_path = copy_app(demo, tmp_path)
    home = dagster_home(tmp_path / "home")
    env = run_env(home, app_path, url, demo.session_runtime_path)
    partition_range = add_project_partitions(home, app_path)
    res = resources(f"sqlite:///{app_path}", url, session_runtime=file_runtime(demo))
    with open_instance(home) as instance:
        assert reconcile(instance, res).success  # seed, in process

    moments = (
        [SHARD_STEP_PREFIX, "upsert_committed"]
        if backend == "sqlite"
        else ["upsert_waiting_on_row_lock"]
    )
    outcomes = []
    known: set[str] = set()
    with open_instance(home) as instance:
        known |= {r.run_id for r in instance.get_runs()}
    for n, moment in enumerate(moments):
        app_sql(app_path, f'UPDATE "Workspace" SET "name" = "name" || \' k{n}\'')
        before = read_table(url)
        holder = None
        if moment == "upsert_waiting_on_row_lock":
            last = sorted(before)[-1]
            pg = sa.make_url(url)
            holder = subprocess.Popen(
                ["psql", "-h", pg.host, "-p", str(pg.port or 5432), "-U", pg.username]
                + ["-d", pg.database, "-c"]
                + [
                    "BEGIN; SELECT 1 FROM workspace_snapshot "
                    f"WHERE workspace_id = '{last}' FOR UPDATE; SELECT pg_sleep(300);"
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        started = time.monotonic()
        run = KilledRun(env, partition_range, tmp_path)
        try:
            run_id = wait_for(lambda: new_run_id(home, known), 120, "the run to be created")
            known.add(run_id)
            if moment == "upsert_committed":
                # Right after the upsert's commit, before the step reports anything: the table
                # is new, Dagster has not recorded the materialization.
                wait_for(
                    lambda: _names_updated(url, app_path), 120, "the upsert commit", interval=0.01
                )
            elif holder is None:
                wait_for(
                    lambda m=moment, r=run_id: any(s.startswith(m) for s in started_steps(home, r)),
                    120,
                    f"step {moment} to start",
                    interval=0.02,
                )
            else:
                wait_for(
                    lambda: _scalar(
                        PG_ADMIN_URL,
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
                        "AND wait_event_type = 'Lock'",
                        db=sa.make_url(url).database,
                    ),
                    120,
                    "the upsert to wait on the row lock",
                    interval=0.02,
                )
        finally:
            run.kill()
            if holder is not None:
                # Server side: a backend in pg_sleep would not notice its psql dying.
                _scalar(
                    PG_ADMIN_URL,
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :db AND query LIKE '%pg_sleep(300)%' "
                    "AND pid <> pg_backend_pid()",
                    db=sa.make_url(url).database,
                )
                holder.kill()
                holder.wait(timeout=30)
        if holder is not None:
            # The killed client's backend finishes its lock wait and dies on its dead socket.
            wait_for(
                lambda: (
                    not _scalar(
                        PG_ADMIN_URL,
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = :db "
                        "AND pid <> pg_backend_pid() AND state <> 'idle'",
                        db=sa.make_url(url).database,
                    )
                ),
                60,
                "the killed run's backend to go",
            )
        with open_instance(home) as instance:
            status = instance.get_run_by_id(run_id).status
            # A hard-killed worker keeps the pool slots it held: it never reports its end.
            assert held_pool_slot_runs(instance) == {run_id}
            if n < len(moments) - 1:
                # Else the next run would wait for the killed run's git slots (up to
                # max_runtime_seconds); the last killed run is left for the sensor to see.
                end_like_run_monitoring(instance, run_id)
        outcome = check_after_kill(url, before, app_path)
        outcomes.append((moment, round(time.monotonic() - started, 1), status.value, outcome))

    with open_instance(home) as instance:
        # The killed runs stay STARTED: nothing reports a SIGKILLed run worker, and the default
        # run launcher has no worker health check. The sensor never overlaps a run in flight, so
        # it waits, naming the run, until run monitoring fails it (max_runtime_seconds).
        app_db = {"app_db": AppDatabase(url=f"sqlite:///{app_path}")}
        tick = reconciliation_sensor(dg.build_sensor_context(instance=instance, resources=app_db))
        assert isinstance(tick, dg.SkipReason), tick
        assert run_id in tick.skip_message and "STARTED" in tick.skip_message.upper()
        skip = tick.skip_message
        end_like_run_monitoring(instance, run_id)
        assert held_pool_slot_runs(instance) == set()
        tick = reconciliation_sensor(dg.build_sensor_context(instance=instance, resources=app_db))
        assert isinstance(tick, dg.SensorResult) and len(tick.run_requests) == 1, tick
        next_run = reconcile(instance, res, tags=dict(tick.run_requests[0].tags))
        assert next_run.success  # the next run
    assert_converged(url, expected_snapshots(app_path, demo.session_runtime_path))
    print(f"\nFAULT sigkill[{backend}]: {json.dumps(outcomes)}; sensor meanwhile: {skip!r}")
