"""Retention: a 60 s cadence makes ~1,440 reconcile runs a day, and OSS Dagster keeps runs and
their event logs forever. An hourly schedule bounds them with two ages, following Dagster's
database tuning guide (delete the low-value events, keep the asset events):

* Finished runs older than RECONCILE_RUN_RETENTION_HOURS (default 24) are *trimmed*: their
  low-value events go (user log lines and every system event that is not an asset event, an
  asset check event or a run status event), and so do their compute logs and step outputs
  (``storage/<run id>``). The run record, its status changes, its asset materializations and
  its check results stay, so the asset history outlives the run's logs. A trimmed run carries
  the tag ``reconcile/event_log=trimmed``.
* Finished runs older than RECONCILE_ASSET_HISTORY_DAYS (default 30) are deleted entirely
  (``instance.delete_run``), their asset history with them.

The newest RECONCILE_RUN_RETENTION_KEEP runs of each job are never touched, and each tick does a
bounded amount of work (the next tick continues).

How a run is trimmed depends on the instance's event log storage:

* SQLite (the embedded instance) keeps one shard file per run, ``history/runs/<run id>.db``,
  and mirrors the asset, asset check and run status events into the ``index`` shard. Removing
  the shard file of a trimmed run removes exactly its low-value events. ``delete_run`` leaves
  the shard file behind (it even recreates it to delete the events), so the file is removed
  after it too; shard files of runs that no longer exist are swept up as well.
* PostgreSQL (and any other single-table SQL storage) keeps every event in ``event_logs``: the
  low-value rows of the trimmed runs are deleted in bounded batches.
"""

import datetime as dt
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from reconcile_pipeline.dagster_internals import (
    ASSET_CHECK_EVENTS,
    ASSET_EVENTS,
    EVENT_TYPE_TO_PIPELINE_RUN_STATUS,
    INDEX_SHARD_NAME,
    AssetCheckExecutionsTable,
    RunTagsTable,
    SqlEventLogStorage,
    SqlEventLogStorageTable,
    SqliteEventLogStorage,
    SqlRunStorage,
)
from reconcile_pipeline.defs.reconciliation.job import JOB_NAME
from reconcile_pipeline.settings import SETTINGS

FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]

# The events a trimmed run keeps: the ones SQLite mirrors into its index shard.
KEPT_EVENT_TYPES: frozenset[str] = frozenset(
    t.value for t in (*ASSET_EVENTS, *ASSET_CHECK_EVENTS, *EVENT_TYPE_TO_PIPELINE_RUN_STATUS)
)
TRIMMED_TAG = "reconcile/event_log"
TRIMMED = "trimmed"
SHARD_SUFFIXES = (".db", ".db-wal", ".db-shm")
# A shard file without a run is removed once it is this old (a run is stored before its events,
# so this only guards against a run being created or deleted by another process right now).
ORPHAN_GRACE = dt.timedelta(hours=1)
_RUNS_PER_QUERY = 500  # run ids per IN (...) list
_ROWS_PER_DELETE = 10_000  # event rows per DELETE statement


class RunRetention(dg.ConfigurableResource):
    """Env: RECONCILE_RUN_RETENTION_HOURS, RECONCILE_ASSET_HISTORY_DAYS,
    RECONCILE_RUN_RETENTION_KEEP."""

    max_age_hours: float = SETTINGS["RECONCILE_RUN_RETENTION_HOURS"].default
    asset_history_days: float = SETTINGS["RECONCILE_ASSET_HISTORY_DAYS"].default
    keep_latest: int = SETTINGS["RECONCILE_RUN_RETENTION_KEEP"].default
    # Bounded work per tick (runs trimmed, runs deleted, orphan shards); the next tick continues.
    batch: int = 2000


@dataclass
class PurgeReport:
    runs_trimmed: int = 0  # low-value events, compute logs and step outputs removed
    runs_deleted: int = 0  # deleted entirely, asset history included
    event_rows_deleted: int = 0  # single-table storage (PostgreSQL): low-value rows deleted
    orphan_shards_removed: int = 0  # SQLite: shard files of runs that no longer exist
    files_removed: int = 0
    bytes_freed: int = 0  # of the files removed

    def add_files(self, removed: tuple[int, int]) -> None:
        self.files_removed += removed[0]
        self.bytes_freed += removed[1]


