"""Retention: a 60 s cadence makes ~1,440 reconcile runs a day, and OSS Dagster keeps runs and
their event logs forever. An hourly schedule deletes finished reconcile runs older than
RECONCILE_RUN_RETENTION_HOURS (default 24), always keeping the newest ones."""

import datetime as dt
import shutil
from pathlib import Path

import dagster as dg

from reconcile_pipeline.jobs import reconcile_job
from reconcile_pipeline.settings import SETTINGS

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]


class RunRetention(dg.ConfigurableResource):
    """Env: RECONCILE_RUN_RETENTION_HOURS, RECONCILE_RUN_RETENTION_KEEP."""

    max_age_hours: float = SETTINGS["RECONCILE_RUN_RETENTION_HOURS"].default
    keep_latest: int = SETTINGS["RECONCILE_RUN_RETENTION_KEEP"].default
    # Bounded work per tick; the next tick continues.
    batch: int = 2000


def purge_runs(instance: dg.DagsterInstance, retention: RunRetention, job_names: list[str]) -> int:
    """Delete finished runs of ``job_names`` older than the cut-off (runs and event logs)."""
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(hours=retention.max_age_hours)
    deleted = 0
    for job_name in job_names:
        # limit=0 means "no limit" to Dagster: keeping none must not keep them all.
        newest = (
            set(instance.get_run_ids(dg.RunsFilter(job_name=job_name), limit=retention.keep_latest))
            if retention.keep_latest > 0
            else set()
        )
        old = instance.get_run_ids(
            dg.RunsFilter(job_name=job_name, statuses=FINISHED, created_before=cutoff),
            limit=retention.batch + retention.keep_latest,
        )
        for run_id in old:
            if run_id in newest or deleted >= retention.batch:
                continue
            instance.delete_run(run_id)  # the run and its event log
            # ...and its files: compute logs and the step outputs kept under storage/<run_id>.
            instance.compute_log_manager.delete_logs(prefix=[run_id])
            shutil.rmtree(Path(instance.storage_directory()) / run_id, ignore_errors=True)
            deleted += 1
    return deleted


@dg.op(description="Delete finished reconcile runs (and their event logs) past the retention age.")
def purge_old_runs(context: dg.OpExecutionContext, retention: RunRetention) -> dg.Output[int]:
    deleted = purge_runs(
        context.instance, retention, [reconcile_job.name, "__ASSET_JOB", "purge_old_runs_job"]
    )
    context.log.info(f"deleted {deleted} runs older than {retention.max_age_hours} h")
    return dg.Output(deleted, metadata={"deleted_runs": deleted})


@dg.job(
    description="Run and event-log retention for the reconcile runs.",
    executor_def=dg.in_process_executor,
)
def purge_old_runs_job() -> None:
    purge_old_runs()


retention_schedule = dg.ScheduleDefinition(
    job=purge_old_runs_job,
    cron_schedule="17 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly: delete reconcile runs older than the retention age.",
)
