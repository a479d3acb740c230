"""The app DB extract against real SQLite files and real PostgreSQL databases, in every schema
generation of the app."""

from __future__ import annotations

import subprocess
import sys
import time

import pandas as pd
import pytest
import sqlalchemy as sa

from reconcile_pipeline.core.db import app_engine, safe_url
from reconcile_pipeline.core.extract import (
    PROBLEM_COLUMNS,
    SESSION_COLUMNS,
    WORKSPACE_COLUMNS,
    extract_workspaces,
    list_projects,
)
from reconcile_pipeline_tests.support.app_db import AppDb

T0 = 1_704_164_645_123  # 2024-01-02T03:04:05.123Z
T0_TEXT = "2024-01-02 03:04:05.123"
GENERATIONS = (1, 2, 3)


def is_pg(app: AppDb) -> bool:
    return app.engine.dialect.name == "postgresql"


@pytest.fixture
def app_any_generation(db_url, generation):
    """An app DB in each schema generation, on SQLite and on PostgreSQL."""
    app = AppDb(db_url, generation=generation)
    yield app
    app.dispose()


@pytest.fixture
def loose_app_any_generation(db_url, generation):
    """``app_any_generation`` without NOT NULL / keys / foreign keys: lets tests store broken
    data."""
    app = AppDb(db_url, generation=generation, constraints=False)
    yield app
    app.dispose()


def reader(app: AppDb) -> sa.Engine:
    return app_engine(app.url)


def by_id(frame: pd.DataFrame) -> dict[str, dict]:
    return {row["workspace_id"]: row for row in frame.to_dict("records")}


def workspace(app: AppDb, wid: str, pid: str, **fields) -> None:
    defaults = {"name": "ws", "branchName": "feat/x", "createdAt": T0, "updatedAt": T0}
    app.add_workspace(wid, pid, **{**defaults, **fields})


# ---- defaults --------------------------------------------------------------------------------


def test_app_defaults_when_only_required_columns_are_given(app_any_generation, generation):
    app = app_any_generation
    """The app's column defaults, and in gen 3 a missing side row, read as the app reads them."""
    app.insert(
        "Project",
        {"id": "p", "name": "P", "slug": "p", "repoPath": "/r", "worktreeBasePath": "/w"}
        | {"updatedAt": T0},
    )
    app.insert("Workspace", {"id": "w", "projectId": "p", "name": "W", "updatedAt": T0})
    if not is_pg(app):
        with app.engine.connect() as conn:
            # SQL default CURRENT_TIMESTAMP on SQLite: 'YYYY-MM-DD HH:MM:SS' text.
            kind = conn.execute(sa.text('SELECT typeof("createdAt") FROM "Workspace"')).scalar()
        assert kind == "text"
    before = int(time.time() * 1000) - 120_000
    extract = extract_workspaces(reader(app))
    row = by_id(extract.workspaces)["w"]
    assert row["status"] == "NEW"
    assert row["default_branch"] == "main"
    assert row["ratchet_enabled"] is True
    assert row["has_had_sessions"] is False
    assert (row["pr_state"], row["pr_ci_status"]) == ("NONE", "UNKNOWN")
    assert (row["ratchet_state"], row["run_script_status"]) == ("IDLE", "IDLE")
    assert row["created_at"] >= before  # parsed default timestamp, roughly now
    assert extract.problems.empty
    # Fields a generation does not have are unknown, not defaults: gen 1 has none of the
    # auto-iteration and dispatch fields, gen 2 (1e0ebc21) has them on Workspace but no stalled
    # flag and no merge-conflict fact; gen 3's missing side rows read as the app's defaults.
    unknown = {
        1: {
            "has_merge_conflict",
            "mode",
            "auto_iteration_status",
            "ratchet_dispatch_outcome",
            "ratchet_dispatch_retry_count",
            "ratchet_dispatch_stalled",
        },
        2: {"has_merge_conflict", "ratchet_dispatch_stalled"},
        3: set(),
    }[generation]
    assert extract.unknown_fields == unknown
    defaults = {
        "has_merge_conflict": False,
        "mode": "STANDARD",
        "auto_iteration_status": None,
        "ratchet_dispatch_outcome": None,
        "ratchet_dispatch_retry_count": 0,
        "ratchet_dispatch_stalled": False,
    }
    for name, value in defaults.items():
        if name in unknown or value is None:
            assert pd.isna(row[name]), name
        else:
            assert row[name] == value, name
    assert extract.generation == generation