def purge_runs(
    instance: dg.DagsterInstance,
    retention: RunRetention,
    job_names: Sequence[str],
    now: dt.datetime | None = None,
) -> PurgeReport:
    """Trim the finished runs of ``job_names`` past ``max_age_hours`` and delete those past
    ``asset_history_days``, never touching the newest ``keep_latest`` runs of each job."""
    now = now or dt.datetime.now(dt.UTC)
    trim_before = now - dt.timedelta(hours=retention.max_age_hours)
    delete_before = now - dt.timedelta(days=retention.asset_history_days)
    report = PurgeReport()
    protected = _newest(instance, job_names, retention.keep_latest)
    storage = instance.event_log_storage

    # Deletion first: a run about to be deleted need not be trimmed.
    for run_id in _take(
        _finished_before(instance, job_names, delete_before, retention.batch + len(protected)),
        protected,
        retention.batch,
    ):
        report.add_files(_remove_run_files(instance, run_id))
        _delete_run(instance, run_id)
        if isinstance(storage, SqliteEventLogStorage):
            report.add_files(_remove_shard(storage, run_id))  # delete_run leaves it behind
        report.runs_deleted += 1

    if isinstance(storage, SqliteEventLogStorage):
        _trim_sqlite(instance, storage, retention, job_names, protected, trim_before, now, report)
    elif isinstance(storage, SqlEventLogStorage):
        _trim_sql(instance, storage, retention, job_names, protected, trim_before, report)
    return report


def _delete_run(instance: dg.DagsterInstance, run_id: str) -> None:
    """``instance.delete_run`` (the run, its events and its asset history), and what it leaves
    behind: the run's check results and, on SQLite (foreign keys not enforced), its tags.

    On SQLite, a trimmed run (no shard file) is deleted without opening its shard: that would
    recreate the file, and fail on the missing tables in a process that had opened it before."""
    storage = instance.event_log_storage
    if isinstance(storage, SqliteEventLogStorage) and not _has_shard(storage, run_id):
        instance.run_storage.delete_run(run_id)
        with storage.index_connection() as conn:  # the mirrored asset, check and status events
            storage.delete_events_for_run(conn, run_id)
        if storage.supports_global_concurrency_limits:
            storage.free_concurrency_slots_for_run(run_id)
    else:
        instance.delete_run(run_id)
    _delete_leftovers(instance, run_id)


def _delete_leftovers(instance: dg.DagsterInstance, run_id: str) -> None:
    storage = instance.event_log_storage
    if isinstance(storage, SqlEventLogStorage):
        checks = AssetCheckExecutionsTable
        with storage.index_transaction() as conn:
            conn.execute(sa.delete(checks).where(checks.c.run_id == run_id))
    run_storage = instance.run_storage
    if isinstance(run_storage, SqlRunStorage):
        with run_storage.connect() as conn:
            conn.execute(sa.delete(RunTagsTable).where(RunTagsTable.c.run_id == run_id))


def _newest(instance: dg.DagsterInstance, job_names: Iterable[str], keep: int) -> set[str]:
    # limit=0 means "no limit" to Dagster: keeping none must not keep them all.
    if keep <= 0:
        return set()
    return {
        run_id
        for job_name in job_names
        for run_id in instance.get_run_ids(dg.RunsFilter(job_name=job_name), limit=keep)
    }


def _finished_before(
    instance: dg.DagsterInstance,
    job_names: Iterable[str],
    before: dt.datetime,
    limit: int | None = None,
    tags: dict[str, str] | None = None,
) -> list[str]:
    return [
        run_id
        for job_name in job_names
        for run_id in instance.get_run_ids(
            dg.RunsFilter(
                job_name=job_name, statuses=FINISHED, created_before=before, tags=tags or {}
            ),
            limit=limit,
        )
    ]


def _take(run_ids: Iterable[str], protected: set[str], limit: int) -> list[str]:
    taken: list[str] = []
    for run_id in run_ids:
        if len(taken) >= limit:
            break
        if run_id not in protected:
            taken.append(run_id)
    return taken


def _trim_sqlite(
    instance: dg.DagsterInstance,
    storage: SqliteEventLogStorage,
    retention: RunRetention,
    job_names: Sequence[str],
    protected: set[str],
    trim_before: dt.datetime,
    now: dt.datetime,
    report: PurgeReport,
) -> None:
    """The shard files are the runs that still have their low-value events: drop the shards of
    old finished runs (also those recreated by reading a trimmed run's logs) and of runs that no
    longer exist."""
    base_dir = Path(storage.path_for_shard(INDEX_SHARD_NAME)).parent
    shards = _shard_run_ids(base_dir)
    trimmed = orphans = 0
    for chunk in _chunks(sorted(shards), _RUNS_PER_QUERY):
        records = {
            r.dagster_run.run_id: r for r in instance.get_run_records(dg.RunsFilter(run_ids=chunk))
        }
        for run_id in chunk:
            record = records.get(run_id)
            if record is None:
                if orphans < retention.batch and _all_older(base_dir, run_id, now - ORPHAN_GRACE):
                    report.add_files(_remove_shard(storage, run_id))
                    report.add_files(_remove_run_files(instance, run_id))
                    _delete_leftovers(instance, run_id)
                    report.orphan_shards_removed += 1
                    orphans += 1
                continue
            run = record.dagster_run
            if (
                trimmed < retention.batch
                and run.job_name in job_names
                and run.status in FINISHED
                and run_id not in protected
                and _utc(record.create_timestamp) < trim_before
            ):
                report.add_files(_remove_shard(storage, run_id))
                _finish_trim(instance, run, report)
                trimmed += 1


