"""Retention end to end: a simulated day of 60 s ticks (1,440 runs, as the sensor makes them) purged
on SQLite and on PostgreSQL storage, and the purge job run by ``dagster job execute`` on the
production instance (deploy/postgres/dagster.yaml) after real ``reconcile-pipeline reconcile``
runs. The half-hourly day and the purge's finer points are ``integration/test_retention.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconcile_pipeline.defs.retention.purge import RunRetention
from reconcile_pipeline_tests.support.databases import (
    create_pg_database,
    drop_pg_database,
    fetch_rows,
    production_home,
)
from reconcile_pipeline_tests.support.processes import (
    BIN,
    pipeline_env,
    require_tools,
    run_command,
)
from reconcile_pipeline_tests.support.retention import check_pg_day, check_sqlite_day


@pytest.mark.slow
@pytest.mark.parametrize(
    "storage", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_a_day_of_60s_ticks(storage, request):
    """1,440 runs (each a SQLite shard of its own, hence slow)."""
    if storage == "sqlite":
        check_sqlite_day(request.getfixturevalue("instance"), 1440, RunRetention())
    else:
        pg_url = request.getfixturevalue("pg_url")
        check_pg_day(request.getfixturevalue("pg_instance"), pg_url, 1440, RunRetention())


def _purge(env: dict[str, str], keep: int) -> None:
    """The retention job as the hourly schedule runs it, with both ages 0 (runs are deleted
    entirely) and ``keep`` newest runs."""
    run_command(
        [str(BIN / "dagster"), "job", "execute", "-m", "reconcile_pipeline.definitions"]
        + ["-j", "purge_old_runs_job"],
        {
            **env,
            "RECONCILE_RUN_RETENTION_HOURS": "0",
            "RECONCILE_ASSET_HISTORY_DAYS": "0",
            "RECONCILE_RUN_RETENTION_KEEP": str(keep),
        },
    )


@pytest.mark.slow
@pytest.mark.postgres
def test_run_retention_on_postgres_removes_old_runs_with_their_events_and_files(
    tmp_path: Path, pg_admin_url: str
) -> None:
    """At a 60 s cadence retention must bound everything a run leaves behind: its rows in the
    PostgreSQL instance DB (runs, event_logs) and its files under DAGSTER_HOME/storage/<run id>
    (compute logs, the outputs of the git shard ops). And RECONCILE_RUN_RETENTION_KEEP=0 must
    mean "keep none", not "keep all"."""
    require_tools("dagster", "reconcile-pipeline")
    instance_url = create_pg_database("rp_e2e_retention")
    try:
        home = tmp_path / "dagster_home"
        env = pipeline_env(home, **production_home(home, instance_url))
        run_command([str(BIN / "reconcile-pipeline"), "demo", "--workspaces", "30"], env)
        run_command([str(BIN / "dagster"), "instance", "migrate"], env)
        run_ids = []
        for _ in range(2):
            out = run_command([str(BIN / "reconcile-pipeline"), "reconcile", "--json"], env, 600)
            summary = json.loads(out.stdout.strip().splitlines()[-1])
            assert summary["status"] == "SUCCESS", summary
            run_ids.append(summary["run_id"])
        old, new = run_ids
        storage = home / "storage"
        for run_id in run_ids:
            assert (storage / run_id).is_dir(), sorted(p.name for p in storage.iterdir())

        def rows(run_id: str) -> dict[str, int]:
            return {
                table: fetch_rows(
                    instance_url,
                    f"SELECT COUNT(*) AS n FROM {table} WHERE run_id = :run_id",
                    run_id=run_id,
                )[0]["n"]
                for table in ("runs", "event_logs")
            }

        assert all(rows(old).values()) and all(rows(new).values())
        problems = []

        _purge(env, keep=1)  # the older run goes, the newest stays
        if rows(old) != {"runs": 0, "event_logs": 0}:
            problems.append(f"KEEP=1: old run {old} still in the instance DB: {rows(old)}")
        if not all(rows(new).values()):
            problems.append(f"KEEP=1: newest run {new} was deleted: {rows(new)}")
        if (storage / old).exists():
            left = sorted(str(p.relative_to(storage)) for p in (storage / old).iterdir())
            problems.append(
                f"KEEP=1: run {old} was purged but DAGSTER_HOME/storage/{old}/ is left on "
                f"disk: {left}"
            )

        _purge(env, keep=0)  # keep none
        if rows(new) != {"runs": 0, "event_logs": 0}:
            problems.append(f"KEEP=0: run {new} is older than 0 h but was kept: {rows(new)}")
        assert not problems, "retention gaps:\n" + "\n".join(problems)
    finally:
        drop_pg_database(instance_url)
