"""Run retention deletes old finished runs and their event logs, keeping the newest."""

import dagster as dg

from reconcile_pipeline.definitions import defs
from reconcile_pipeline.retention import RunRetention, purge_runs


@dg.asset
def tick() -> int:
    return 1


def test_purge_runs_deletes_old_runs_and_their_events(tmp_path):
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        run_ids = [dg.materialize([tick], instance=instance).run_id for _ in range(5)]
        job = instance.get_run_by_id(run_ids[0]).job_name
        deleted = purge_runs(instance, RunRetention(max_age_hours=0, keep_latest=2), [job])
        assert deleted == 3
        left = instance.get_run_ids(dg.RunsFilter(job_name=job))
        assert sorted(left) == sorted(run_ids[-2:])
        assert instance.all_logs(run_ids[0]) == []
        assert instance.all_logs(run_ids[-1]) != []
        # Nothing is younger than a day: the default policy deletes nothing.
        assert purge_runs(instance, RunRetention(), [job]) == 0


def test_retention_schedule_is_on_by_default():
    schedule = defs.get_schedule_def("purge_old_runs_job_schedule")
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert schedule.cron_schedule == "17 * * * *"