def _trim_sql(
    instance: dg.DagsterInstance,
    storage: SqlEventLogStorage,
    retention: RunRetention,
    job_names: Sequence[str],
    protected: set[str],
    trim_before: dt.datetime,
    report: PurgeReport,
) -> None:
    """Delete the low-value ``event_logs`` rows of old finished runs not trimmed yet."""
    done = set(_finished_before(instance, job_names, trim_before, tags={TRIMMED_TAG: TRIMMED}))
    todo = _take(
        (r for r in _finished_before(instance, job_names, trim_before) if r not in done),
        protected,
        retention.batch,
    )
    table = SqlEventLogStorageTable
    low_value = sa.or_(
        table.c.dagster_event_type.is_(None),
        table.c.dagster_event_type.not_in(sorted(KEPT_EVENT_TYPES)),
    )
    for chunk in _chunks(todo, _RUNS_PER_QUERY):
        while True:  # one short transaction per batch of rows
            with storage.index_transaction() as conn:
                ids = (
                    conn.execute(
                        sa.select(table.c.id)
                        .where(table.c.run_id.in_(chunk), low_value)
                        .limit(_ROWS_PER_DELETE)
                    )
                    .scalars()
                    .all()
                )
                if ids:
                    conn.execute(sa.delete(table).where(table.c.id.in_(ids)))
            report.event_rows_deleted += len(ids)
            if len(ids) < _ROWS_PER_DELETE:
                break
        for record in instance.get_run_records(dg.RunsFilter(run_ids=list(chunk))):
            _finish_trim(instance, record.dagster_run, report)


def _finish_trim(instance: dg.DagsterInstance, run: dg.DagsterRun, report: PurgeReport) -> None:
    report.add_files(_remove_run_files(instance, run.run_id))
    if run.tags.get(TRIMMED_TAG) != TRIMMED:
        instance.add_run_tags(run.run_id, {TRIMMED_TAG: TRIMMED})
    report.runs_trimmed += 1


def _remove_run_files(instance: dg.DagsterInstance, run_id: str) -> tuple[int, int]:
    """A run's compute logs and the step outputs kept under ``storage/<run id>``."""
    run_dir = Path(instance.storage_directory()) / run_id
    removed = _tree_size(run_dir)
    instance.compute_log_manager.delete_logs(prefix=[run_id])
    shutil.rmtree(run_dir, ignore_errors=True)
    return removed


def _shard_files(storage: SqliteEventLogStorage, run_id: str) -> list[Path]:
    """A run's shard file with its WAL and shared-memory files."""
    base_dir = Path(storage.path_for_shard(run_id)).parent
    return [base_dir / f"{run_id}{suffix}" for suffix in SHARD_SUFFIXES]


def _remove_shard(storage: SqliteEventLogStorage, run_id: str) -> tuple[int, int]:
    files = size = 0
    for path in _shard_files(storage, run_id):
        try:
            length = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            continue
        files += 1
        size += length
    return files, size


def _has_shard(storage: SqliteEventLogStorage, run_id: str) -> bool:
    return any(path.exists() for path in _shard_files(storage, run_id))


def _shard_run_ids(base_dir: Path) -> set[str]:
    """Run ids with a shard file (or its WAL or shared-memory file) in ``base_dir``."""
    run_ids = set()
    for entry in os.scandir(base_dir):
        for suffix in SHARD_SUFFIXES:
            if entry.name.endswith(suffix):
                run_ids.add(entry.name[: -len(suffix)])
                break
    # The index shard and the shard of run-less events (run id "") are not run storage.
    run_ids.discard(INDEX_SHARD_NAME)
    run_ids.discard("")
    return run_ids


def _all_older(base_dir: Path, run_id: str, before: dt.datetime) -> bool:
    for suffix in SHARD_SUFFIXES:
        try:
            if (base_dir / f"{run_id}{suffix}").stat().st_mtime >= before.timestamp():
                return False
        except FileNotFoundError:
            continue
    return True


def _tree_size(path: Path) -> tuple[int, int]:
    files = size = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            try:
                size += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
            files += 1
    return files, size


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dg.op(
    description="Trim finished reconcile runs past the retention age to their asset events; "
    "delete those past the asset history age."
)
def purge_old_runs(context: dg.OpExecutionContext, retention: RunRetention) -> dg.Output[dict]:
    report = purge_runs(
        context.instance, retention, [JOB_NAME, "__ASSET_JOB", "purge_old_runs_job"]
    )
    context.log.info(
        f"trimmed {report.runs_trimmed} runs older than {retention.max_age_hours:g} h, deleted "
        f"{report.runs_deleted} older than {retention.asset_history_days:g} days; removed "
        f"{report.files_removed} files ({report.bytes_freed} bytes)"
    )
    figures = asdict(report)
    return dg.Output(figures, metadata=dict(figures))


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
    description="Hourly: trim reconcile runs past the retention age, delete those past the "
    "asset history age.",
)
