"""The 60 s reconciliation sensor, evaluated against a real persistent Dagster instance and real
app DBs (SQLite files, PostgreSQL where cheap). Each tick's dynamic partition requests are applied
to the instance the way the sensor daemon applies them, so consecutive ticks see real state."""

from __future__ import annotations

import os
import random

import dagster as dg
import pytest

from reconcile_pipeline.defs.reconciliation.job import RUN_TAG, reconcile_job
from reconcile_pipeline.defs.reconciliation.partitions import range_tags
from reconcile_pipeline.defs.reconciliation.sensor import reconciliation_sensor
from reconcile_pipeline.defs.resources import AppDatabase, SessionRuntime
from reconcile_pipeline.demo.build import build_demo_app, demo_session_runtime
from reconcile_pipeline_tests.support.app_db import AppDb
from reconcile_pipeline_tests.support.runs import (
    CHAIN_KEYS,
    RANGE_END,
    RANGE_START,
    add_partitions,
    apply_sensor_result,
    check_evaluation,
    create_run,
    job_defs,
    keys_in_range,
    partitions,
    reconcile,
    resources,
    run_summary,
    table_ids,
)


def tick(instance: dg.DagsterInstance, app_url: str):
    context = dg.build_sensor_context(
        instance=instance, resources={"app_db": AppDatabase(url=app_url)}
    )
    return reconciliation_sensor(context)


def tick_and_apply(instance: dg.DagsterInstance, app_url: str) -> dg.SensorResult:
    result = tick(instance, app_url)
    assert isinstance(result, dg.SensorResult), result
    apply_sensor_result(instance, result)
    return result


def requested_partitions(result: dg.SensorResult) -> tuple[list[str], list[str]]:
    """(added, deleted) partition keys of one tick."""
    added, deleted = [], []
    for request in result.dynamic_partitions_requests or []:
        target = added if isinstance(request, dg.AddDynamicPartitionsRequest) else deleted
        target.extend(request.partition_keys)
    return added, deleted


def only_run_request(result: dg.SensorResult) -> dg.RunRequest:
    assert result.skip_reason is None
    assert len(result.run_requests) == 1, result.run_requests
    return result.run_requests[0]


def covered(instance: dg.DagsterInstance, request: dg.RunRequest) -> list[str]:
    """The partitions one requested run covers, resolved by Dagster on the instance."""
    assert request.partition_key is None
    return keys_in_range(instance, request.tags[RANGE_START], request.tags[RANGE_END])


