"""Real Dagster runs for the tests, in process (``dg.materialize`` on a real instance) and in a
fresh subprocess (``execute_job`` with the code location's executor), and readers of what they
left in the instance: check evaluations, per-project materializations, the run summary, steps.

``python -m reconcile_pipeline_tests.support.runs execute --range first...last`` is the
subprocess runner: resources are read from the environment when ``reconcile_pipeline.definitions``
is imported, and the multiprocess executor's forkserver keeps the environment of the process that
started it, so every such run gets a process of its own.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from reconcile_pipeline.definitions import defs
from reconcile_pipeline.defs.reconciliation.job import reconcile_job
from reconcile_pipeline.defs.reconciliation.keys import CHAIN, CHECK_SPECS
from reconcile_pipeline.defs.reconciliation.partitions import PROJECTS, range_tags
from reconcile_pipeline.defs.resources import (
    AppDatabase,
    GitWorktrees,
    PipelineDatabase,
    ReconcilePolicy,
    SessionRuntime,
)
from reconcile_pipeline_tests.support.processes import pipeline_env, run_command

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
# The chain's three stages, as step keys.
EXTRACT_STEP = "reconcile_chain.extract_and_plan"
SHARD_STEP_PREFIX = "reconcile_chain.compute_git_shard"
RECONCILE_STEP = "reconcile_chain.reconcile_snapshots"
ASSET_NAMES = tuple(key.to_user_string() for key in CHAIN)
CHECK_NAMES = {spec.name for spec in CHECK_SPECS}
ASSETS = list(defs.assets)  # the code location's, with its freshness policy
CHAIN_KEYS = list(CHAIN)


# ---- resources and in-process runs ---------------------------------------------------------------


def resources(
    app_url: str,
    pipeline_url: str,
    *,
    policy: ReconcilePolicy | None = None,
    session_runtime: SessionRuntime | None = None,
    git: GitWorktrees | None = None,
) -> dict[str, Any]:
    """Every resource the chain needs, pointing at the given test databases."""
    return {
        "app_db": AppDatabase(url=app_url),
        "pipeline_db": PipelineDatabase(url=pipeline_url),
        "session_runtime": session_runtime or SessionRuntime(kind="none"),
        "git": git or GitWorktrees(timeout_s=30.0),
        "policy": policy or ReconcilePolicy(),
    }


# Things to do at a stage boundary of the next in-process run (fault injection): the real
# resources, with one hook called where a stage starts using them.
_BEFORE_GIT: list = []
_BEFORE_RECONCILE: list = []


class GitWorktreesWithHook(GitWorktrees):
    """GitWorktrees whose first use in a git shard step (after the extract's step) first runs
    the callables queued with :func:`before_git`."""

    def roots(self) -> list[str] | None:
        while _BEFORE_GIT:
            _BEFORE_GIT.pop(0)()
        return super().roots()


class SessionRuntimeWithHook(SessionRuntime):
    """SessionRuntime whose read in the reconcile step (after the extract and git steps, before
    drift and the write) first runs the callables queued with :func:`before_reconcile`."""

    def read(self):
        while _BEFORE_RECONCILE:
            _BEFORE_RECONCILE.pop(0)()
        return super().read()


def before_git(action) -> None:
    _BEFORE_GIT.append(action)


def before_reconcile(action) -> None:
    _BEFORE_RECONCILE.append(action)


def with_hooks(res: dict[str, Any]) -> dict[str, Any]:
    """``res`` with the git and session runtime resources able to run stage-boundary hooks."""
    git, runtime = res["git"], res["session_runtime"]
    return {
        **res,
        "git": GitWorktreesWithHook(**git.model_dump()),
        "session_runtime": SessionRuntimeWithHook(**runtime.model_dump()),
    }


def job_defs(res: dict[str, Any] | None = None) -> dg.Definitions:
    """Definitions holding the chain and reconcile_job (resolved job defs create runs)."""
    return dg.Definitions(
        assets=ASSETS,
        jobs=[reconcile_job],
        resources=res or resources("sqlite:///unused-app.db", "sqlite:///unused.db"),
    )


def poll_start_ms(summary: dict) -> int:
    """A run's exact poll start (epoch ms) from its summary's typed timestamp (seconds)."""
    return round(summary["poll_start"] * 1000)


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
        ASSETS,
        instance=instance,
        resources=res,
        partition_key=partition_key,
        tags=tags or {},
        raise_on_error=raise_on_error,
    )


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
    from reconcile_pipeline.defs.reconciliation.partitions import projects_partitions

    with dg.partition_loading_context(dynamic_partitions_store=instance):
        return list(
            projects_partitions.get_partition_keys_in_range(dg.PartitionKeyRange(start, end))
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


# ---- reading what a run left --------------------------------------------------------------------


def plain(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Metadata values as plain Python values (a table stays a TableMetadataValue's records)."""
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def table_rows(value: Any) -> list[dict[str, Any]]:
    """The rows of a table metadata value, as dicts."""
    records = value.records if hasattr(value, "records") else value
    return [dict(r.data) for r in records]


def table_text(value: Any) -> str:
    """Every cell of a table metadata value, one row per line (to look for what it shows)."""
    return "\n".join(
        " | ".join("" if v is None else str(v) for v in row.values()) for row in table_rows(value)
    )


def check_evaluation(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    found = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    assert len(found) == 1, f"{name}: {len(found)} evaluations"
    return found[0]


def run_summary(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    """The run's figures: the one run-summary observation of workspace_snapshot."""
    found = [
        e.event_specific_data.asset_observation
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.ASSET_OBSERVATION
    ]
    assert len(found) == 1, f"{len(found)} run summaries"
    return plain(found[0].metadata)


def by_partition(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, dict[str, Any]]:
    """partition -> materialization metadata (plain values) of ``asset`` in this run."""
    out = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        if materialization.asset_key == dg.AssetKey(asset):
            out[materialization.partition] = plain(materialization.metadata)
    assert out, f"{asset} was not materialized"
    return out


def metadata_of(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, Any]:
    """The run-level facts of ``asset`` (the same on every partition's materialization)."""
    return next(iter(by_partition(result, asset).values()))


def materialization_metadata(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict]:
    """asset name -> the run-level facts of its materializations in the run."""
    out: dict[str, dict] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.dagster_event.event_specific_data.materialization
        out.setdefault(materialization.asset_key.to_user_string(), plain(materialization.metadata))
    return out


def summed(result: dg.ExecuteInProcessResult, asset: str, name: str) -> int:
    """``name`` added up over every partition of ``asset``."""
    return sum(md[name] for md in by_partition(result, asset).values())


def open_instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home))


def check_evaluations(instance: dg.DagsterInstance, run_id: str) -> dict[str, Any]:
    """check name -> AssetCheckEvaluation of the run."""
    out = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        out[evaluation.check_name] = evaluation
    return out


def check_metadata(evaluation: Any) -> dict[str, Any]:
    return plain(evaluation.metadata)


def instance_run_summary(instance: dg.DagsterInstance, run_id: str) -> dict[str, Any]:
    """The run summary observation of a run, from the instance."""
    found = [
        entry.dagster_event.event_specific_data.asset_observation
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION)
    ]
    assert len(found) == 1, f"{len(found)} run summaries"
    return plain(found[0].metadata)


