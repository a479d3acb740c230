"""The 60 s reconciliation sensor: keeps project partitions in sync with the app DB and launches
one run over all of them, never while a reconcile run is still queued or in progress."""

import dagster as dg

from reconcile_pipeline.assets.keys import CHAIN
from reconcile_pipeline.concurrency import RUN_TAG
from reconcile_pipeline.core.extract import list_projects
from reconcile_pipeline.core.generations import UnknownSchemaError
from reconcile_pipeline.executors import run_config
from reconcile_pipeline.jobs import reconcile_job
from reconcile_pipeline.partitions import (
    PROJECTS,
    live_project_ids,
    live_workspaces,
    plan_sync,
    range_tags,
)
from reconcile_pipeline.resources import AppDatabase

[(RUN_TAG_KEY, RUN_TAG_VALUE)] = RUN_TAG.items()
RECONCILE_ASSET_KEYS = frozenset(CHAIN)
IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def reconcile_run_in_flight(instance: dg.DagsterInstance) -> dg.DagsterRun | None:
    """A queued or running run of the reconcile job, or any run (UI, CLI, backfill) that
    materializes the reconciliation assets."""
    for run in instance.get_runs(dg.RunsFilter(statuses=IN_FLIGHT), limit=100):
        if run.job_name == reconcile_job.name or run.tags.get(RUN_TAG_KEY) == RUN_TAG_VALUE:
            return run
        if run.asset_selection and run.asset_selection & RECONCILE_ASSET_KEYS:
            return run
    return None


@dg.sensor(
    job=reconcile_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 60 s: sync project partitions, then reconcile every project in one run.",
)
def reconciliation_sensor(
    context: dg.SensorEvaluationContext, app_db: AppDatabase
) -> dg.SensorResult | dg.SkipReason:
    run = reconcile_run_in_flight(context.instance)
    if run is not None:
        return dg.SkipReason(
            f"reconcile run {run.run_id} is still {run.status.value}; not starting another"
        )
    try:
        projects = list_projects(app_db.engine())
    except UnknownSchemaError as exc:  # permanent: launching runs would only fail them
        return dg.SkipReason(f"not launching: {exc}")
    except Exception as exc:  # a sensor must say what it saw, not crash the tick
        return dg.SkipReason(f"app DB {app_db.display_url} unreadable: {type(exc).__name__}: {exc}")
    live = live_project_ids(projects)
    sync = plan_sync(context.instance.get_dynamic_partitions(PROJECTS), live)
    if not sync.keys_after:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                f"no live projects in the app DB ({len(projects)} archived); nothing to reconcile"
            ),
            dynamic_partitions_requests=sync.requests(),
        )
    request = dg.RunRequest(
        tags=range_tags(sync.keys_after), run_config=run_config(live_workspaces(projects))
    )
    return dg.SensorResult(run_requests=[request], dynamic_partitions_requests=sync.requests())
