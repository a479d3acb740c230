"""Partition semantics and the guards of the asset chain, with real materializations: the whole
chain runs in process against real app DBs (SQLite files built with the app's schema) and real
pipeline DBs (SQLite, and PostgreSQL where cheap).

The test that ticks the real sensor uses a persistent instance (``instance_for_test``: SQLite
storage, as the embedded default); the others an in-memory ``DagsterInstance.ephemeral()``, which
runs the chain about twice as fast. Partition changes there are made as the sensor makes them.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from reconcile_pipeline.defs.reconciliation.sensor import reconciliation_sensor
from reconcile_pipeline.defs.resources import AppDatabase, PipelineDatabase, ReconcilePolicy
from reconcile_pipeline.demo.app_schema import SIDE_TABLES
from reconcile_pipeline_tests.support.app_db import AppDb
from reconcile_pipeline_tests.support.runs import (
    EXTRACT_STEP,
    add_partitions,
    apply_sensor_result,
    check_evaluation,
    delete_partitions,
    partitions,
    poll_start_ms,
    reconcile,
    resources,
    run_summary,
    table_ids,
    table_text,
)


@pytest.fixture
def instance():
    """In-memory instance: dynamic partitions, runs and events work as on a persistent one."""
    inst = dg.DagsterInstance.ephemeral()
    yield inst
    inst.dispose()


@pytest.fixture
def persistent_instance():
    """A persistent instance: what build_sensor_context requires to tick the sensor."""
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def app(tmp_path) -> AppDb:
    db = AppDb(f"sqlite:///{tmp_path / 'app.db'}")
    yield db
    db.dispose()


def store_of(url: str):
    return PipelineDatabase(url=url).store()


def table(url: str) -> pd.DataFrame:
    return store_of(url).read_frame()


def sensor_tick(instance: dg.DagsterInstance, app_url: str) -> dict[str, str]:
    """One sensor tick applied to the instance (partition sync); returns its run's tags."""
    result = reconciliation_sensor(
        dg.build_sensor_context(instance=instance, resources={"app_db": AppDatabase(url=app_url)})
    )
    assert isinstance(result, dg.SensorResult) and len(result.run_requests) == 1, result
    apply_sensor_result(instance, result)
    return dict(result.run_requests[0].tags)


def run_count(url: str) -> int:
    engine = store_of(url).engine
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT count(*) FROM reconcile_run")).scalar_one()


def names(url: str) -> dict[str, str]:
    frame = table(url)
    return dict(zip(frame["workspace_id"], frame["name"], strict=True))


def materialized_partitions(result: dg.ExecuteInProcessResult, asset: str) -> set[str]:
    return {
        e.partition
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(asset)
    }


# ---- partition semantics ---------------------------------------------------------------------


def test_backfill_of_some_projects_only_touches_their_snapshots(instance, app, tmp_path, db_url):
    for project, n in (("pa", 3), ("pb", 3), ("pc", 2)):
        app.add_project_with_workspaces(project, n)
    add_partitions(instance, ["pa", "pb", "pc"])
    res = resources(app.url, db_url)
    first = reconcile(instance, res)
    assert run_summary(first)["rows_inserted"] == 8
    assert materialized_partitions(first, "workspace_snapshot") == {"pa", "pb", "pc"}

    # The app moves on in every project; pc even disappears from the app DB.
    for project in ("pa", "pb"):
        app.update_workspace(f"{project}-w0", name=f"{project} renamed")
        app.update_workspace(f"{project}-w1", status="ARCHIVED")
    app.delete_project("pc")
    before = table(db_url).set_index("workspace_id")

    # One partition.
    result = reconcile(instance, res, partition_key="pa")
    assert materialized_partitions(result, "workspace_snapshot") == {"pa"}
    assert run_summary(result)["workspaces"] == 2
    after = table(db_url).set_index("workspace_id")
    assert after.loc["pa-w0", "name"] == "pa renamed"
    assert "pa-w1" not in after.index
    assert check_evaluation(result, "no_stale_entries").passed
    # Other projects: exactly as before, byte for byte (versions too).
    untouched = before[before["project_id"] != "pa"]
    pd.testing.assert_frame_equal(after[after["project_id"] != "pa"], untouched)
    # The drift of pa-w0's rename was recorded against the stored row of pa only.
    assert run_summary(result)["compared_workspaces"] == 2

    # A range of partitions (pb...pc), as a backfill from the UI/CLI runs it.
    result = reconcile(instance, res, keys=["pb", "pc"])
    assert materialized_partitions(result, "workspace_snapshot") == {"pb", "pc"}
    after = table(db_url).set_index("workspace_id")
    assert after.loc["pb-w0", "name"] == "pb renamed"
    assert "pb-w1" not in after.index
    # pc is gone from the app DB; its 2 rows are removed only because pc was covered.
    assert not (after["project_id"] == "pc").any()
    assert sorted(after.index) == ["pa-w0", "pa-w2", "pb-w0", "pb-w2"]


def test_subset_run_leaves_rows_of_uncovered_deleted_projects_alone(instance, app, tmp_path):
    for project in ("pa", "pb"):
        app.add_project_with_workspaces(project, 2)
    add_partitions(instance, ["pa", "pb"])
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    res = resources(app.url, url)
    reconcile(instance, res)
    app.delete_project("pb")  # the sensor has not synced yet: pb's partition still exists

    result = reconcile(instance, res, partition_key="pa")
    assert check_evaluation(result, "no_stale_entries").passed
    assert table_ids(url) == {"pa-w0", "pa-w1", "pb-w0", "pb-w1"}


