"""The guards of the asset chain, with real in-process materializations against real app DBs
(SQLite files built with the app's schema) and real pipeline DBs (SQLite, and PostgreSQL where
cheap): an empty extract never mass-deletes (the prune guard), a failed extract fails the run and
leaves the table, a fresher event write survives the run, and bad app DB cells are reported while
the rest reconciles.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from reconcile_pipeline.defs.resources import ReconcilePolicy
from reconcile_pipeline.demo.app_schema import SIDE_TABLES
from reconcile_pipeline_tests.support.app_db import AppDb
from reconcile_pipeline_tests.support.runs import (
    EXTRACT_STEP,
    add_partitions,
    check_evaluation,
    poll_start_ms,
    reconcile,
    resources,
    run_summary,
    store_of,
    table_frame,
    table_ids,
    table_text,
)


def run_count(url: str) -> int:
    engine = store_of(url).engine
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM reconcile_run")).scalar_one()


@pytest.mark.parametrize(
    ("backend", "scope", "emptied"),
    [
        ("sqlite", "all", "workspaces"),
        ("sqlite", "one_project", "projects"),
        ("postgresql", "all", "projects"),
    ],
)
def test_empty_extract_never_mass_deletes(
    memory_instance, app, tmp_path, request, backend, scope, emptied
):
    instance = memory_instance
    db_url = (
        f"sqlite:///{tmp_path / 'pipeline.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    for project in ("pa", "pb"):
        app.add_project_with_workspaces(project, 6)
    add_partitions(instance, ["pa", "pb"])
    res = resources(app.url, db_url)
    reconcile(instance, res)
    before = table_frame(db_url)
    assert len(before) == 12

    # The app DB comes back empty (restore in progress, wrong database, ...), before the
    # sensor had a chance to sync the partitions.
    app.delete_all_workspaces()
    if emptied == "projects":
        app.execute('DELETE FROM "Project"')
    result = reconcile(instance, res, partition_key="pa" if scope == "one_project" else None)

    assert result.success  # a check fails, the run does not
    assert run_summary(result)["workspaces"] == 0
    stale = check_evaluation(result, "no_stale_entries")
    assert not stale.passed
    assert stale.severity == dg.AssetCheckSeverity.ERROR
    assert "prune guard" in stale.description
    assert "nothing was removed" in stale.description
    assert stale.metadata["prune_blocked"].value is True
    assert stale.metadata["removed"].value == 0
    assert stale.metadata["stale_found"].value == (12 if scope == "all" else 6)
    pd.testing.assert_frame_equal(table_frame(db_url), before)


def test_small_project_may_shrink_to_nothing_within_the_guard(memory_instance, app, tmp_path):
    """The guard's floor (min_prune_guard): a project of 5 workspaces may lose them all."""
    instance = memory_instance
    app.add_project_with_workspaces("pa", 5)
    app.add_project_with_workspaces("pb", 5)
    add_partitions(instance, ["pa", "pb"])
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    res = resources(app.url, url)
    reconcile(instance, res)
    for i in range(5):
        app.update_workspace(f"pa-w{i}", status="ARCHIVED")
    result = reconcile(instance, res)
    assert check_evaluation(result, "no_stale_entries").passed
    assert table_ids(url) == {f"pb-w{i}" for i in range(5)}

    # One more than the guard allows, under a stricter policy: blocked.
    strict = resources(
        app.url,
        url,
        policy=ReconcilePolicy(max_prune_fraction=0.5, min_prune_guard=2),
    )
    for i in range(3):
        app.update_workspace(f"pb-w{i}", status="ARCHIVED")
    result = reconcile(instance, strict)
    assert not check_evaluation(result, "no_stale_entries").passed
    assert len(table_ids(url)) == 5


