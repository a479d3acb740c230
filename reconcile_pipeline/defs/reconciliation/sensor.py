"""The 60 s reconciliation sensor: keeps project partitions in sync with the app DB and launches
one run over all of them, never while a reconcile run is still queued or in progress."""

import dagster as dg

import reconcile_pipeline.defs.reconciliation.job as jobs
from reconcile_pipeline.concurrency import RUN_TAG
from reconcile_pipeline.core.generations import UnknownSchemaError
from reconcile_pipeline.defs.reconciliation.keys import CHAIN
from reconcile_pipeline.defs.reconciliation.partitions import PROJECTS
from reconcile_pipeline.defs.reconciliation.tick import plan_tick
from reconcile_pipeline.defs.resources import AppDatabase

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
        if run.job_name == jobs.JOB_NAME or run.tags.get(RUN_TAG_KEY) == RUN_TAG_VALUE:
            return run
        if run.asset_selection and run.asset_selection & RECONCILE_ASSET_KEYS:
            return run
    return None


@dg.sensor(
    job=jobs.reconcile_job,
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
        tick = plan_tick(app_db.engine(), context.instance.get_dynamic_partitions(PROJECTS))
    except UnknownSchemaError as exc:  # permanent: launching runs would only fail them
        return dg.SkipReason(f"not launching: {exc}")
    except Exception as exc:  # a sensor must say what it saw, not crash the tick
        return dg.SkipReason(f"app DB {app_db.display_url} unreadable: {type(exc).__name__}: {exc}")
    if not tick.sync.keys_after:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                f"no live projects in the app DB ({tick.archived} archived); nothing to reconcile"
            ),
            dynamic_partitions_requests=tick.sync.requests(),
        )
    return dg.SensorResult(
        run_requests=[dg.RunRequest(tags=tick.tags, run_config=tick.run_config)],
        dynamic_partitions_requests=tick.sync.requests(),
    )