def test_full_run_removes_rows_of_a_project_deleted_from_the_app_db(
    persistent_instance, app, tmp_path
):
    instance = persistent_instance  # the sensor ticks: persistent storage
    for project in ("pa", "pb", "pc"):
        app.add_project_with_workspaces(project, 3)
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    res = resources(app.url, url)
    reconcile(instance, res, tags=sensor_tick(instance, app.url))
    assert len(table_ids(url)) == 9

    app.delete_project("pb")
    tags = sensor_tick(instance, app.url)  # deletes pb's partition, asks for pa...pc
    assert partitions(instance) == ["pa", "pc"]
    result = reconcile(instance, res, tags=tags)
    assert materialized_partitions(result, "workspace_snapshot") == {"pa", "pc"}
    assert table_ids(url) == {f"{p}-w{i}" for p in ("pa", "pc") for i in range(3)}
    stale = check_evaluation(result, "no_stale_entries")
    assert stale.passed
    assert stale.metadata["removed"].value == 3
    assert run_summary(result)["stale_removed"] == 3


def test_archived_workspaces_and_projects_are_removed(instance, app, tmp_path, sqlite_url):
    for project in ("pa", "pb"):
        app.add_project_with_workspaces(project, 4)
    add_partitions(instance, ["pa", "pb"])
    res = resources(app.url, sqlite_url)
    reconcile(instance, res)
    assert len(table_ids(sqlite_url)) == 8

    app.update_workspace("pa-w1", status="ARCHIVED")
    app.archive_project("pb")
    delete_partitions(instance, ["pb"])  # as the sensor's next tick does for an archived project
    result = reconcile(instance, res)
    assert table_ids(sqlite_url) == {"pa-w0", "pa-w2", "pa-w3"}
    assert check_evaluation(result, "no_stale_entries").passed
    assert check_evaluation(result, "table_matches_authoritative").passed


def test_a_new_project_is_reconciled_once_its_partition_exists(instance, app, tmp_path):
    app.add_project_with_workspaces("pa", 2)
    add_partitions(instance, ["pa"])
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    res = resources(app.url, url)
    reconcile(instance, res)

    app.add_project_with_workspaces("pn", 3)
    reconcile(instance, res)  # over the current partitions: pn is not one yet
    assert table_ids(url) == {"pa-w0", "pa-w1"}

    add_partitions(instance, ["pn"])  # as the sensor's next tick does
    result = reconcile(instance, res)
    assert materialized_partitions(result, "workspace_snapshot") == {"pa", "pn"}
    assert table_ids(url) == {"pa-w0", "pa-w1", "pn-w0", "pn-w1", "pn-w2"}
    snapshot = run_summary(result)
    assert (snapshot["rows_inserted"], snapshot["rows_unchanged"]) == (3, 2)
    assert names(url)["pn-w2"] == "Workspace pn-w2"
    assert check_evaluation(result, "table_matches_authoritative").passed


def test_full_run_keeps_rows_of_a_live_project_that_has_no_partition_yet(instance, app, tmp_path):
    """A project created after the sensor's last tick is live in the app DB, and the app's
    event-driven writers already keep snapshots for its workspaces. The run that tick requested
    (over every partition that existed then) must not take those rows for stale: the project is
    not gone, it is just not a partition yet (the contract: remove entries of workspaces that no
    longer exist)."""
    app.add_project_with_workspaces("pa", 2)
    add_partitions(instance, ["pa"])
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    res = resources(app.url, url)
    reconcile(instance, res)

    # After the tick, before its run: a new project, and the app writes its workspace's row.
    app.add_project_with_workspaces("pn", 1)
    store_of(url).upsert(
        "pn-w0",
        {"project_id": "pn", "name": "Workspace pn-w0", "status": "READY", "is_working": True},
        source="event",
    )
    result = reconcile(instance, res, keys=["pa"])
    assert "pn-w0" in table_ids(url), "the event-written snapshot of a live workspace was deleted"
    assert store_of(url).get("pn-w0")["is_working"] is True
    assert check_evaluation(result, "no_stale_entries").passed


# ---- guards ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "scope", "emptied"),
    [
        ("sqlite", "all", "workspaces"),
        ("sqlite", "one_project", "projects"),
        ("postgresql", "all", "projects"),
    ],
)
def test_empty_extract_never_mass_deletes(
    instance, app, tmp_path, request, backend, scope, emptied
):
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
    before = table(db_url)
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
    pd.testing.assert_frame_equal(table(db_url), before)


def test_small_project_may_shrink_to_nothing_within_the_guard(instance, app, tmp_path):
    """The guard's floor (min_prune_guard): a project of 5 workspaces may lose them all."""
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
    instance, app, tmp_path, sqlite_url, failure
):
    """A missing database waits out workspace_extract's retry policy (2 s + 4 s of backoff):
    ``materialize`` always runs with retries enabled."""
    app.add_project_with_workspaces("pa", 4)
    add_partitions(instance, ["pa"])
    reconcile(instance, resources(app.url, sqlite_url))
    before, runs_before = table(sqlite_url), run_count(sqlite_url)

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
    pd.testing.assert_frame_equal(table(sqlite_url), before)
    assert run_count(sqlite_url) == runs_before  # no drift summary for a run that saw nothing


def test_event_write_newer_than_poll_start_survives_and_is_reported(
    instance, app, tmp_path, db_url
):
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


def test_bad_app_db_cells_are_reported_and_the_rest_reconciles(instance, tmp_path):
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
