"""The 60 s reconciliation sensor: keeps project partitions in sync with the app DB and launches
one run over all of them, never while a reconcile run is still queued or in progress."""

import dagster as dg

from reconcile_pipeline.core.app_db import list_projects
from reconcile_pipeline.jobs import reconcile_job
from reconcile_pipeline.partitions import PROJECTS, live_project_ids, plan_sync, range_tags
from reconcile_pipeline.resources import AppDatabase

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


@dg.sensor(
    job=reconcile_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Every 60 s: sync project partitions, then reconcile every project in one run.",
)
def reconciliation_sensor(
    context: dg.SensorEvaluationContext, app_db: AppDatabase
) -> dg.SensorResult | dg.SkipReason:
    in_flight = context.instance.get_runs(
        dg.RunsFilter(job_name=reconcile_job.name, statuses=IN_FLIGHT), limit=1
    )
    if in_flight:
        run = in_flight[0]
        return dg.SkipReason(
            f"reconcile run {run.run_id} is still {run.status.value}; not starting another"
        )
    try:
        projects = list_projects(app_db.engine())
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
    return dg.SensorResult(
        run_requests=[dg.RunRequest(tags=range_tags(sync.keys_after))],
        dynamic_partitions_requests=sync.requests(),
    )