@pytest.mark.parametrize(
    "failure",
    [
        "missing_file",
        "removed_after_a_run",
        pytest.param("tables_dropped", marks=pytest.mark.slow),
    ],
)
def test_failed_extract_fails_the_run_and_leaves_the_table(
    memory_instance, app, tmp_path, sqlite_url, failure
):
    """A missing database waits out workspace_extract's retry policy (2 s + 4 s of backoff):
    ``materialize`` always runs with retries enabled."""
    instance = memory_instance
    app.add_project_with_workspaces("pa", 4)
    add_partitions(instance, ["pa"])
    reconcile(instance, resources(app.url, sqlite_url))
    before, runs_before = table_frame(sqlite_url), run_count(sqlite_url)

    app_url = app.url
    if failure == "missing_file":
        app_url = f"sqlite:///{tmp_path / 'no-such-app.db'}"
    elif failure == "removed_after_a_run":
        app.dispose()
        (tmp_path / "app.db").unlink()
    else:
        # Not the app any more (a permanent error: it fails at once, without retries).
        for child in (app.agent_sessions, "TerminalSession", *SIDE_TABLES, "Workspace"):
            app.execute(f'DROP TABLE "{child}"')
    result = reconcile(instance, resources(app_url, sqlite_url), raise_on_error=False)

    assert not result.success
    failed = [
        e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    assert failed == [EXTRACT_STEP]
    assert not result.get_asset_materialization_events()
    pd.testing.assert_frame_equal(table_frame(sqlite_url), before)
    assert run_count(sqlite_url) == runs_before  # no drift summary for a run that saw nothing


def test_event_write_newer_than_poll_start_survives_and_is_reported(
    memory_instance, app, tmp_path, db_url
):
    instance = memory_instance
    app.add_project_with_workspaces("pa", 3)
    add_partitions(instance, ["pa"])
    res = resources(app.url, db_url)
    reconcile(instance, res)

    store = store_of(db_url)
    during_run = store.now_ms() + 60_000  # later than the next run's poll start
    store.upsert("pa-w0", {"name": "renamed by the app"}, source="event", ts=during_run)
    # A workspace created while the run goes: not in the extract, not stale either.
    store.upsert("pa-new", {"project_id": "pa", "name": "brand new"}, source="event", ts=during_run)
    app.update_workspace("pa-w1", branchName="moved")  # an ordinary change the run applies

    result = reconcile(instance, res)
    assert poll_start_ms(run_summary(result)) < during_run
    row = store.get("pa-w0")
    assert (row["name"], row["ts_workspace"], row["source"]) == (
        "renamed by the app",
        during_run,
        "event",
    )
    assert store.get("pa-w1")["branch_name"] == "moved"
    assert store.get("pa-new")["name"] == "brand new"

    converged = check_evaluation(result, "table_matches_authoritative")
    assert converged.passed
    assert converged.metadata["events_won"].value == 1
    assert converged.metadata["mismatches"].value == 0
    sample = table_text(converged.metadata["events_won_sample"])
    assert "pa-w0" in sample and "renamed by the app" in sample
    assert check_evaluation(result, "no_stale_entries").passed
    snapshot = run_summary(result)
    assert snapshot["groups_kept_fresher_event"] == 1
    assert snapshot["stale_removed"] == 0


def test_bad_app_db_cells_are_reported_and_the_rest_reconciles(memory_instance, tmp_path):
    instance = memory_instance
    app = AppDb(f"sqlite:///{tmp_path / 'app.db'}", constraints=False)
    app.add_project_with_workspaces("pa", 4)
    add_partitions(instance, ["pa"])
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    res = resources(app.url, url)
    reconcile(instance, res)
    assert store_of(url).get("pa-w0")["status"] == "READY"

    app.update_workspace("pa-w0", status="HIBERNATING")  # an enum value this pipeline lacks
    app.update_workspace("pa-w1", name=None)  # NULL in a NOT NULL column
    app.update_workspace("pa-w3", name="renamed")
    app.add_workspace("pa-w9", "pa", prState="SUPERSEDED", name="new with odd PR state")

    result = reconcile(instance, res)
    assert result.success
    extract = run_summary(result)
    assert extract["workspaces"] == 5
    # pa-w9's ratchet state, derived from its unreadable PR state (gen 3), is unknown too.
    assert extract["problem_cells"] == 4
    problems = table_text(extract["problems"])
    for text in ("pa-w0", "HIBERNATING", "pa-w1", "NULL", "pa-w9", "SUPERSEDED"):
        assert text in problems, text

    store = store_of(url)
    # Unknown cells are never written: the stored values stay, a new row keeps the defaults.
    assert store.get("pa-w0")["status"] == "READY"
    assert store.get("pa-w1")["name"] == "Workspace pa-w1"
    assert store.get("pa-w9")["pr_state"] == "NONE"
    assert store.get("pa-w9")["ratchet_state"] == "IDLE"
    assert store.get("pa-w9")["name"] == "new with odd PR state"
    # The other cells and rows reconcile.
    assert store.get("pa-w3")["name"] == "renamed"
    assert table_ids(url) == {"pa-w0", "pa-w1", "pa-w2", "pa-w3", "pa-w9"}
    assert check_evaluation(result, "table_matches_authoritative").passed
    assert check_evaluation(result, "no_stale_entries").passed
    drift = run_summary(result)
    assert drift["drift_records"] == 1  # pa-w3's name; unknown cells never drift
    app.dispose()
