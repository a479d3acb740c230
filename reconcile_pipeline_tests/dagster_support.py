"""Real Dagster parts for tests: hand-built app DBs, explicit resources, in-process runs.

No mocks: the app DB is a real SQLite (or PostgreSQL) database with the app's Prisma schema, the
pipeline DB is a real database, runs go through ``dg.materialize`` on a real persistent instance
(``dg.instance_for_test``), and sensor results are applied to that instance the way the sensor
daemon applies them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import dagster as dg

from reconcile_pipeline.assets import ASSET_CHECKS, ASSETS
from reconcile_pipeline.io_manager import ProjectFramesIOManager
from reconcile_pipeline.jobs import reconcile_job
from reconcile_pipeline.partitions import PROJECTS, range_tags
from reconcile_pipeline.resources import (
    AppDatabase,
    GitWorktrees,
    PipelineDatabase,
    ReconcilePolicy,
    SessionRuntime,
)
from reconcile_pipeline_tests.support.app_db import BASE_MS, AppDb

__all__ = ["BASE_MS", "AppDb"]


def resources(
    app_url: str,
    pipeline_url: str,
    frames_dir: str,
    *,
    policy: ReconcilePolicy | None = None,
    session_runtime: SessionRuntime | None = None,
) -> dict[str, Any]:
    """Every resource the chain needs, pointing at the given test databases and directory."""
    return {
        "app_db": AppDatabase(url=app_url),
        "pipeline_db": PipelineDatabase(url=pipeline_url),
        "session_runtime": session_runtime or SessionRuntime(kind="none"),
        "git": GitWorktrees(timeout_s=30.0),
        "policy": policy or ReconcilePolicy(),
        "frames_io_manager": ProjectFramesIOManager(base_dir=frames_dir),
    }


def job_defs(res: dict[str, Any] | None = None) -> dg.Definitions:
    """Definitions holding the chain and reconcile_job (resolved job defs create runs)."""
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=ASSET_CHECKS,
        jobs=[reconcile_job],
        resources=res or resources("sqlite:///unused-app.db", "sqlite:///unused.db", "unused"),
    )


_E = dg.DagsterEventType
_LIFECYCLE = [_E.RUN_ENQUEUED, _E.RUN_STARTING, _E.RUN_START]
_EVENTS_TO_STATUS: dict[dg.DagsterRunStatus, list[dg.DagsterEventType]] = {
    dg.DagsterRunStatus.NOT_STARTED: [],
    dg.DagsterRunStatus.QUEUED: _LIFECYCLE[:1],
    dg.DagsterRunStatus.STARTING: _LIFECYCLE[:2],
    dg.DagsterRunStatus.STARTED: _LIFECYCLE,
    dg.DagsterRunStatus.CANCELING: [*_LIFECYCLE, _E.RUN_CANCELING],
    dg.DagsterRunStatus.CANCELED: [*_LIFECYCLE, _E.RUN_CANCELING, _E.RUN_CANCELED],
    dg.DagsterRunStatus.SUCCESS: [*_LIFECYCLE, _E.RUN_SUCCESS],
    dg.DagsterRunStatus.FAILURE: [*_LIFECYCLE, _E.RUN_FAILURE],
}


def create_run(
    instance: dg.DagsterInstance,
    job: dg.JobDefinition,
    status: dg.DagsterRunStatus,
    asset_selection: Iterable[dg.AssetKey] | None = None,
) -> dg.DagsterRun:
    """A run of ``job`` in the instance, moved to ``status`` by the run events the run queue,
    the launcher and the executor would report (the instance derives the status from them).

    A queued run must say where its code lives: a ``RemoteJobOrigin`` naming this code location
    as workspace.yaml loads it (no public constructor exists for it, hence the private import).
    """
    from dagster._core.remote_origin import (
        RegisteredCodeLocationOrigin,
        RemoteJobOrigin,
        RemoteRepositoryOrigin,
    )

    origin = RemoteJobOrigin(
        repository_origin=RemoteRepositoryOrigin(
            code_location_origin=RegisteredCodeLocationOrigin("reconcile_pipeline.definitions"),
            repository_name="__repository__",
        ),
        job_name=job.name,
    )
    run = instance.create_run_for_job(
        job_def=job,
        remote_job_origin=origin,
        asset_selection=None if asset_selection is None else set(asset_selection),
    )
    for event_type in _EVENTS_TO_STATUS[status]:
        instance.report_dagster_event(
            dg.DagsterEvent(
                event_type_value=event_type.value,
                job_name=run.job_name,
                message=f"test: {event_type.value}",
            ),
            run_id=run.run_id,
        )
    run = instance.get_run_by_id(run.run_id)
    assert run is not None and run.status == status, run
    return run


CHAIN_KEYS = [key for a in ASSETS for key in a.keys]


def add_partitions(instance: dg.DagsterInstance, keys: Iterable[str]) -> None:
    instance.add_dynamic_partitions(PROJECTS, list(keys))


def delete_partitions(instance: dg.DagsterInstance, keys: Iterable[str]) -> None:
    for key in keys:
        instance.delete_dynamic_partition(PROJECTS, key)


def partitions(instance: dg.DagsterInstance) -> list[str]:
    return list(instance.get_dynamic_partitions(PROJECTS))


def apply_sensor_result(instance: dg.DagsterInstance, result: dg.SensorResult) -> None:
    """Apply a tick's dynamic partition requests in order, as the sensor daemon does."""
    for request in result.dynamic_partitions_requests or []:
        assert request.partitions_def_name == PROJECTS
        if isinstance(request, dg.AddDynamicPartitionsRequest):
            add_partitions(instance, request.partition_keys)
        elif isinstance(request, dg.DeleteDynamicPartitionsRequest):
            delete_partitions(instance, request.partition_keys)
        else:  # pragma: no cover - a new request kind would need handling here
            raise AssertionError(f"unexpected request {request!r}")


def keys_in_range(instance: dg.DagsterInstance, start: str, end: str) -> list[str]:
    """The partition keys Dagster resolves for the range start...end on this instance."""
    from reconcile_pipeline.partitions import projects_partitions

    with dg.partition_loading_context(dynamic_partitions_store=instance):
        return list(
            projects_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))
        )


def reconcile(
    instance: dg.DagsterInstance,
    res: dict[str, Any],
    *,
    keys: Sequence[str] | None = None,
    partition_key: str | None = None,
    tags: dict[str, str] | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """One in-process run of the whole chain: with run ``tags`` (e.g. a sensor request's), over
    ``keys`` as a partition range (default: every current partition, as the sensor requests
    it), or over one ``partition_key``."""
    if tags is None and partition_key is None:
        keys = list(keys) if keys is not None else partitions(instance)
        tags = range_tags(keys)
    return dg.materialize(
        [*ASSETS, *ASSET_CHECKS],
        instance=instance,
        resources=res,
        partition_key=partition_key,
        tags=tags or {},
        raise_on_error=raise_on_error,
    )


def check_evaluation(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    found = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    assert len(found) == 1, f"{name}: {len(found)} evaluations"
    return found[0]


def metadata_of(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    """The materialization metadata of ``asset`` in this run, as plain values."""
    events = [
        e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(asset)
    ]
    assert events, f"{asset} was not materialized"
    # A range run materializes each partition with the same metadata: take the first.
    md = events[0].materialization.metadata
    return {k: getattr(v, "value", v) for k, v in md.items()}


def table_ids(pipeline_url: str) -> set[str]:
    return PipelineDatabase(url=pipeline_url).store().workspace_ids()