def test_sensor_definition():
    assert reconciliation_sensor.minimum_interval_seconds == 60
    assert reconciliation_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert reconciliation_sensor.job_name == reconcile_job.name == "reconcile_job"
    assert reconciliation_sensor.required_resource_keys == {"app_db"}
    # The job it launches carries the tag the run queue limits to one run at a time.
    assert RUN_TAG.items() <= job_defs().resolve_job_def("reconcile_job").tags.items()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_first_tick_adds_live_projects_and_requests_one_run_over_all(
    backend, instance, tmp_path, request
):
    """Archived projects get no partition; the one run request covers exactly the live ones."""
    url = (
        f"sqlite:///{tmp_path / 'app.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    app = AppDb(url)
    for project in ("p-b", "p-a", "p-c"):
        app.add_project_with_workspaces(project, 1)
    app.add_project("p-archived", archived=True)
    app.add_workspace("p-archived-w0", "p-archived")

    result = tick(instance, app.url)
    assert isinstance(result, dg.SensorResult)
    assert requested_partitions(result) == (["p-a", "p-b", "p-c"], [])
    assert partitions(instance) == []  # nothing happens until the daemon applies the tick
    run = only_run_request(result)
    assert run.tags == range_tags(["p-a", "p-c"])
    assert run.job_name in (None, reconcile_job.name)

    apply_sensor_result(instance, result)
    assert partitions(instance) == ["p-a", "p-b", "p-c"]
    assert covered(instance, run) == ["p-a", "p-b", "p-c"]

    # Nothing changed: no partition requests, the same single run over everything.
    again = tick_and_apply(instance, app.url)
    assert requested_partitions(again) == ([], [])
    assert covered(instance, only_run_request(again)) == ["p-a", "p-b", "p-c"]
    app.dispose()


def test_projects_added_deleted_and_archived_are_synced_next_tick(instance, app):
    for project in ("p1", "p2", "p3", "p4"):
        app.add_project_with_workspaces(project, 1)
    tick_and_apply(instance, app.url)
    assert partitions(instance) == ["p1", "p2", "p3", "p4"]

    app.delete_project("p1")  # first key of the old range
    app.archive_project("p4")  # last key of the old range
    app.add_project_with_workspaces("p0", 1)  # sorts before every existing key
    app.add_project_with_workspaces("p9", 1)

    result = tick_and_apply(instance, app.url)
    assert requested_partitions(result) == (["p0", "p9"], ["p1", "p4"])
    assert sorted(partitions(instance)) == ["p0", "p2", "p3", "p9"]
    assert sorted(covered(instance, only_run_request(result))) == ["p0", "p2", "p3", "p9"]

    app.archive_project("p4", archived=False)  # unarchived: back in
    result = tick_and_apply(instance, app.url)
    assert requested_partitions(result) == (["p4"], [])
    assert sorted(covered(instance, only_run_request(result))) == ["p0", "p2", "p3", "p4", "p9"]


def test_random_project_churn_always_yields_a_range_over_exactly_the_live_projects(instance, app):
    """Whatever the order in which Dagster holds the keys, first...last is the live set."""
    rng = random.Random(7)
    live: set[str] = set()
    archived: set[str] = set()
    names = [f"proj-{c}{n}" for c in "zamq" for n in range(3)]
    for step in range(12):
        for _ in range(rng.randint(1, 3)):
            name = rng.choice(names)
            if name in live:
                if rng.random() < 0.5:
                    app.delete_project(name)
                    live.discard(name)
                else:
                    app.archive_project(name)
                    live.discard(name)
                    archived.add(name)
            elif name in archived:
                app.archive_project(name, archived=False)
                archived.discard(name)
                live.add(name)
            else:
                app.add_project_with_workspaces(name, 1)
                live.add(name)
        result = tick(instance, app.url)
        if not live:
            assert isinstance(result, dg.SensorResult) and result.skip_reason, step
            apply_sensor_result(instance, result)
            assert partitions(instance) == []
            continue
        apply_sensor_result(instance, result)
        assert sorted(partitions(instance)) == sorted(live), step
        assert sorted(covered(instance, only_run_request(result))) == sorted(live), step


def in_flight_run(instance: dg.DagsterInstance, status: dg.DagsterRunStatus, job_name: str):
    defs = job_defs()
    if job_name == reconcile_job.name:
        return create_run(instance, defs.resolve_job_def(job_name), status)
    # What `dagster asset materialize --select '*'` and a UI backfill of the chain launch.
    job = defs.resolve_implicit_global_asset_job_def()
    return create_run(instance, job, status, asset_selection=CHAIN_KEYS)


@pytest.mark.parametrize(
    "status",
    [
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    ],
)
def test_skips_while_a_reconcile_run_is_queued_or_in_progress(instance, app, status):
    app.add_project_with_workspaces("p1", 1)
    run = in_flight_run(instance, status, reconcile_job.name)
    assert instance.get_run_by_id(run.run_id).status == status

    result = tick(instance, app.url)
    assert isinstance(result, dg.SkipReason), result
    assert run.run_id in result.skip_message
    assert status.value in result.skip_message
    assert partitions(instance) == []  # a skipped tick changes nothing


@pytest.mark.parametrize(
    "status",
    [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED],
)
def test_finished_runs_do_not_block(instance, app, status):
    app.add_project_with_workspaces("p1", 1)
    in_flight_run(instance, status, reconcile_job.name)
    result = tick_and_apply(instance, app.url)
    assert covered(instance, only_run_request(result)) == ["p1"]


def test_skips_while_a_ui_or_cli_materialization_of_the_chain_is_in_progress(instance, app):
    """`dagster asset materialize`, the asset graph's Materialize button and UI/CLI backfills
    launch the implicit asset job ``__ASSET_JOB``, not reconcile_job. Such a run over the same
    assets is a reconcile run in progress (the contract: "never overlaps a run still queued or in
    progress"); it shares the frames directory and the snapshot table with the sensor's run."""
    app.add_project_with_workspaces("p1", 1)
    run = in_flight_run(instance, dg.DagsterRunStatus.STARTED, "__ASSET_JOB")
    assert run.job_name == "__ASSET_JOB"
    result = tick(instance, app.url)
    assert isinstance(result, dg.SkipReason), (
        f"sensor requested a run while {run.job_name} run {run.run_id} of the same assets "
        "is STARTED"
    )
    assert run.run_id in result.skip_message


def test_no_live_projects_skips(instance, app):
    result = tick(instance, app.url)  # empty app DB
    assert isinstance(result, dg.SensorResult)
    assert not result.run_requests and not result.dynamic_partitions_requests
    assert "no live projects" in result.skip_reason.skip_message

    app.add_project_with_workspaces("p1", 1)
    tick_and_apply(instance, app.url)
    assert partitions(instance) == ["p1"]
    app.archive_project("p1")
    result = tick_and_apply(instance, app.url)
    assert not result.run_requests
    assert "no live projects" in result.skip_reason.skip_message
    assert "1 archived" in result.skip_reason.skip_message
    assert partitions(instance) == []  # the archived project's partition is gone


@pytest.mark.parametrize(
    "kind", ["missing_file", "not_a_database", "no_app_schema", "malformed_url", "pg_unreachable"]
)
def test_unreadable_app_db_is_a_skip_reason_not_an_exception(instance, tmp_path, kind):
    add_partitions(instance, ["p1"])
    path = tmp_path / "app.db"
    url = f"sqlite:///{path}"
    if kind == "not_a_database":
        path.write_bytes(b"this is not an SQLite database" * 100)
    elif kind == "no_app_schema":
        AppDb(url).execute('DROP TABLE "Project"')
    elif kind == "malformed_url":
        url = "no-such-scheme:/// what"
    elif kind == "pg_unreachable":
        url = "postgresql+psycopg2://app:secret@127.0.0.1:1/app"

    result = tick(instance, url)
    assert isinstance(result, dg.SkipReason), result
    # (the temporary directory's name says "unreadable" too: look past the path)
    message = result.skip_message.replace(str(tmp_path), "<tmp>")
    if kind == "no_app_schema":  # permanent: the schema, not the connection
        assert message.startswith("not launching: app DB sqlite:///<tmp>/app.db"), message
        assert "matches no known schema generation" in message and "table Project" in message
    else:
        assert " unreadable: " in message, message
    assert "secret" not in result.skip_message  # the password stays out of the UI
    assert partitions(instance) == ["p1"]  # an unreadable app DB deletes no partition


@pytest.mark.parametrize("generation", (1, 2, 3))
def test_each_schema_generation_is_read(instance, tmp_path, generation):
    app = AppDb(f"sqlite:///{tmp_path / 'app.db'}", generation=generation)
    app.add_project_with_workspaces("p1", 2)
    result = tick_and_apply(instance, app.url)
    assert len(result.run_requests) == 1 and partitions(instance) == ["p1"]
    app.dispose()


def test_an_unknown_schema_launches_no_run_and_says_what_is_missing(instance, tmp_path):
    """An app DB half-way through a migration (WorkspacePR without hasMergeConflict): every tick
    skips with the reason instead of launching a run that must fail; partitions are left alone."""
    add_partitions(instance, ["p1"])
    app = AppDb(f"sqlite:///{tmp_path / 'app.db'}")
    app.add_project_with_workspaces("p1", 2)
    app.execute('ALTER TABLE "WorkspacePR" DROP COLUMN "hasMergeConflict"')
    for _ in range(2):
        result = tick(instance, app.url)
        assert isinstance(result, dg.SkipReason), result
        assert "column WorkspacePR.hasMergeConflict" in result.skip_message
        assert result.skip_message.startswith("not launching: ")
    assert partitions(instance) == ["p1"]
    app.dispose()


def test_unreadable_archived_flag_does_not_crash_the_tick(instance, tmp_path):
    """The app DB is not trusted: a non-boolean Project.isArchived must not raise. The extract
    keeps such a project's workspaces (treated as not archived), so the sensor must keep its
    partition too, or those workspaces would never be reconciled."""
    app = AppDb(f"sqlite:///{tmp_path / 'app.db'}", constraints=False)
    app.add_project_with_workspaces("p-ok", 1)
    app.add_project_with_workspaces("p-odd", 1)
    app.execute('UPDATE "Project" SET "isArchived" = \'maybe\' WHERE "id" = \'p-odd\'')
    app.add_project_with_workspaces("p-null", 1)
    app.execute('UPDATE "Project" SET "isArchived" = NULL WHERE "id" = \'p-null\'')

    result = tick(instance, app.url)  # must not raise
    assert isinstance(result, dg.SensorResult), result
    apply_sensor_result(instance, result)
    assert covered(instance, only_run_request(result)) == ["p-null", "p-odd", "p-ok"]
    app.dispose()


def test_app_db_file_replaced_is_read_afresh(instance, tmp_path):
    """The sensor runs in a long-lived code server. When the SQLite app DB file is replaced
    (restore, `prisma migrate reset`, `reconcile-pipeline demo --force`), the next tick must see
    the new file, not the old one through a pooled connection."""
    path = tmp_path / "app.db"
    old = AppDb(f"sqlite:///{path}")
    old.add_project_with_workspaces("p-old", 1)
    old.dispose()
    tick_and_apply(instance, old.url)
    assert partitions(instance) == ["p-old"]

    new = AppDb(f"sqlite:///{tmp_path / 'new.db'}")
    new.add_project_with_workspaces("p-new", 1)
    new.dispose()
    os.replace(tmp_path / "new.db", path)

    result = tick_and_apply(instance, old.url)
    assert requested_partitions(result) == (["p-new"], ["p-old"])

    path.unlink()  # and a removed file is unreadable, not the old data
    assert isinstance(tick(instance, old.url), dg.SkipReason)


def test_tick_then_run_on_a_demo_app(instance, tmp_path):
    """End to end on the demo app (real git worktrees): the tick's request, run in process,
    seeds exactly the live workspaces; a second tick and run write nothing."""
    demo = build_demo_app(tmp_path / "demo", workspaces=16)
    demo_session_runtime(demo)
    res = resources(
        demo.app_db_url,
        f"sqlite:///{tmp_path / 'pipeline.db'}",
        session_runtime=SessionRuntime(kind="file", location=str(demo.session_runtime_path)),
    )
    for expected_written in (demo.active_workspaces, 0):
        run = only_run_request(tick_and_apply(instance, demo.app_db_url))
        assert covered(instance, run) == sorted(partitions(instance))
        assert len(partitions(instance)) == demo.projects
        result = reconcile(instance, res, tags=run.tags)
        assert result.success
        snapshot = run_summary(result)
        assert snapshot["rows_written"] == expected_written
        assert snapshot["table_rows"] == demo.active_workspaces
        assert check_evaluation(result, "no_stale_entries").passed
        assert check_evaluation(result, "table_matches_authoritative").passed
        coverage = check_evaluation(result, "git_stats_coverage")
        # the demo's broken worktrees (missing, no path, not a repo) have no stats, with reasons
        assert 0 < coverage.metadata["without_git_stats"].value < demo.active_workspaces
    assert len(table_ids(res["pipeline_db"].url)) == demo.active_workspaces