def step_windows(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    """step key -> (STEP_START, STEP_SUCCESS or STEP_FAILURE) timestamps."""
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    types = {
        dg.DagsterEventType.STEP_START,
        dg.DagsterEventType.STEP_SUCCESS,
        dg.DagsterEventType.STEP_FAILURE,
    }
    for entry in instance.all_logs(run_id, of_type=types):
        kind = entry.dagster_event.event_type
        target = starts if kind == dg.DagsterEventType.STEP_START else ends
        target[entry.step_key] = entry.timestamp
    return {key: (starts[key], ends[key]) for key in starts if key in ends}


def max_overlap(windows: Iterable[tuple[float, float]]) -> int:
    """Most intervals open at one instant (an end at t closes before a start at t opens)."""
    events = sorted([(s, 1) for s, _ in windows] + [(e, -1) for _, e in windows])
    best = current = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


def store_of(pipeline_url: str):
    """The snapshot store of a pipeline DB, as the resource opens it."""
    return PipelineDatabase(url=pipeline_url).store()


def table_ids(pipeline_url: str) -> set[str]:
    return store_of(pipeline_url).workspace_ids()


def table_frame(pipeline_url: str):
    """The whole snapshot table, as the store reads it (a DataFrame)."""
    return store_of(pipeline_url).read_frame()


# ---- runs in a subprocess ----------------------------------------------------------------------


def reconcile_job_def() -> dg.JobDefinition:
    """The code location's reconcile_job, resolved with its resources and executor."""
    from reconcile_pipeline.definitions import defs

    return defs.resolve_job_def("reconcile_job")


CONTROL_JOB = "reconcile_job_without_git_limit"


def control_job_def() -> dg.JobDefinition:
    """Control for the concurrency test: the same assets, resources and executor settings
    (max_concurrent 4, forkserver) but WITHOUT the tag limit on git shard steps. If the
    overlap measurement sees 4 here and 3 with reconcile_job, the limit of 3 is what binds."""
    from reconcile_pipeline.definitions import defs
    from reconcile_pipeline.defs.reconciliation.partitions import projects_partitions

    executor = dg.multiprocess_executor.configured(
        {
            "max_concurrent": 4,
            "start_method": {"forkserver": {"preload_modules": ["reconcile_pipeline.definitions"]}},
        },
        name="control_executor",
    )
    job = dg.define_asset_job(
        CONTROL_JOB,
        selection=dg.AssetSelection.groups("reconciliation"),
        partitions_def=projects_partitions,
        executor_def=executor,
    )
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(CONTROL_JOB)


def sync_partitions(env: Mapping[str, str]) -> str:
    """``reconcile-pipeline sync-partitions --quiet``; returns the range ``first...last``."""
    from reconcile_pipeline_tests.support.processes import BIN

    proc = run_command([str(BIN / "reconcile-pipeline"), "sync-partitions", "--quiet"], env)
    return proc.stdout.strip()


def add_project_partitions(home: Path, app_db: Path) -> str:
    """Add the app DB's live projects as partitions (Dagster's API, not the product's CLI);
    returns the range ``first...last`` that covers them all."""
    from reconcile_pipeline_tests.support.expected import query

    live = [r["id"] for r in query(app_db, 'SELECT "id" FROM "Project" WHERE "isArchived" = 0')]
    with open_instance(home) as instance:
        current = set(instance.get_dynamic_partitions(PROJECTS))
        instance.add_dynamic_partitions(PROJECTS, sorted(set(live) - current))
        keys = instance.get_dynamic_partitions(PROJECTS)
    return f"{keys[0]}...{keys[-1]}"


def app_env(home: Path, app, pipeline_db: Path, **extra) -> dict[str, str]:
    """The environment of a subprocess run whose resources point at the demo ``app`` (its app DB
    and session runtime file) and the SQLite ``pipeline_db``, through their variables."""
    return pipeline_env(
        home,
        RECONCILE_APP_DB_URL=app.app_db_url,
        RECONCILE_PIPELINE_DB_URL=f"sqlite:///{pipeline_db}",
        RECONCILE_SESSION_RUNTIME="file",
        RECONCILE_SESSION_RUNTIME_LOCATION=app.session_runtime_path,
        **extra,
    )


def run_facts(home: Path, run_id: str) -> tuple[dg.DagsterRun, dict, dict]:
    """(run record, check evaluations, run summary) of a run, from the instance at ``home``."""
    with open_instance(home) as instance:
        run = instance.get_run_by_id(run_id)
        return run, check_evaluations(instance, run_id), instance_run_summary(instance, run_id)


def execute(
    env: Mapping[str, str],
    partition_range: str,
    *,
    control: bool = False,
    mode: str = "multiprocess",
) -> dict[str, Any]:
    """One run of reconcile_job (or the control job) over ``first...last`` in a fresh process,
    with the executor in ``mode``. Returns run_id, success, duration_s (execute_job) and
    process_s."""
    started = time.perf_counter()
    proc = run_command(
        [sys.executable, "-m", "reconcile_pipeline_tests.support.runs", "execute"]
        + ["--range", partition_range, "--mode", mode]
        + (["--control"] if control else []),
        env,
        check=False,
    )
    assert proc.returncode == 0, f"runner failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = round(time.perf_counter() - started, 2)
    result["stderr"] = proc.stderr
    return result


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="runs")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("execute", help="execute reconcile_job")
    run.add_argument("--range", required=True, help="first...last partition key")
    run.add_argument("--control", action="store_true", help="run the control job instead")
    run.add_argument("--mode", default="multiprocess", choices=("multiprocess", "in_process"))
    args = parser.parse_args(argv)
    # Import ourselves by module name: under ``python -m`` this file is ``__main__``, and the step
    # processes must find the job through a module pointer, not a file path.
    from reconcile_pipeline_tests.support import runs as me

    target = me.control_job_def if args.control else me.reconcile_job_def
    run_config = {} if args.control else {"execution": {"config": {"mode": args.mode}}}

    first, _, last = args.range.partition("...")
    with dg.DagsterInstance.get() as instance:
        started = time.perf_counter()
        result = dg.execute_job(
            dg.reconstructable(target),
            instance=instance,
            tags={RANGE_START: first, RANGE_END: last or first},
            run_config=run_config,
        )
        duration = time.perf_counter() - started
        print(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "success": result.success,
                    "duration_s": round(duration, 2),
                }
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(_main())