# ---- extract ---------------------------------------------------------------------------------


def fill_basic(app: AppDb) -> None:
    app.add_project("p1")
    app.add_project("p2", default_branch="develop")
    app.add_project("p3", archived=True)
    workspace(
        app,
        "w1",
        "p1",
        name="First",
        worktreePath="/wt/w1",
        prUrl="https://example.invalid/pull/7",
        prNumber=7,
        prState="OPEN",
        prCiStatus="PENDING",
        prUpdatedAt=T0 + 5,
        ratchetEnabled=True,
        ratchetState="CI_RUNNING",  # gen 3 derives the same from OPEN + PENDING
        runScriptStatus="RUNNING",
        hasHadSessions=True,
    )
    workspace(app, "w2", "p1", status="NEW")
    workspace(app, "w3", "p2", status="FAILED", branchName=None)
    workspace(app, "w-archived", "p1", status="ARCHIVED")
    workspace(app, "w-in-archived-project", "p3")
    if app.generation > 1:  # the app has had ARCHIVING since gen 2: still live
        workspace(app, "w-archiving", "p2", status="ARCHIVING")
    # w1: agent and terminal sessions, the terminal one is the latest.
    app.add_agent_session("a1", "w1", created=T0, updated=T0 + 1_000, status="RUNNING")
    app.add_agent_session("a2", "w1", created=T0, updated=T0 + 2_000, provider="CODEX")
    app.add_terminal_session("t1", "w1", created=T0, updated=T0 + 9_000, status="RUNNING")
    # w3: only an agent session; archived workspaces' sessions must not show up.
    app.add_agent_session("a3", "w3", created=T0, updated=T0 + 3_000)
    app.add_agent_session("a-arch", "w-archived", updated=T0 + 4_000)
    app.add_terminal_session("t-arch", "w-in-archived-project")


