"""Simulated days of runs for the retention tests: runs added with storage calls and a backdated
creation time (``add_historical_run``), each with a few representative events (run and step
events, a log line, an asset materialization, an asset check evaluation) stamped at that time and
a step output under ``storage/<run id>``; then ``purge_runs`` with the same ``now`` and what it
must leave, on SQLite and on PostgreSQL storage."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluation
from dagster._core.events import (
    DagsterEvent,
    DagsterEventType,
    StepMaterializationData,
    StepSuccessData,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from reconcile_pipeline.defs.retention.purge import (
    KEPT_EVENT_TYPES,
    TRIMMED,
    TRIMMED_TAG,
    PurgeReport,
    RunRetention,
    purge_runs,
)
from reconcile_pipeline_tests.support.databases import psycopg2_url

JOB = "reconcile_job"
ASSET = dg.AssetKey("workspace_snapshot")
CHECK = dg.AssetCheckKey(ASSET, "table_matches_authoritative")
DAY = dt.timedelta(days=1)
# The simulated day ends 12 h ago: half of it is inside the 24 h retention window.
NEWEST_AGE = dt.timedelta(hours=12, seconds=30)
ANCIENT_AGES = [dt.timedelta(days=d) for d in (31, 35, 40)]  # past the 30 days of asset history


@contextlib.contextmanager
def _alembic_scripts_read_once() -> Iterator[None]:
    """Dagster reads every alembic migration script of the event log again for each new SQLite
    shard it creates (``_initdb``: the revision check, then the stamp), about half the cost of
    adding a run here. Meanwhile the script directory is read once and reused: the shards are
    created, checked and stamped exactly as before."""
    original = ScriptDirectory.__dict__["from_config"]
    loaded: dict[str, ScriptDirectory] = {}

    def from_config(cls, config):
        location = config.get_main_option("script_location")
        if location not in loaded:
            loaded[location] = original.__func__(cls, config)
        return loaded[location]

    ScriptDirectory.from_config = classmethod(from_config)
    try:
        yield
    finally:
        ScriptDirectory.from_config = original


def _event(run_id: str, at: float, kind: DagsterEventType | None, data=None) -> EventLogEntry:
    dagster_event = None
    if kind is not None:
        step = kind.value.startswith(("STEP_", "ASSET_"))
        dagster_event = DagsterEvent(
            event_type_value=kind.value,
            job_name=JOB,
            step_key="reconcile_snapshots" if step else None,
            event_specific_data=data,
        )
    return EventLogEntry(
        error_info=None,
        level=20,
        user_message="" if kind else "compared 30 workspaces, 0 drifted",
        run_id=run_id,
        timestamp=at,
        step_key=None,
        job_name=JOB,
        dagster_event=dagster_event,
    )


def add_run(instance: dg.DagsterInstance, created: dt.datetime, n: int) -> str:
    run = dg.DagsterRun(job_name=JOB, status=dg.DagsterRunStatus.SUCCESS)
    instance.run_storage.add_historical_run(run, created)
    at = created.timestamp()
    materialization = dg.AssetMaterialization(ASSET, metadata={"tick": n})
    evaluation = AssetCheckEvaluation(asset_key=ASSET, check_name=CHECK.name, passed=True)
    for offset, (kind, data) in enumerate(
        [
            (DagsterEventType.RUN_START, None),
            (DagsterEventType.STEP_START, None),
            (None, None),  # a log line
            (DagsterEventType.ASSET_MATERIALIZATION, StepMaterializationData(materialization)),
            (DagsterEventType.ASSET_CHECK_EVALUATION, evaluation),
            (DagsterEventType.STEP_SUCCESS, StepSuccessData(duration_ms=900.0)),
            (DagsterEventType.RUN_SUCCESS, None),
        ]
    ):
        instance.event_log_storage.store_event(_event(run.run_id, at + offset, kind, data))
    # A step output, as the IO manager keeps it under storage/<run id>.
    output = Path(instance.storage_directory()) / run.run_id / "reconcile_snapshots" / "result"
    output.parent.mkdir(parents=True)
    output.write_bytes(b"\0" * 4096)
    return run.run_id


@dataclass
class Day:
    now: dt.datetime
    recent: list[str] = field(default_factory=list)  # inside the retention window
    old: list[str] = field(default_factory=list)  # past it, inside the asset history
    ancient: list[str] = field(default_factory=list)  # past the asset history

    @property
    def day(self) -> list[str]:
        return self.recent + self.old


@contextlib.contextmanager
def _writer(instance: dg.DagsterInstance) -> Iterator[dg.DagsterInstance]:
    """The instance a day is written through. SQLite: ``instance`` itself, each new shard created
    with the alembic scripts read once. PostgreSQL: a second instance on the same storage, in the
    mode Dagster's webserver puts its instance in (``optimize_for_webserver``, with the
    webserver's defaults: pooled connections) instead of one new connection per event. The rows
    written are the same either way; the purge under test runs on ``instance`` as configured."""
    if isinstance(instance.event_log_storage, SqliteEventLogStorage):
        with _alembic_scripts_read_once():
            yield instance
        return
    writer = dg.DagsterInstance.from_ref(instance.get_ref())
    try:
        writer.optimize_for_webserver(statement_timeout=15_000, pool_recycle=3600, max_overflow=20)
        yield writer
    finally:
        writer.dispose()


def simulate_day(instance: dg.DagsterInstance, ticks: int) -> Day:
    """``ticks`` runs evenly over one day (newest 12 h old, oldest 36 h), plus a few runs past
    the asset history."""
    every = DAY / ticks
    day = Day(now=dt.datetime.now(dt.UTC))
    ages = sorted([*ANCIENT_AGES, *(NEWEST_AGE + n * every for n in range(ticks))], reverse=True)
    with _writer(instance) as writer:
        for n, age in enumerate(ages):  # oldest first, as they were launched
            run_id = add_run(writer, day.now - age, n)
            if age > 2 * DAY:
                day.ancient.append(run_id)
            else:
                (day.recent if age < DAY else day.old).append(run_id)
    return day


# ---- what is left ---------------------------------------------------------------------------------


def _shard_dir(instance: dg.DagsterInstance) -> Path:
    storage = instance.event_log_storage
    assert isinstance(storage, SqliteEventLogStorage)
    return Path(storage.path_for_shard("index")).parent


def shards(instance: dg.DagsterInstance) -> set[str]:
    return {p.name.split(".db")[0] for p in _shard_dir(instance).iterdir() if p.name != "index.db"}


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_dirs(instance: dg.DagsterInstance) -> set[str]:
    return {p.name for p in Path(instance.storage_directory()).iterdir() if p.is_dir()}


def _event_rows(pg_url: str) -> dict[str, int]:
    """event_logs rows by kind (PostgreSQL)."""
    engine = sa.create_engine(psycopg2_url(pg_url), poolclass=sa.pool.NullPool)
    kept = ", ".join(f"'{t}'" for t in sorted(KEPT_EVENT_TYPES))
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT COUNT(*) AS total, "
                f"COUNT(*) FILTER (WHERE dagster_event_type IN ({kept})) AS kept "
                "FROM event_logs"
            )
        ).one()
    engine.dispose()
    return {"total": row.total, "kept": row.kept, "low_value": row.total - row.kept}


def _assert_history_kept(instance: dg.DagsterInstance, day: Day) -> None:
    """The asset and check history covers the whole simulated day and nothing older is left; the
    trimmed runs keep their record and status."""
    materializations = instance.fetch_materializations(ASSET, limit=10_000).records
    assert sorted(r.run_id for r in materializations) == sorted(day.day)
    checks = instance.event_log_storage.get_asset_check_execution_history(CHECK, limit=10_000)
    assert sorted(c.run_id for c in checks) == sorted(day.day)
    successes = instance.fetch_run_status_changes(
        DagsterEventType.RUN_SUCCESS, limit=10_000
    ).records
    assert sorted(r.run_id for r in successes) == sorted(day.day)
    for run_id in day.ancient:
        assert instance.get_run_by_id(run_id) is None
    for run_id in day.old:
        run = instance.get_run_by_id(run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert run.tags.get(TRIMMED_TAG) == TRIMMED
    assert TRIMMED_TAG not in instance.get_run_by_id(day.recent[-1]).tags


def _assert_files(instance: dg.DagsterInstance, day: Day) -> None:
    # Compute logs and step outputs are kept only for the runs inside the retention window.
    assert run_dirs(instance) == set(day.recent)


def _report(label: str, **figures) -> None:
    print(f"{label}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


# ---- SQLite ---------------------------------------------------------------------------------------


def check_sqlite_day(instance: dg.DagsterInstance, ticks: int, retention: RunRetention) -> None:
    """A simulated day of ``ticks`` runs on SQLite storage, purged: old runs trimmed to their asset
    history, ancient ones deleted, an orphan shard swept, no shard file outliving its run."""
    day = simulate_day(instance, ticks)
    assert retention.keep_latest <= len(day.recent)
    shard_dir = _shard_dir(instance)
    history = shard_dir.parent  # history/runs.db (run storage) and history/runs/ (event logs)
    assert shards(instance) == set(day.day + day.ancient)
    # A run deleted by hand (e.g. from the UI) leaves its shard file behind: an orphan.
    orphan = add_run(instance, day.now - dt.timedelta(hours=2), -99)
    instance.delete_run(orphan)
    assert orphan in shards(instance)
    left_by_delete_run = sum(p.stat().st_size for p in shard_dir.glob(f"{orphan}.db*"))
    old_time = time.time() - 2 * 3600
    for path in shard_dir.glob(f"{orphan}.db*"):
        os.utime(path, (old_time, old_time))

    def figures() -> dict[str, float]:
        index = sum(p.stat().st_size for p in shard_dir.glob("index.db*"))
        return {
            "shard_files": len(shards(instance)),
            "shards_mb": round((_bytes(shard_dir) - index) / 1e6, 2),
            "index_mb": round(index / 1e6, 2),
            "history_mb": round(_bytes(history) / 1e6, 2),
        }

    before = figures()
    started = time.perf_counter()
    report = purge_runs(instance, retention, [JOB], now=day.now)
    took = time.perf_counter() - started

    assert report.runs_deleted == len(day.ancient)
    assert report.runs_trimmed == len(day.old)
    assert report.orphan_shards_removed == 1
    # Exactly the runs inside the retention window keep a shard file: none outlives its run.
    assert shards(instance) == set(day.recent)
    assert report.bytes_freed > 0 and report.files_removed >= len(day.old) + len(day.ancient)
    _assert_history_kept(instance, day)
    _assert_files(instance, day)
    # The low-value events of a trimmed run are gone (its shard file with them); a recent run
    # still has them all. Read as another process (the webserver) would.
    reader = dg.DagsterInstance.from_ref(instance.get_ref())
    assert reader.all_logs(day.recent[0])[2].dagster_event is None  # the log line
    assert reader.all_logs(day.old[0]) == []
    # ...but reading a trimmed run's logs recreates an empty shard: the next tick removes it.
    assert day.old[0] in shards(instance)
    again = purge_runs(instance, retention, [JOB], now=day.now)
    assert (again.runs_trimmed, again.runs_deleted) == (1, 0)
    assert shards(instance) == set(day.recent)
    assert purge_runs(instance, retention, [JOB], now=day.now) == PurgeReport()

    after = figures()
    # Bounded: one shard per run inside the window, each no bigger than before the purge.
    per_shard_mb = before["shards_mb"] / before["shard_files"]
    assert after["shards_mb"] <= len(day.recent) * per_shard_mb + 0.01
    _report(
        f"sqlite, {ticks} runs a day",
        before=before,
        after=after,
        shard_kb=round(per_shard_mb * 1000),
        shard_left_by_delete_run_kb=left_by_delete_run // 1000,
        purge_s=round(took, 2),
        report=report,
    )


def check_pg_day(
    instance: dg.DagsterInstance, pg_url: str, ticks: int, retention: RunRetention
) -> None:
    """A simulated day of ``ticks`` runs on PostgreSQL storage (``pg_url``), purged: the low-value
    ``event_logs`` rows of old runs deleted, ancient runs deleted, the asset history kept."""
    day = simulate_day(instance, ticks)
    assert retention.keep_latest <= len(day.recent)
    before = _event_rows(pg_url)
    assert before["total"] == 7 * (ticks + len(ANCIENT_AGES))

    started = time.perf_counter()
    report = purge_runs(instance, retention, [JOB], now=day.now)
    took = time.perf_counter() - started

    assert report.runs_deleted == len(day.ancient)
    assert report.runs_trimmed == len(day.old)
    # 3 low-value events a run (step start, log line, step success) for each trimmed run.
    assert report.event_rows_deleted == 3 * len(day.old)
    after = _event_rows(pg_url)
    assert after == {
        "total": before["total"] - 7 * len(day.ancient) - 3 * len(day.old),
        "kept": 4 * len(day.day),
        "low_value": 3 * len(day.recent),
    }
    _assert_history_kept(instance, day)
    _assert_files(instance, day)
    old_logs = instance.all_logs(day.old[0])
    assert {e.dagster_event_type.value for e in old_logs if e.dagster_event} <= KEPT_EVENT_TYPES
    assert all(e.dagster_event is not None for e in old_logs)  # the log line is gone
    assert len(instance.all_logs(day.recent[0])) == 7
    assert purge_runs(instance, retention, [JOB], now=day.now) == PurgeReport()
    _report(
        f"postgres, {ticks} runs a day",
        event_rows_before=before["total"],
        event_rows_after=after["total"],
        purge_s=round(took, 2),
        report=report,
    )
