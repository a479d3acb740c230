"""The app DB reader against real SQLite files and real PostgreSQL databases."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from reconcile_pipeline.core import app_db
from reconcile_pipeline.core.app_db import (
    PROBLEM_COLUMNS,
    SESSION_COLUMNS,
    WORKSPACE_COLUMNS,
    app_engine,
    create_app_schema,
    extract_workspaces,
    list_projects,
    parse_datetime_ms,
    parse_datetime_series,
)

T0 = 1_704_164_645_123  # 2024-01-02T03:04:05.123Z
T0_TEXT = "2024-01-02 03:04:05.123"


def is_pg(engine: sa.Engine) -> bool:
    return engine.dialect.name == "postgresql"


def ts(engine: sa.Engine, ms: int | None):
    """A DateTime value as the app writes it: epoch ms on SQLite, naive UTC on PostgreSQL."""
    if ms is None:
        return None
    if is_pg(engine):
        return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=ms)
    return ms


def flag(engine: sa.Engine, value: bool):
    return value if is_pg(engine) or value is None else int(value)


def add_project(conn, engine, pid, *, archived=False, default_branch="main"):
    conn.execute(
        sa.text(
            'INSERT INTO "Project" ("id", "name", "slug", "repoPath", "worktreeBasePath", '
            '"defaultBranch", "isArchived", "createdAt", "updatedAt") '
            "VALUES (:id, :name, :slug, :repo, :base, :branch, :archived, :t, :t)"
        ),
        {
            "id": pid,
            "name": f"Project {pid}",
            "slug": f"slug-{pid}",
            "repo": f"/repos/{pid}",
            "base": f"/worktrees/{pid}",
            "branch": default_branch,
            "archived": flag(engine, archived),
            "t": ts(engine, T0),
        },
    )


WORKSPACE_DEFAULTS = {
    "name": "ws",
    "status": "READY",
    "worktreePath": None,
    "branchName": "feat/x",
    "runScriptStatus": "IDLE",
    "prUrl": None,
    "prNumber": None,
    "prState": "NONE",
    "prCiStatus": "UNKNOWN",
    "prUpdatedAt": None,
    "ratchetEnabled": True,
    "ratchetState": "IDLE",
    "hasHadSessions": False,
    "createdAt": T0,
    "updatedAt": T0,
}


def add_workspace(conn, engine, wid, pid, *, raw=(), **values):
    """Insert a Workspace row. DateTime/Boolean values are encoded for the dialect unless the
    column is named in ``raw`` (then the value goes to the DB as given: bad-input tests)."""
    row = {**WORKSPACE_DEFAULTS, **values, "id": wid, "projectId": pid}
    for col in ("createdAt", "updatedAt", "prUpdatedAt"):
        if col not in raw:
            row[col] = ts(engine, row[col])
    for col in ("ratchetEnabled", "hasHadSessions"):
        if col not in raw:
            row[col] = flag(engine, row[col])
    cols = list(row)
    conn.execute(
        sa.text(
            'INSERT INTO "Workspace" ('
            + ", ".join(f'"{c}"' for c in cols)
            + ") VALUES ("
            + ", ".join(f":{c}" for c in cols)
            + ")"
        ),
        row,
    )


def add_session(conn, engine, table, sid, wid, updated, *, created=T0, raw=False):
    conn.execute(
        sa.text(
            f'INSERT INTO "{table}" ("id", "workspaceId", "status", "createdAt", "updatedAt") '
            "VALUES (:id, :wid, 'RUNNING', :created, :updated)"
        ),
        {
            "id": sid,
            "wid": wid,
            "created": created if raw else ts(engine, created),
            "updated": updated if raw else ts(engine, updated),
        },
    )


@pytest.fixture
def engine(db_url):
    engine = sa.create_engine(db_url)
    create_app_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def loose_engine(db_url):
    """Schema without NOT NULL / keys / foreign keys: lets tests store broken data."""
    engine = sa.create_engine(db_url)
    create_app_schema(engine, constraints=False)
    yield engine
    engine.dispose()


def reader(engine: sa.Engine) -> sa.Engine:
    return app_engine(engine.url)


def by_id(frame: pd.DataFrame) -> dict[str, dict]:
    return {row["workspace_id"]: row for row in frame.to_dict("records")}


# ---- schema ------------------------------------------------------------------------------------


def test_schema_matches_prisma_names_and_defaults(engine):
    insp = sa.inspect(engine)
    assert {"Project", "Workspace", "ClaudeSession", "TerminalSession"} <= set(
        insp.get_table_names()
    )
    ws_cols = {c["name"] for c in insp.get_columns("Workspace")}
    assert {
        "projectId",
        "worktreePath",
        "branchName",
        "runScriptStatus",
        "prUrl",
        "prNumber",
        "prState",
        "prCiStatus",
        "prUpdatedAt",
        "ratchetEnabled",
        "ratchetState",
        "hasHadSessions",
        "createdAt",
        "updatedAt",
    } <= ws_cols
    assert insp.get_pk_constraint("Workspace")["constrained_columns"] == ["id"]
    fks = insp.get_foreign_keys("Workspace")
    assert [(fk["referred_table"], fk["constrained_columns"]) for fk in fks] == [
        ("Project", ["projectId"])
    ]
    assert any(ix["column_names"] == ["projectId"] for ix in insp.get_indexes("Workspace"))
    create_app_schema(engine)  # idempotent

    # Defaults as in DESIGN / Prisma: only required columns given.
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                'INSERT INTO "Project" ("id", "name", "slug", "repoPath", "worktreeBasePath", '
                "\"updatedAt\") VALUES ('p', 'P', 'p', '/r', '/w', :t)"
            ),
            {"t": ts(engine, T0)},
        )
        conn.execute(
            sa.text(
                'INSERT INTO "Workspace" ("id", "projectId", "name", "updatedAt") '
                "VALUES ('w', 'p', 'W', :t)"
            ),
            {"t": ts(engine, T0)},
        )
        if not is_pg(engine):
            # SQL default CURRENT_TIMESTAMP on SQLite: 'YYYY-MM-DD HH:MM:SS' text.
            kind = conn.execute(sa.text('SELECT typeof("createdAt") FROM "Workspace"')).scalar()
            assert kind == "text"
    before = int(time.time() * 1000) - 120_000
    extract = extract_workspaces(reader(engine))
    row = by_id(extract.workspaces)["w"]
    assert row["status"] == "NEW"
    assert row["default_branch"] == "main"
    assert row["ratchet_enabled"] is True
    assert row["has_had_sessions"] is False
    assert (row["pr_state"], row["pr_ci_status"]) == ("NONE", "UNKNOWN")
    assert (row["ratchet_state"], row["run_script_status"]) == ("IDLE", "IDLE")
    assert row["created_at"] >= before  # parsed default timestamp, roughly now
    assert extract.problems.empty


def test_ddl_types_per_dialect():
    sqlite = "\n".join(app_db.app_schema_ddl("sqlite"))
    pg = "\n".join(app_db.app_schema_ddl("postgresql"))
    assert '"createdAt" DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP' in sqlite
    assert '"createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP' in pg
    assert '"ratchetEnabled" BOOLEAN NOT NULL DEFAULT true' in pg
    assert "\"defaultBranch\" TEXT NOT NULL DEFAULT 'main'" in sqlite
    loose = "\n".join(app_db.app_schema_ddl("sqlite", constraints=False))
    assert "NOT NULL" not in loose and "FOREIGN KEY" not in loose
    with pytest.raises(ValueError, match="unsupported dialect"):
        app_db.app_schema_ddl("mysql")


# ---- extract -----------------------------------------------------------------------------------


def fill_basic(engine):
    with engine.begin() as conn:
        add_project(conn, engine, "p1")
        add_project(conn, engine, "p2", default_branch="develop")
        add_project(conn, engine, "p3", archived=True)
        add_workspace(
            conn,
            engine,
            "w1",
            "p1",
            name="First",
            worktreePath="/wt/w1",
            prUrl="https://example.invalid/pull/7",
            prNumber=7,
            prState="OPEN",
            prCiStatus="PENDING",
            prUpdatedAt=T0 + 5,
            ratchetEnabled=False,
            ratchetState="CI_RUNNING",
            runScriptStatus="RUNNING",
            hasHadSessions=True,
        )
        add_workspace(conn, engine, "w2", "p1", status="NEW")
        add_workspace(conn, engine, "w3", "p2", status="FAILED", branchName=None)
        add_workspace(conn, engine, "w-archived", "p1", status="ARCHIVED")
        add_workspace(conn, engine, "w-in-archived-project", "p3")
        # w1: agent and terminal sessions, the terminal one is the latest.
        add_session(conn, engine, "ClaudeSession", "a1", "w1", T0 + 1_000)
        add_session(conn, engine, "ClaudeSession", "a2", "w1", T0 + 2_000)
        add_session(conn, engine, "TerminalSession", "t1", "w1", T0 + 9_000)
        # w3: only an agent session; archived workspace's session must not show up.
        add_session(conn, engine, "ClaudeSession", "a3", "w3", T0 + 3_000)
        add_session(conn, engine, "ClaudeSession", "a-arch", "w-archived", T0 + 4_000)
        add_session(conn, engine, "TerminalSession", "t-arch", "w-in-archived-project", T0)


def test_extract_shapes_workspaces_and_sessions(engine):
    fill_basic(engine)
    extract = extract_workspaces(reader(engine))
    assert list(extract.workspaces.columns) == list(WORKSPACE_COLUMNS)
    assert list(extract.sessions.columns) == list(SESSION_COLUMNS)
    assert list(extract.problems.columns) == list(PROBLEM_COLUMNS)
    assert extract.problems.empty
    assert extract.workspaces["workspace_id"].tolist() == ["w1", "w2", "w3"]
    dtypes = extract.workspaces.dtypes
    for col in ("created_at", "pr_number", "pr_updated_at", "last_activity_at"):
        assert str(dtypes[col]) == "Int64", col
    for col in ("has_had_sessions", "ratchet_enabled"):
        assert str(dtypes[col]) == "boolean", col

    rows = by_id(extract.workspaces)
    assert rows["w1"] == {
        "workspace_id": "w1",
        "project_id": "p1",
        "project_slug": "slug-p1",
        "default_branch": "main",
        "worktree_path": "/wt/w1",
        "name": "First",
        "status": "READY",
        "created_at": T0,
        "branch_name": "feat/x",
        "has_had_sessions": True,
        "pr_url": "https://example.invalid/pull/7",
        "pr_number": 7,
        "pr_state": "OPEN",
        "pr_ci_status": "PENDING",
        "pr_updated_at": T0 + 5,
        "ratchet_enabled": False,
        "ratchet_state": "CI_RUNNING",
        "run_script_status": "RUNNING",
        "last_activity_at": T0 + 9_000,  # the terminal session counts too
    }
    assert pd.isna(rows["w2"]["last_activity_at"])  # no sessions
    assert pd.isna(rows["w2"]["pr_number"]) and pd.isna(rows["w2"]["pr_url"])
    assert rows["w3"]["default_branch"] == "develop"
    assert pd.isna(rows["w3"]["branch_name"])
    assert rows["w3"]["last_activity_at"] == T0 + 3_000

    sessions = extract.sessions
    assert sorted(zip(sessions["session_id"], sessions["kind"], strict=True)) == [
        ("a1", "agent"),
        ("a2", "agent"),
        ("a3", "agent"),
        ("t1", "terminal"),
    ]
    t1 = sessions[sessions["session_id"] == "t1"].iloc[0]
    assert (t1["workspace_id"], t1["status"], t1["updated_at"], t1["created_at"]) == (
        "w1",
        "RUNNING",
        T0 + 9_000,
        T0,
    )


def test_project_filter(engine):
    fill_basic(engine)
    eng = reader(engine)
    assert extract_workspaces(eng, ["p1"]).workspaces["workspace_id"].tolist() == ["w1", "w2"]
    assert extract_workspaces(eng, ("p2", "p3")).workspaces["workspace_id"].tolist() == ["w3"]
    only_p1 = extract_workspaces(eng, ["p1"]).sessions
    assert set(only_p1["session_id"]) == {"a1", "a2", "t1"}
    for ids in ([], ["no-such-project"]):
        empty = extract_workspaces(eng, ids)
        assert empty.workspaces.empty and empty.sessions.empty and empty.problems.empty
        assert list(empty.workspaces.columns) == list(WORKSPACE_COLUMNS)
        assert str(empty.workspaces["created_at"].dtype) == "Int64"


def test_extract_is_one_bound_statement(engine):
    fill_basic(engine)
    eng = reader(engine)
    with eng.connect():
        pass  # the first connect runs the dialect's own setup queries: not ours to count
    seen: list[tuple[str, object]] = []

    @sa.event.listens_for(eng, "before_cursor_execute")
    def _count(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    for ids in (None, ["p1", "p2"], []):
        seen.clear()
        extract_workspaces(eng, ids)
        assert len(seen) == 1, seen
        statement, parameters = seen[0]
        assert "UNION ALL" in statement
        # values are bound, never formatted into the SQL
        assert "ARCHIVED" not in statement and "'p1'" not in statement
        if ids:
            flat = parameters.values() if isinstance(parameters, dict) else parameters
            assert {"p1", "p2"} <= set(flat)


def test_reader_is_read_only(engine):
    fill_basic(engine)
    eng = reader(engine)
    with pytest.raises(sa.exc.DBAPIError, match="(?i)read.?only"), eng.begin() as conn:
        conn.execute(sa.text('DELETE FROM "Workspace"'))
    assert len(extract_workspaces(eng).workspaces) == 3


def test_list_projects(engine):
    fill_basic(engine)
    projects = list_projects(reader(engine))
    assert list(projects.columns) == ["project_id", "slug", "name", "is_archived", "default_branch"]
    assert projects.to_dict("records") == [
        {
            "project_id": "p1",
            "slug": "slug-p1",
            "name": "Project p1",
            "is_archived": False,
            "default_branch": "main",
        },
        {
            "project_id": "p2",
            "slug": "slug-p2",
            "name": "Project p2",
            "is_archived": False,
            "default_branch": "develop",
        },
        {
            "project_id": "p3",
            "slug": "slug-p3",
            "name": "Project p3",
            "is_archived": True,
            "default_branch": "main",
        },
    ]


def test_sqlite_datetime_encodings_agree(sqlite_url):
    """Prisma epoch ms, SQL-default text and ISO-8601 text (Z, offsets) parse to the same ms."""
    engine = sa.create_engine(sqlite_url)
    create_app_schema(engine)
    encodings = {
        "int-ms": T0,
        "numeric-text": str(T0),
        "sql-default-text": T0_TEXT,
        "iso-z": "2024-01-02T03:04:05.123Z",
        "iso-offset": "2024-01-02T05:04:05.123+02:00",
        "iso-negative-offset": "2024-01-01T22:04:05.123-05:00",
        "iso-micro": "2024-01-02T03:04:05.123999",
    }
    raw = ("createdAt", "prUpdatedAt")
    with engine.begin() as conn:
        add_project(conn, engine, "p")
        for n, (name, value) in enumerate(encodings.items()):
            add_workspace(conn, engine, name, "p", raw=raw, createdAt=value, prUpdatedAt=value)
            add_session(conn, engine, "ClaudeSession", f"a{n}", name, value, raw=True)
            add_session(conn, engine, "TerminalSession", f"t{n}", name, T0_TEXT, raw=True)
        kinds = set(conn.execute(sa.text('SELECT typeof("createdAt") FROM "Workspace"')).scalars())
    assert kinds == {"integer", "text"}  # both storage classes really are exercised
    extract = extract_workspaces(app_engine(sqlite_url))
    assert extract.problems.empty
    frame = extract.workspaces
    assert len(frame) == len(encodings)
    assert set(frame["created_at"]) == {T0}
    assert set(frame["pr_updated_at"]) == {T0}
    assert set(frame["last_activity_at"]) == {T0}
    assert set(extract.sessions["updated_at"]) == {T0}
    engine.dispose()


def test_booleans_stored_as_0_1_on_sqlite(sqlite_url):
    engine = sa.create_engine(sqlite_url)
    create_app_schema(engine)
    with engine.begin() as conn:
        add_project(conn, engine, "p")
        add_workspace(conn, engine, "w0", "p", ratchetEnabled=False, hasHadSessions=False)
        add_workspace(conn, engine, "w1", "p", ratchetEnabled=True, hasHadSessions=True)
        stored = conn.execute(sa.text('SELECT "ratchetEnabled" FROM "Workspace" ORDER BY id'))
        assert [r[0] for r in stored] == [0, 1]
    rows = by_id(extract_workspaces(app_engine(sqlite_url)).workspaces)
    assert (rows["w0"]["ratchet_enabled"], rows["w0"]["has_had_sessions"]) == (False, False)
    assert (rows["w1"]["ratchet_enabled"], rows["w1"]["has_had_sessions"]) == (True, True)
    engine.dispose()


# ---- bad input -----------------------------------------------------------------------------------


def fill_broken(engine):
    """A good row plus one row per kind of breakage (what each dialect can store)."""
    pg = is_pg(engine)
    with engine.begin() as conn:
        add_project(conn, engine, "p")
        add_project(conn, engine, "p-archived-text")
        add_project(conn, engine, "p-archived-odd")
        add_workspace(conn, engine, "w-ok", "p", prState="OPEN", prUrl="u", prNumber=3)
        add_session(conn, engine, "ClaudeSession", "s-ok", "w-ok", T0 + 10)
        add_workspace(conn, engine, "w-enum", "p", prState="WEIRD", prCiStatus="SUCCESS")
        add_workspace(conn, engine, "w-status-unknown", "p", status="ZOMBIE")
        add_workspace(conn, engine, "w-status-null", "p", status=None)
        add_workspace(conn, engine, "w-name-null", "p", name=None)
        add_workspace(conn, engine, "w-created-null", "p", createdAt=None)
        add_workspace(conn, engine, "w-bool-null", "p", ratchetEnabled=None)
        add_workspace(conn, engine, "w-negative", "p", prNumber=-5)
        add_workspace(conn, engine, "w-dup", "p", name="one")
        add_workspace(conn, engine, "w-dup", "p", name="two")
        add_workspace(conn, engine, "w-orphan", "no-such-project")
        add_workspace(conn, engine, "w-bad-session", "p")
        add_session(conn, engine, "ClaudeSession", "s-good", "w-bad-session", T0)
        add_session(conn, engine, "TerminalSession", "s-null", "w-bad-session", None)
        if not pg:  # SQLite's loose typing lets the app store these
            add_workspace(
                conn, engine, "w-created-garbage", "p", raw=("createdAt",), createdAt="yesterday"
            )
            add_workspace(
                conn,
                engine,
                "w-pr-updated-garbage",
                "p",
                raw=("prUpdatedAt",),
                prUpdatedAt="2024-13-45 00:00:00",
            )
            add_workspace(conn, engine, "w-huge", "p", prNumber="99999999999999999999")
            add_workspace(conn, engine, "w-pr-text", "p", prNumber="abc")
            add_workspace(conn, engine, "w-pr-fraction", "p", prNumber=2.5)
            add_workspace(
                conn, engine, "w-bool-text", "p", raw=("hasHadSessions",), hasHadSessions="yes"
            )
            add_workspace(
                conn, engine, "w-bool-two", "p", raw=("ratchetEnabled",), ratchetEnabled=2
            )
            add_workspace(conn, engine, "w-garbage-session", "p")
            add_session(
                conn, engine, "TerminalSession", "s-garbage", "w-garbage-session", "soon", raw=True
            )
            # isArchived written as text by another driver: 'true' is archived, 'maybe' is not.
            conn.execute(
                sa.text(
                    "UPDATE \"Project\" SET \"isArchived\" = 'true' WHERE id = 'p-archived-text'"
                )
            )
            conn.execute(
                sa.text(
                    "UPDATE \"Project\" SET \"isArchived\" = 'maybe' WHERE id = 'p-archived-odd'"
                )
            )
            add_workspace(conn, engine, "w-in-text-archived", "p-archived-text")
            add_workspace(conn, engine, "w-in-odd-archived", "p-archived-odd")


def test_bad_input_is_reported_not_raised(loose_engine):
    fill_broken(loose_engine)
    pg = is_pg(loose_engine)
    extract = extract_workspaces(reader(loose_engine))
    rows = by_id(extract.workspaces)
    problems = {(p["workspace_id"], p["field"]): p for p in extract.problems.to_dict("records")}

    expected = {
        ("w-enum", "pr_state"),
        ("w-status-unknown", "status"),
        ("w-status-null", "status"),
        ("w-name-null", "name"),
        ("w-created-null", "created_at"),
        ("w-bool-null", "ratchet_enabled"),
        ("w-negative", "pr_number"),
        ("w-dup", "workspace_id"),
        ("w-bad-session", "last_activity_at"),
    }
    if not pg:
        expected |= {
            ("w-created-garbage", "created_at"),
            ("w-pr-updated-garbage", "pr_updated_at"),
            ("w-huge", "pr_number"),
            ("w-pr-text", "pr_number"),
            ("w-pr-fraction", "pr_number"),
            ("w-bool-text", "has_had_sessions"),
            ("w-bool-two", "ratchet_enabled"),
            ("w-garbage-session", "last_activity_at"),
            ("w-in-odd-archived", "project_is_archived"),
        }
    assert set(problems) == expected
    assert len(extract.problems) == len(expected)  # one row per bad cell

    # Each problem cell is NA, the rest of its row is intact.
    row_level = {("w-dup", "workspace_id"), ("w-in-odd-archived", "project_is_archived")}
    for wid, field in expected - row_level:
        assert pd.isna(rows[wid][field]), (wid, field)
    assert rows["w-enum"]["pr_ci_status"] == "SUCCESS"
    assert rows["w-enum"]["created_at"] == T0
    assert rows["w-negative"]["pr_state"] == "NONE"
    assert rows["w-bad-session"]["has_had_sessions"] is False

    # Reasons name the column, the value and what was expected.
    reason = problems[("w-enum", "pr_state")]["reason"]
    assert "Workspace.prState 'WEIRD'" in reason and "'CHANGES_REQUESTED'" in reason
    assert problems[("w-enum", "pr_state")]["value"] == "WEIRD"
    assert (
        problems[("w-status-null", "status")]["reason"]
        == "NULL in NOT NULL column Workspace.status"
    )
    assert problems[("w-status-null", "status")]["value"] == "NULL"
    assert "negative" in problems[("w-negative", "pr_number")]["reason"]
    assert "s-null" in problems[("w-bad-session", "last_activity_at")]["reason"]
    assert "duplicate" in problems[("w-dup", "workspace_id")]["reason"]
    if not pg:
        assert (
            "unparseable DateTime Workspace.createdAt 'yesterday'"
            in (problems[("w-created-garbage", "created_at")]["reason"])
        )
        assert "64 bits" in problems[("w-huge", "pr_number")]["reason"]
        assert (
            (problems[("w-bool-text", "has_had_sessions")]["reason"])
            == "non-boolean Workspace.hasHadSessions 'yes'"
        )

    # Unknown / NULL status: still extracted (only ARCHIVED is skipped); orphans are not.
    assert "w-status-unknown" in rows and "w-status-null" in rows
    assert "w-orphan" not in rows
    assert extract.workspaces["workspace_id"].is_unique
    assert rows["w-dup"]["name"] in {"one", "two"}
    if not pg:
        assert "w-in-text-archived" not in rows
        assert "w-in-odd-archived" in rows

    # The good row is exactly as it would be without its broken neighbours.
    ok = rows["w-ok"]
    assert (ok["pr_state"], ok["pr_number"], ok["last_activity_at"]) == ("OPEN", 3, T0 + 10)
    assert ok["created_at"] == T0 and ok["ratchet_enabled"] is True


# ---- DateTime parsing ------------------------------------------------------------------------------

PLUS_2 = dt.timezone(dt.timedelta(hours=2))
PARSE_CASES = [
    (None, None),
    (float("nan"), None),
    (T0, T0),
    (np.int64(T0), T0),
    (float(T0), T0),
    (T0 + 0.9, T0),  # floor to the ms
    (0, 0),
    (-1, -1),
    (str(T0), T0),
    (f" {T0} ", T0),
    (T0_TEXT, T0),
    ("2024-01-02 03:04:05", T0 - 123),
    ("2024-01-02T03:04:05.123Z", T0),
    ("2024-01-02T03:04:05.1239Z", T0),  # truncated, not rounded
    ("2024-01-02T03:04:05.123456789Z", T0),
    ("2024-01-02T03:04:05.12Z", T0 - 3),
    ("2024-01-02T05:04:05.123+02:00", T0),
    ("2024-01-02T05:04:05.123+0200", T0),
    ("2024-01-01T22:04:05.123-05:00", T0),
    ("2024-01-02T03:04", T0 - 5_123),
    ("2024-01-02", 1_704_153_600_000),
    ("1969-12-31T23:59:59.999Z", -1),
    ("0001-01-01 00:00:00", -62_135_596_800_000),
    ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
    (dt.datetime(2024, 1, 2, 3, 4, 5, 123_999), T0),  # naive = UTC (PostgreSQL), truncated
    (dt.datetime(2024, 1, 2, 5, 4, 5, 123_000, tzinfo=PLUS_2), T0),
    (pd.Timestamp("2024-01-02T03:04:05.123Z"), T0),
]
GARBAGE = [
    "",
    "yesterday",
    "2024-13-01 00:00:00",
    "2024-02-30",
    "2024/01/02",
    "12:00",
    "2024-01-02T03:04:05 Z",
    "2024-01-02T03:04:05+24:00",
    True,
    b"2024-01-02",
    float("inf"),
    2**63,
    float(2**64),
    dt.date(2024, 1, 2),
]


@pytest.mark.parametrize(("value", "expected"), PARSE_CASES, ids=repr)
def test_parse_datetime_ms(value, expected):
    assert parse_datetime_ms(value) == expected


@pytest.mark.parametrize("value", GARBAGE, ids=repr)
def test_parse_datetime_ms_rejects_garbage(value):
    with pytest.raises(ValueError):
        parse_datetime_ms(value)


def test_parse_datetime_series_agrees_with_scalar():
    values = [v for v, _ in PARSE_CASES] + GARBAGE
    series = pd.Series(values, index=range(100, 100 + len(values)), dtype=object)
    parsed, bad = parse_datetime_series(series)
    assert str(parsed.dtype) == "Int64" and bad.dtype == bool
    assert list(parsed.index) == list(series.index)
    for value, got, is_bad in zip(values, parsed, bad, strict=True):
        try:
            want = parse_datetime_ms(value)
        except ValueError:
            assert is_bad and got is pd.NA, value
        else:
            assert not is_bad, value
            assert (got is pd.NA) if want is None else got == want, (value, got, want)


def test_parse_datetime_series_is_vectorised_fast():
    n = 20_000
    rng = np.random.default_rng(0)
    ints = rng.integers(0, 2**41, n).tolist()
    values = ints + [T0_TEXT] * n + ["2024-01-02T05:04:05.123+02:00"] * n + [None] * 100
    series = pd.Series(values, dtype=object)
    started = time.perf_counter()
    parsed, bad = parse_datetime_series(series)
    assert time.perf_counter() - started < 1.5
    assert not bad.any()
    assert parsed.iloc[:n].tolist() == ints
    assert set(parsed.iloc[n : 3 * n]) == {T0}


# ---- engine ----------------------------------------------------------------------------------------


def test_app_engine_errors_and_url_masking(tmp_path):
    with pytest.raises(FileNotFoundError, match="app DB not found"):
        app_engine(f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()  # read-only never creates an empty DB
    masked = app_db.describe_url("postgresql+psycopg2://app:s3cret@db.example:5432/app")
    assert "s3cret" not in masked and "***" in masked
    # odd characters in the path survive the read-only URI form
    odd = tmp_path / "dir with space #1"
    odd.mkdir()
    url = f"sqlite:///{odd / 'app.db'}"
    writer = sa.create_engine(url)
    create_app_schema(writer)
    writer.dispose()
    assert extract_workspaces(app_engine(url)).workspaces.empty


def test_core_does_not_import_dagster():
    code = (
        "import sys, reconcile_pipeline.core.app_db, reconcile_pipeline.core.demo, "
        "reconcile_pipeline.cli; "
        "bad = [m for m in sys.modules if m.split('.')[0] == 'dagster']; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