def test_extract_shapes_workspaces_and_sessions(app_any_generation, generation):
    app = app_any_generation
    fill_basic(app)
    extract = extract_workspaces(reader(app))
    assert list(extract.workspaces.columns) == list(WORKSPACE_COLUMNS)
    assert list(extract.sessions.columns) == list(SESSION_COLUMNS)
    assert list(extract.problems.columns) == list(PROBLEM_COLUMNS)
    assert extract.problems.empty
    live = ["w1", "w2", "w3"] + (["w-archiving"] if generation > 1 else [])
    assert extract.workspaces["workspace_id"].tolist() == sorted(live)
    dtypes = extract.workspaces.dtypes
    for col in ("created_at", "pr_number", "pr_updated_at", "last_activity_at"):
        assert str(dtypes[col]) == "Int64", col
    for col in ("has_had_sessions", "ratchet_enabled", "has_merge_conflict"):
        assert str(dtypes[col]) == "boolean", col

    rows = by_id(extract.workspaces)
    w1 = rows["w1"]
    conflict = w1.pop("has_merge_conflict")
    assert conflict is False if generation == 3 else pd.isna(conflict)
    # Fields of later app versions: unknown in gen 1, the app's defaults where the DB has them.
    later = {
        f: w1.pop(f)
        for f in (
            "mode",
            "auto_iteration_status",
            "ratchet_dispatch_outcome",
            "ratchet_dispatch_retry_count",
            "ratchet_dispatch_stalled",
        )
    }
    if generation == 1:
        assert all(pd.isna(v) for v in later.values())
    else:
        assert later["mode"] == "STANDARD" and later["ratchet_dispatch_retry_count"] == 0
        assert pd.isna(later["auto_iteration_status"]) and pd.isna(
            later["ratchet_dispatch_outcome"]
        )
        stalled = later["ratchet_dispatch_stalled"]
        assert stalled is False if generation == 3 else pd.isna(stalled)
    assert w1 == {
        "workspace_id": "w1",
        "project_id": "p1",
        "project_slug": "slug-p1",
        "project_name": "Project p1",
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
        "ratchet_enabled": True,
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
    providers = dict(zip(sessions["session_id"], sessions["provider"], strict=True))
    if generation == 1:  # ClaudeSession has no provider
        assert all(pd.isna(p) for p in providers.values())
    else:
        assert (providers["a1"], providers["a2"]) == ("CLAUDE", "CODEX")
        assert pd.isna(providers["t1"])  # terminal sessions have none


def test_project_filter(app_any_generation):
    app = app_any_generation
    fill_basic(app)
    eng = reader(app)
    assert extract_workspaces(eng, ["p1"]).workspaces["workspace_id"].tolist() == ["w1", "w2"]
    assert "w3" in extract_workspaces(eng, ("p2", "p3")).workspaces["workspace_id"].tolist()
    only_p1 = extract_workspaces(eng, ["p1"]).sessions
    assert set(only_p1["session_id"]) == {"a1", "a2", "t1"}
    for ids in ([], ["no-such-project"]):
        empty = extract_workspaces(eng, ids)
        assert empty.workspaces.empty and empty.sessions.empty and empty.problems.empty
        assert list(empty.workspaces.columns) == list(WORKSPACE_COLUMNS)
        assert str(empty.workspaces["created_at"].dtype) == "Int64"
    assert extract_workspaces(eng, ["p1"]).live_projects == ("p1", "p2")


def test_extract_is_one_bound_statement(app_any_generation):
    app = app_any_generation
    fill_basic(app)
    eng = reader(app)
    with eng.connect():
        pass  # the first connect runs the dialect's own setup queries: not ours to count
    seen: list[tuple[str, object]] = []

    @sa.event.listens_for(eng, "before_cursor_execute")
    def _count(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    from reconcile_pipeline.core.generations import detect_generation

    generation = detect_generation(eng)
    for ids in (None, ["p1", "p2"], []):
        seen.clear()
        extract_workspaces(eng, ids, generation=generation)
        assert len(seen) == 1, seen
        statement, parameters = seen[0]
        assert "UNION ALL" in statement
        # values are bound, never formatted into the SQL
        assert "ARCHIVED" not in statement and "'p1'" not in statement
        if ids:
            flat = parameters.values() if isinstance(parameters, dict) else parameters
            assert {"p1", "p2"} <= set(flat)
    seen.clear()
    extract_workspaces(eng)  # detection is one more statement: the catalogue, read once
    assert len(seen) == 2


def test_reader_is_read_only(app_any_generation):
    app = app_any_generation
    fill_basic(app)
    eng = reader(app)
    with pytest.raises(sa.exc.DBAPIError, match="(?i)read.?only"), eng.begin() as conn:
        conn.execute(sa.text('DELETE FROM "Workspace"'))
    assert len(extract_workspaces(eng).workspaces) >= 3


def test_list_projects(app_any_generation, generation):
    app = app_any_generation
    fill_basic(app)
    projects = list_projects(reader(app))
    assert list(projects.columns) == [
        "project_id",
        "slug",
        "name",
        "is_archived",
        "default_branch",
        "workspaces",
    ]
    assert projects.to_dict("records") == [
        {
            "project_id": "p1",
            "slug": "slug-p1",
            "name": "Project p1",
            "is_archived": False,
            "default_branch": "main",
            "workspaces": 2,  # w1, w2; not the archived one
        },
        {
            "project_id": "p2",
            "slug": "slug-p2",
            "name": "Project p2",
            "is_archived": False,
            "default_branch": "develop",
            "workspaces": 2 if generation > 1 else 1,  # w3 (and the archiving one)
        },
        {
            "project_id": "p3",
            "slug": "slug-p3",
            "name": "Project p3",
            "is_archived": True,
            "default_branch": "main",
            "workspaces": 1,
        },
    ]


@pytest.mark.parametrize("generation", GENERATIONS, ids=lambda g: f"gen{g}")
def test_sqlite_datetime_encodings_agree(sqlite_url, generation):
    """Prisma epoch ms, SQL-default text and ISO-8601 text (Z, offsets, the app's +00:00) parse
    to the same ms, in the Workspace, side-table and session columns."""
    app = AppDb(sqlite_url, generation=generation)
    encodings = {
        "int-ms": T0,
        "numeric-text": str(T0),
        "sql-default-text": T0_TEXT,
        "iso-z": "2024-01-02T03:04:05.123Z",
        "iso-app": "2024-01-02T03:04:05.123+00:00",
        "iso-offset": "2024-01-02T05:04:05.123+02:00",
        "iso-negative-offset": "2024-01-01T22:04:05.123-05:00",
        "iso-micro": "2024-01-02T03:04:05.123999",
    }
    app.add_project("p")
    for n, (name, value) in enumerate(encodings.items()):
        workspace(app, name, "p", createdAt=value, prUpdatedAt=value, prState="OPEN")
        app.add_agent_session(f"a{n}", name, created=value, updated=value)
        app.add_terminal_session(f"t{n}", name, created=T0_TEXT, updated=T0_TEXT)
    with app.engine.connect() as conn:
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
    app.dispose()


@pytest.mark.parametrize("generation", GENERATIONS, ids=lambda g: f"gen{g}")
def test_booleans_stored_as_0_1_on_sqlite(sqlite_url, generation):
    app = AppDb(sqlite_url, generation=generation)
    app.add_project("p")
    workspace(app, "w0", "p", ratchetEnabled=False, hasHadSessions=False)
    workspace(app, "w1", "p", ratchetEnabled=True, hasHadSessions=True)
    table, column = (
        ("WorkspaceRatchet", "enabled") if generation == 3 else ("Workspace", "ratchetEnabled")
    )
    key = "workspaceId" if generation == 3 else "id"
    with app.engine.connect() as conn:
        stored = conn.execute(sa.text(f'SELECT "{column}" FROM "{table}" ORDER BY "{key}"'))
        assert [r[0] for r in stored] == [0, 1]
    rows = by_id(extract_workspaces(app_engine(sqlite_url)).workspaces)
    assert (rows["w0"]["ratchet_enabled"], rows["w0"]["has_had_sessions"]) == (False, False)
    assert (rows["w1"]["ratchet_enabled"], rows["w1"]["has_had_sessions"]) == (True, True)
    app.dispose()


# ---- bad input -------------------------------------------------------------------------------

# Where each logical field is stored, per generation: the problem reasons name it.
SOURCES = {
    "prState": {1: "Workspace.prState", 2: "Workspace.prState", 3: "WorkspacePR.state"},
    "ratchetEnabled": {1: "Workspace.ratchetEnabled", 3: "WorkspaceRatchet.enabled"},
}


def fill_broken(app: AppDb) -> None:
    """A good row plus one row per kind of breakage (what each dialect can store)."""
    app.add_project("p")
    app.add_project("p-archived-text")
    app.add_project("p-archived-odd")
    workspace(app, "w-ok", "p", prState="OPEN", prUrl="u", prNumber=3)
    app.add_agent_session("s-ok", "w-ok", updated=T0 + 10)
    workspace(app, "w-enum", "p", prState="WEIRD", prCiStatus="SUCCESS")
    workspace(app, "w-status-unknown", "p", status="ZOMBIE")
    workspace(app, "w-status-null", "p", status=None)
    workspace(app, "w-name-null", "p", name=None)
    workspace(app, "w-created-null", "p", createdAt=None)
    workspace(app, "w-bool-null", "p", ratchetEnabled=None)
    workspace(app, "w-negative", "p", prNumber=-5)
    workspace(app, "w-dup", "p", name="one")
    workspace(app, "w-dup", "p", name="two")
    workspace(app, "w-orphan", "no-such-project")
    workspace(app, "w-bad-session", "p")
    app.add_agent_session("s-good", "w-bad-session")
    app.add_terminal_session("s-null", "w-bad-session", updated=None)
    if not is_pg(app):  # SQLite's loose typing lets the app store these
        workspace(app, "w-created-garbage", "p", createdAt="yesterday")
        workspace(app, "w-pr-updated-garbage", "p", prUpdatedAt="2024-13-45 00:00:00")
        workspace(app, "w-huge", "p", prNumber="99999999999999999999")
        workspace(app, "w-pr-text", "p", prNumber="abc")
        workspace(app, "w-pr-fraction", "p", prNumber=2.5)
        workspace(app, "w-bool-text", "p", hasHadSessions="yes")
        workspace(app, "w-bool-two", "p", ratchetEnabled=2)
        workspace(app, "w-garbage-session", "p")
        app.add_terminal_session("s-garbage", "w-garbage-session", updated="soon")
        # isArchived written as text by another driver: 'true' is archived, 'maybe' is not.
        app.execute("UPDATE \"Project\" SET \"isArchived\" = 'true' WHERE id = 'p-archived-text'")
        app.execute("UPDATE \"Project\" SET \"isArchived\" = 'maybe' WHERE id = 'p-archived-odd'")
        workspace(app, "w-in-text-archived", "p-archived-text")
        workspace(app, "w-in-odd-archived", "p-archived-odd")


def test_bad_input_is_reported_not_raised(loose_app_any_generation, generation):
    loose_app = loose_app_any_generation
    fill_broken(loose_app)
    pg = is_pg(loose_app)
    extract = extract_workspaces(reader(loose_app))
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
    if generation == 3:
        # The derived ratchet state cannot be known when one of its inputs is unreadable.
        expected |= {
            (w, "ratchet_state")
            for w, f in set(expected)
            if f in ("pr_state", "ratchet_enabled", "pr_ci_status")
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

    # Reasons name the column (where this generation keeps it), the value and what was expected.
    reason = problems[("w-enum", "pr_state")]["reason"]
    assert f"{SOURCES['prState'][generation]} 'WEIRD'" in reason and "'CHANGES_REQUESTED'" in reason
    assert problems[("w-enum", "pr_state")]["value"] == "WEIRD"
    assert (
        problems[("w-status-null", "status")]["reason"]
        == "NULL in NOT NULL column Workspace.status"
    )
    enabled = SOURCES["ratchetEnabled"].get(generation, "Workspace.ratchetEnabled")
    assert problems[("w-bool-null", "ratchet_enabled")]["reason"] == (
        f"NULL in NOT NULL column {enabled}"
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


def test_gen3_side_rows_missing_or_broken(db_url):
    """gen 3: a missing side row is the app's defaults, never a problem; a present row's NULL in
    a NOT NULL column is a problem, not a default."""
    app = AppDb(db_url, generation=3, constraints=False)
    app.add_project("p")
    every = ("WorkspacePR", "WorkspaceRatchet", "WorkspaceRunScript")
    workspace(app, "w-none", "p", missing_side_rows=every)
    workspace(app, "w-null-state", "p", prState=None, runScriptStatus=None, hasMergeConflict=None)
    workspace(app, "w-conflict", "p", prUrl="u", prState="OPEN", prCiStatus="SUCCESS")
    app.update_workspace("w-conflict", hasMergeConflict=True)
    extract = extract_workspaces(reader(app))
    rows = by_id(extract.workspaces)
    none = rows["w-none"]
    assert (none["pr_state"], none["pr_ci_status"], none["run_script_status"]) == (
        "NONE",
        "UNKNOWN",
        "IDLE",
    )
    assert none["ratchet_enabled"] is True and none["has_merge_conflict"] is False
    assert pd.isna(none["pr_url"]) and pd.isna(none["pr_updated_at"])
    assert none["ratchet_state"] == "IDLE"
    problems = {(p["workspace_id"], p["field"]) for p in extract.problems.to_dict("records")}
    assert problems == {
        ("w-null-state", "pr_state"),
        ("w-null-state", "run_script_status"),
        ("w-null-state", "has_merge_conflict"),
        ("w-null-state", "ratchet_state"),
    }
    assert rows["w-conflict"]["has_merge_conflict"] is True
    assert rows["w-conflict"]["ratchet_state"] == "MERGE_CONFLICT"
    app.dispose()


# ---- engine ----------------------------------------------------------------------------------


def test_app_engine_errors_and_url_masking(tmp_path):
    with pytest.raises(FileNotFoundError, match="app DB not found"):
        app_engine(f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()  # read-only never creates an empty DB
    masked = safe_url("postgresql+psycopg2://app:s3cret@db.example:5432/app")
    assert "s3cret" not in masked and "***" in masked
    # odd characters in the path survive the read-only URI form
    odd = tmp_path / "dir with space #1"
    odd.mkdir()
    url = f"sqlite:///{odd / 'app.db'}"
    AppDb(url).dispose()
    assert extract_workspaces(app_engine(url)).workspaces.empty


def test_core_does_not_import_dagster_or_the_demo():
    code = (
        "import sys, pkgutil, importlib, reconcile_pipeline.core as core; "
        "[importlib.import_module(f'reconcile_pipeline.core.{m.name}') "
        "for m in pkgutil.iter_modules(core.__path__)]; "
        "bad = [m for m in sys.modules if m.split('.')[0] == 'dagster' "
        "or m.startswith('reconcile_pipeline.demo')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
