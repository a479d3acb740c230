"""Partition semantics of the asset chain, with real materializations: the whole chain runs in
process against real app DBs (SQLite files built with the app's schema) and real pipeline DBs
(SQLite, and PostgreSQL where cheap). A backfill of some projects touches only their snapshots;
projects deleted, archived, created or not yet a partition are handled as the contract says.

The test that ticks the real sensor uses a persistent instance (``instance``: SQLite storage, as
the embedded default); the others an in-memory one (``memory_instance``), which runs the chain
about twice as fast. Partition changes there are made as the sensor makes them. The guards are
``test_guards.py``.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd

from reconcile_pipeline.defs.reconciliation.sensor import reconciliation_sensor
from reconcile_pipeline.defs.resources import AppDatabase
from reconcile_pipeline_tests.support.runs import (
    add_partitions,
    apply_sensor_result,
    check_evaluation,
    delete_partitions,
    partitions,
    reconcile,
    resources,
    run_summary,
    store_of,
    table_frame,
    table_ids,
)


def sensor_tick(instance: dg.DagsterInstance, app_url: str) -> dict[str, str]:
    """One sensor tick applied to the instance (partition sync); returns its run's tags."""
    result = reconciliation_sensor(
        dg.build_sensor_context(instance=instance, resources={"app_db": AppDatabase(url=app_url)})
    )
    assert isinstance(result, dg.SensorResult) and len(result.run_requests) == 1, result
    apply_sensor_result(instance, result)
    return dict(result.run_requests[0].tags)


def names(url: str) -> dict[str, str]:
    frame = table_frame(url)
    return dict(zip(frame["workspace_id"], frame["name"], strict=True))


def materialized_partitions(result: dg.ExecuteInProcessResult, asset: str) -> set[str]:
    return {
        e.partition
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(asset)
    }


# ---- partition semantics ---------------------------------------------------------------------


def test_backfill_of_some_projects_only_touches_their_snapshots(
    memory_instance, app, tmp_path, db_url
):
    instance = memory_instance
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
    before = table_frame(db_url).set_index("workspace_id")

    # One partition.
    result = reconcile(instance, res, partition_key="pa")
    assert materialized_partitions(result, "workspace_snapshot") == {"pa"}
    assert run_summary(result)["workspaces"] == 2
    after = table_frame(db_url).set_index("workspace_id")
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
    after = table_frame(db_url).set_index("workspace_id")
    assert after.loc["pb-w0", "name"] == "pb renamed"
    assert "pb-w1" not in after.index
    # pc is gone from the app DB; its 2 rows are removed only because pc was covered.
    assert not (after["project_id"] == "pc").any()
    assert sorted(after.index) == ["pa-w0", "pa-w2", "pb-w0", "pb-w2"]


def test_subset_run_leaves_rows_of_uncovered_deleted_projects_alone(memory_instance, app, tmp_path):
    instance = memory_instance
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


def test_full_run_removes_rows_of_a_project_deleted_from_the_app_db(instance, app, tmp_path):
    # the sensor ticks: persistent storage
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


def test_archived_workspaces_and_projects_are_removed(memory_instance, app, tmp_path, sqlite_url):
    instance = memory_instance
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


def test_a_new_project_is_reconciled_once_its_partition_exists(memory_instance, app, tmp_path):
    instance = memory_instance
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


def test_full_run_keeps_rows_of_a_live_project_that_has_no_partition_yet(
    memory_instance, app, tmp_path
):
    """A project created after the sensor's last tick is live in the app DB, and the app's
    event-driven writers already keep snapshots for its workspaces. The run that tick requested
    (over every partition that existed then) must not take those rows for stale: the project is
    not gone, it is just not a partition yet (the contract: remove entries of workspaces that no
    longer exist)."""
    instance = memory_instance
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
