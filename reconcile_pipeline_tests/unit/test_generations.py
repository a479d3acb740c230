"""Which schema generation an app DB is in, and a clear permanent error when it is in none."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from reconcile_pipeline.core.db import app_engine
from reconcile_pipeline.core.extract import extract_workspaces
from reconcile_pipeline.core.generations import (
    GENERATIONS,
    UnknownSchemaError,
    detect_generation,
    match_generation,
    ratchet_state,
    read_catalogue,
)
from reconcile_pipeline_tests.support.app_db import AppDb
from reconcile_pipeline_tests.support.databases import make_engine


@pytest.mark.parametrize("generation", (1, 2, 3))
def test_each_generation_is_detected(db_url, generation):
    app = AppDb(db_url, generation=generation)
    assert detect_generation(app_engine(db_url)).number == generation
    app.dispose()


def test_detection_reads_the_catalogue_in_one_statement(sqlite_url):
    AppDb(sqlite_url).dispose()
    engine = app_engine(sqlite_url)
    with engine.connect() as conn:
        seen: list[str] = []
        sa.event.listen(conn, "before_cursor_execute", lambda *a: seen.append(a[2]))
        catalogue = read_catalogue(conn)
    assert len(seen) == 1
    assert {"hasMergeConflict", "syncedAt", "reviewState"} <= catalogue["WorkspacePR"]


def test_newest_generation_wins_during_the_session_cutover(sqlite_url):
    """A gen 2 DB that still has the old ClaudeSession table (mid-migration) reads as gen 2."""
    app = AppDb(sqlite_url, generation=2)
    app.execute(
        'CREATE TABLE "ClaudeSession" ("id" TEXT, "workspaceId" TEXT, "status" TEXT, '
        '"createdAt" DATETIME, "updatedAt" DATETIME)'
    )
    assert detect_generation(app_engine(sqlite_url)).number == 2
    app.dispose()


def unknown(db_url: str) -> str:
    with pytest.raises(UnknownSchemaError) as caught:
        detect_generation(app_engine(db_url))
    return str(caught.value)


def test_an_empty_database_is_not_the_app(db_url):
    make_engine(db_url).dispose()
    if db_url.startswith("sqlite"):
        make_engine(db_url).connect().close()  # creates the empty file
    message = unknown(db_url)
    assert "has no Project or Workspace table" in message
    assert "not the app's database" in message


def test_a_half_migrated_gen3_names_the_missing_column(db_url):
    """The app between its split of the PR table and the derived ratchet state (one day of
    2026-07-26): WorkspacePR without hasMergeConflict. Nothing to guess: say what is missing."""
    app = AppDb(db_url, generation=3)
    app.execute('ALTER TABLE "WorkspacePR" DROP COLUMN "hasMergeConflict"')
    message = unknown(db_url)
    assert "matches no known schema generation" in message
    assert "Closest is gen 3" in message
    assert "column WorkspacePR.hasMergeConflict" in message
    assert "gen 2 lacks" in message and "gen 1 lacks" in message
    assert "table ClaudeSession" in message  # what gen 1 would need
    app.dispose()


def test_an_app_older_than_gen1_names_what_it_lacks(db_url):
    """Before 2026-02-04 the app had no ratchet columns: not a generation we read."""
    app = AppDb(db_url, generation=1)
    app.execute('ALTER TABLE "Workspace" DROP COLUMN "ratchetEnabled"')
    message = unknown(db_url)
    assert "Closest is gen 1" in message and "column Workspace.ratchetEnabled" in message
    app.dispose()


def test_the_extract_raises_the_same_permanent_error(sqlite_url):
    app = AppDb(sqlite_url, generation=2)
    app.execute('DROP TABLE "AgentSession"')
    with pytest.raises(UnknownSchemaError, match="table AgentSession"):
        extract_workspaces(app_engine(sqlite_url))
    app.dispose()


def test_requirements_are_what_each_generation_reads():
    by = {g.number: g for g in GENERATIONS}
    assert "ClaudeSession" in by[1].requires and "AgentSession" not in by[1].requires
    assert "provider" in by[2].requires["AgentSession"]
    assert {"prUrl", "ratchetState", "runScriptStatus"} <= set(by[2].requires["Workspace"])
    assert "prUrl" not in by[3].requires["Workspace"]
    assert set(by[3].requires["WorkspacePR"]) >= {
        "workspaceId",
        "url",
        "number",
        "state",
        "ciStatus",
        "syncedAt",
        "reviewState",
        "hasMergeConflict",
    }
    assert by[3].requires["WorkspaceRatchet"] == ("workspaceId", "enabled")
    assert by[3].requires["WorkspaceRunScript"] == ("workspaceId", "status")
    # A catalogue with everything matches the newest.
    everything = {t: frozenset(c) for g in GENERATIONS for t, c in g.requires.items()}
    assert match_generation(everything).number == 3


# The current app's rule (src/shared/core/ratchet-state.ts), written out as cases:
# (enabled, prState, prCiStatus, hasMergeConflict, reviewState) -> ratchetState.
RATCHET_CASES = [
    ((False, "OPEN", "FAILURE", True, "CHANGES_REQUESTED"), "IDLE"),  # disabled first
    ((True, "MERGED", "FAILURE", True, None), "MERGED"),
    ((True, "CLOSED", "FAILURE", False, None), "IDLE"),
    ((True, "NONE", "PENDING", False, None), "IDLE"),
    ((True, "OPEN", "FAILURE", True, None), "CI_FAILED"),  # failing build outranks conflict
    ((True, "DRAFT", "SUCCESS", True, None), "MERGE_CONFLICT"),
    ((True, "APPROVED", "PENDING", True, None), "MERGE_CONFLICT"),  # conflict outranks pending
    ((True, "OPEN", "PENDING", False, "CHANGES_REQUESTED"), "CI_RUNNING"),
    ((True, "OPEN", "UNKNOWN", False, None), "CI_RUNNING"),
    ((True, "DRAFT", "SUCCESS", False, "CHANGES_REQUESTED"), "REVIEW_PENDING"),
    ((True, "CHANGES_REQUESTED", "SUCCESS", False, "APPROVED"), "READY"),
    ((True, "OPEN", "SUCCESS", False, None), "READY"),
]


@pytest.mark.parametrize(("inputs", "expected"), RATCHET_CASES)
def test_gen3_ratchet_state_follows_the_apps_rule(inputs, expected):
    enabled, pr_state, ci, conflict, review = inputs
    assert (
        ratchet_state(
            enabled=enabled,
            pr_state=pr_state,
            pr_ci_status=ci,
            has_merge_conflict=conflict,
            review_state=review,
        )
        == expected
    )


def test_gen3_extract_derives_the_ratchet_state_per_row(sqlite_url):
    app = AppDb(sqlite_url, generation=3)
    app.add_project("p")
    for n, ((enabled, pr_state, ci, conflict, review), _) in enumerate(RATCHET_CASES):
        app.add_workspace(
            f"w{n:02d}",
            "p",
            ratchetEnabled=enabled,
            prState=pr_state,
            prCiStatus=ci,
            hasMergeConflict=conflict,
            prReviewState=review,
            prUrl="https://example.invalid/pull/1",
        )
    extract = extract_workspaces(app_engine(sqlite_url))
    assert extract.problems.empty
    assert extract.workspaces["ratchet_state"].tolist() == [e for _, e in RATCHET_CASES]
    app.dispose()
