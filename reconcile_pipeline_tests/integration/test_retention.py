"""Run retention, against real instances (SQLite and PostgreSQL storage).

Finished runs past RECONCILE_RUN_RETENTION_HOURS are trimmed to their asset events (SQLite: the
run's shard file goes; PostgreSQL: its low-value ``event_logs`` rows go), runs past
RECONCILE_ASSET_HISTORY_DAYS are deleted entirely, and no shard file outlives its run.

The simulated days (``support.retention``) are built with storage calls, not pipeline runs: each
run is added with a backdated creation time and gets a few representative events stamped at that
time. ``purge_runs`` is given the same ``now``. A day of 60 s ticks is ``e2e/test_retention.py``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pytest

from reconcile_pipeline.definitions import defs
from reconcile_pipeline.defs.retention.purge import (
    TRIMMED_TAG,
    PurgeReport,
    RunRetention,
    purge_runs,
)
from reconcile_pipeline_tests.support.retention import (
    DAY,
    check_pg_day,
    check_sqlite_day,
    run_dirs,
    shards,
)


@dg.asset
def tick() -> int:
    return 1


def test_sqlite_trims_old_runs_to_their_asset_history_and_leaves_no_shard_behind(instance):
    """A day of half-hourly ticks (the 60 s day is ``e2e/test_retention.py``)."""
    check_sqlite_day(instance, ticks=48, retention=RunRetention(keep_latest=10))


@pytest.mark.postgres
def test_postgres_trims_old_runs_to_their_asset_history(pg_instance, pg_url):
    check_pg_day(pg_instance, pg_url, ticks=48, retention=RunRetention(keep_latest=10))


# ---- real runs ------------------------------------------------------------------------------------


def test_real_runs_are_trimmed_then_deleted_and_the_newest_kept(instance):
    run_ids = [dg.materialize([tick], instance=instance).run_id for _ in range(5)]
    job = instance.get_run_by_id(run_ids[0]).job_name
    later = dt.datetime.now(dt.UTC) + 2 * DAY
    # Nothing is older than a day: the default policy touches nothing.
    assert purge_runs(instance, RunRetention(), [job]) == PurgeReport()
    assert shards(instance) == set(run_ids)

    # Two days on: trimmed to their asset history, the newest 2 untouched.
    report = purge_runs(instance, RunRetention(keep_latest=2), [job], now=later)
    assert (report.runs_trimmed, report.runs_deleted) == (3, 0)
    assert shards(instance) == set(run_ids[-2:])
    assert instance.all_logs(run_ids[-1]) != []
    materializations = instance.fetch_materializations(tick.key, limit=100).records
    assert sorted(r.run_id for r in materializations) == sorted(run_ids)
    assert not (Path(instance.storage_directory()) / run_ids[0]).exists()

    # Past the asset history, deleted entirely; KEEP=0 keeps none.
    gone = RunRetention(asset_history_days=1, keep_latest=0)
    report = purge_runs(instance, gone, [job], now=later)
    assert report.runs_deleted == 5
    assert instance.get_run_ids(dg.RunsFilter(job_name=job)) == []
    assert shards(instance) == set()
    assert instance.fetch_materializations(tick.key, limit=100).records == []
    # Nothing of theirs is left: their tags (not cascaded on SQLite) included.
    assert instance.get_run_tags(tag_keys=[TRIMMED_TAG]) == []
    assert run_dirs(instance) <= {"tick"}  # the asset's own output, not a run's


def test_retention_schedule_is_on_by_default():
    schedule = defs.resolve_schedule_def("purge_old_runs_job_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.cron_schedule == "17 * * * *"


def test_the_purge_job_reports_what_it_did(instance):
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
