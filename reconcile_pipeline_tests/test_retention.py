"""Run retention, against real instances (SQLite and PostgreSQL storage).

Finished runs past RECONCILE_RUN_RETENTION_HOURS are trimmed to their asset events (SQLite: the
run's shard file goes; PostgreSQL: its low-value ``event_logs`` rows go), runs past
RECONCILE_ASSET_HISTORY_DAYS are deleted entirely, and no shard file outlives its run.

The simulated days are built with storage calls, not pipeline runs: each run is added with a
backdated creation time (``add_historical_run``) and gets a few representative events (run and
step events, a log line, an asset materialization, an asset check evaluation) stamped at that
time. ``purge_runs`` is given the same ``now``.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluation
from dagster._core.events import (
    DagsterEvent,
    DagsterEventType,
    StepMaterializationData,
    StepSuccessData,
)
from dagster._core.events.log import EventLogEntry
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

from reconcile_pipeline.definitions import defs
from reconcile_pipeline.defs.retention.purge import (
    KEPT_EVENT_TYPES,
    TRIMMED,
    TRIMMED_TAG,
    PurgeReport,
    RunRetention,
    purge_runs,
)

JOB = "reconcile_job"
ASSET = dg.AssetKey("workspace_snapshot")
CHECK = dg.AssetCheckKey(ASSET, "table_matches_authoritative")
DAY = dt.timedelta(days=1)
# The simulated day ends 12 h ago: half of it is inside the 24 h retention window.
NEWEST_AGE = dt.timedelta(hours=12, seconds=30)
ANCIENT_AGES = [dt.timedelta(days=d) for d in (31, 35, 40)]  # past the 30 days of asset history


@dg.asset
def tick() -> int:
    return 1


# ---- instances ------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_instance(tmp_path) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        assert isinstance(instance.event_log_storage, SqliteEventLogStorage)
        yield instance


def _psycopg2(url: str) -> str:
    """``url`` with the driver dagster-postgres is installed with (psycopg2)."""
    parsed = sa.make_url(url)
    return parsed.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


@pytest.fixture
def pg_instance(tmp_path, pg_url) -> Iterator[dg.DagsterInstance]:
    overrides = {"storage": {"postgres": {"postgres_url": _psycopg2(pg_url)}}}
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides=overrides) as instance:
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        yield instance


# ---- the simulated day ----------------------------------------------------------------------------


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


def _add_run(instance: dg.DagsterInstance, created: dt.datetime, n: int) -> str:
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


def simulate_day(instance: dg.DagsterInstance, ticks: int) -> Day:
    """``ticks`` runs evenly over one day (newest 12 h old, oldest 36 h), plus a few runs past
    the asset history."""
    every = DAY / ticks
    day = Day(now=dt.datetime.now(dt.UTC))
    ages = sorted([*ANCIENT_AGES, *(NEWEST_AGE + n * every for n in range(ticks))], reverse=True)
    for n, age in enumerate(ages):  # oldest first, as they were launched
        run_id = _add_run(instance, day.now - age, n)
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


def _shards(instance: dg.DagsterInstance) -> set[str]:
    return {p.name.split(".db")[0] for p in _shard_dir(instance).iterdir() if p.name != "index.db"}


def _bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _run_dirs(instance: dg.DagsterInstance) -> set[str]:
    return {p.name for p in Path(instance.storage_directory()).iterdir() if p.is_dir()}


def _event_rows(pg_url: str) -> dict[str, int]:
    """event_logs rows by kind (PostgreSQL)."""
    engine = sa.create_engine(_psycopg2(pg_url), poolclass=sa.pool.NullPool)
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
    assert _run_dirs(instance) == set(day.recent)


def _report(label: str, **figures) -> None:
    print(f"{label}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


# ---- SQLite ---------------------------------------------------------------------------------------


def _check_sqlite_day(instance: dg.DagsterInstance, ticks: int, retention: RunRetention) -> None:
    day = simulate_day(instance, ticks)
    assert retention.keep_latest <= len(day.recent)
    shard_dir = _shard_dir(instance)
    history = shard_dir.parent  # history/runs.db (run storage) and history/runs/ (event logs)
    assert _shards(instance) == set(day.day + day.ancient)
    # A run deleted by hand (e.g. from the UI) leaves its shard file behind: an orphan.
    orphan = _add_run(instance, day.now - dt.timedelta(hours=2), -99)
    instance.delete_run(orphan)
    assert orphan in _shards(instance)
    left_by_delete_run = sum(p.stat().st_size for p in shard_dir.glob(f"{orphan}.db*"))
    old_time = time.time() - 2 * 3600
    for path in shard_dir.glob(f"{orphan}.db*"):
        os.utime(path, (old_time, old_time))

    def figures() -> dict[str, float]:
        index = sum(p.stat().st_size for p in shard_dir.glob("index.db*"))
        return {
            "shard_files": len(_shards(instance)),
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
    assert _shards(instance) == set(day.recent)
    assert report.bytes_freed > 0 and report.files_removed >= len(day.old) + len(day.ancient)
    _assert_history_kept(instance, day)
    _assert_files(instance, day)
    # The low-value events of a trimmed run are gone (its shard file with them); a recent run
    # still has them all. Read as another process (the webserver) would.
    reader = dg.DagsterInstance.from_ref(instance.get_ref())
    assert reader.all_logs(day.recent[0])[2].dagster_event is None  # the log line
    assert reader.all_logs(day.old[0]) == []
    # ...but reading a trimmed run's logs recreates an empty shard: the next tick removes it.
    assert day.old[0] in _shards(instance)
    again = purge_runs(instance, retention, [JOB], now=day.now)
    assert (again.runs_trimmed, again.runs_deleted) == (1, 0)
    assert _shards(instance) == set(day.recent)
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


def test_sqlite_trims_old_runs_to_their_asset_history_and_leaves_no_shard_behind(
    sqlite_instance,
):
    """A day of half-hourly ticks (the 60 s day is ``test_a_day_of_60s_ticks``)."""
    _check_sqlite_day(sqlite_instance, ticks=48, retention=RunRetention(keep_latest=10))


# ---- PostgreSQL -----------------------------------------------------------------------------------


def _check_pg_day(
    instance: dg.DagsterInstance, pg_url: str, ticks: int, retention: RunRetention
) -> None:
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


@pytest.mark.postgres
def test_postgres_trims_old_runs_to_their_asset_history(pg_instance, pg_url):
    _check_pg_day(pg_instance, pg_url, ticks=48, retention=RunRetention(keep_latest=10))


# ---- a full day of 60 s ticks ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "storage", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_day_of_60s_ticks(storage, request):
    """1,440 runs (a SQLite shard costs ~0.1 s to create, hence slow)."""
    if storage == "sqlite":
        _check_sqlite_day(request.getfixturevalue("sqlite_instance"), 1440, RunRetention())
    else:
        pg_url = request.getfixturevalue("pg_url")
        _check_pg_day(request.getfixturevalue("pg_instance"), pg_url, 1440, RunRetention())


# ---- real runs ------------------------------------------------------------------------------------


def test_real_runs_are_trimmed_then_deleted_and_the_newest_kept(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        run_ids = [dg.materialize([tick], instance=instance).run_id for _ in range(5)]
        job = instance.get_run_by_id(run_ids[0]).job_name
        later = dt.datetime.now(dt.UTC) + 2 * DAY
        # Nothing is older than a day: the default policy touches nothing.
        assert purge_runs(instance, RunRetention(), [job]) == PurgeReport()
        assert _shards(instance) == set(run_ids)

        # Two days on: trimmed to their asset history, the newest 2 untouched.
        report = purge_runs(instance, RunRetention(keep_latest=2), [job], now=later)
        assert (report.runs_trimmed, report.runs_deleted) == (3, 0)
        assert _shards(instance) == set(run_ids[-2:])
        assert instance.all_logs(run_ids[-1]) != []
        materializations = instance.fetch_materializations(tick.key, limit=100).records
        assert sorted(r.run_id for r in materializations) == sorted(run_ids)
        assert not (Path(instance.storage_directory()) / run_ids[0]).exists()

        # Past the asset history, deleted entirely; KEEP=0 keeps none.
        gone = RunRetention(asset_history_days=1, keep_latest=0)
        report = purge_runs(instance, gone, [job], now=later)
        assert report.runs_deleted == 5
        assert instance.get_run_ids(dg.RunsFilter(job_name=job)) == []
        assert _shards(instance) == set()
        assert instance.fetch_materializations(tick.key, limit=100).records == []
        # Nothing of theirs is left: their tags (not cascaded on SQLite) included.
        assert instance.get_run_tags(tag_keys=[TRIMMED_TAG]) == []
        assert _run_dirs(instance) <= {"tick"}  # the asset's own output, not a run's


def test_retention_schedule_is_on_by_default():
    schedule = defs.resolve_schedule_def("purge_old_runs_job_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.cron_schedule == "17 * * * *"


def test_the_purge_job_reports_what_it_did(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        result = defs.get_job_def("purge_old_runs_job").execute_in_process(instance=instance)
        assert result.success
        assert result.output_for_node("purge_old_runs") == {
            "runs_trimmed": 0,
            "runs_deleted": 0,
            "event_rows_deleted": 0,
            "orphan_shards_removed": 0,
            "files_removed": 0,
            "bytes_freed": 0,
        }
