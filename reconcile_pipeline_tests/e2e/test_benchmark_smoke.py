"""The benchmark script runs end to end on a tiny fleet, so it cannot rot."""

import json
import os
import re
import subprocess
import sys

import pytest
import sqlalchemy as sa

from reconcile_pipeline_tests.support.databases import make_engine
from reconcile_pipeline_tests.support.paths import REPO

PIPELINES = ("pipeline", "pipeline_unchanged", "pipeline_pg", "pipeline_pg_unchanged")


@pytest.mark.slow
def test_benchmark_smoke(tmp_path, pg_admin_url):
    """Both instances: the embedded SQLite one and the PostgreSQL one, in a throwaway database
    that the script drops again."""
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "benchmark.py"),
            "--sizes",
            "12,24",
            "--root",
            str(tmp_path),
            "--markdown",
            str(tmp_path / "BENCH.md"),
            "--postgres",
            pg_admin_url,
            "--repeat",
            "1",
            "--daemon-sizes",
            "12",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["size"] for r in results] == [12, 24]
    for r in results:
        for name in PIPELINES:
            assert r[name]["status"] == "SUCCESS", name
            assert r[name]["steps"] == r["pipeline"]["steps"], name
            phases = dict(r[name]["phases"])
            assert phases["reconcile_chain.compute_git_shard"] > 0, phases
            assert phases["whole run"] >= max(v for k, v in phases.items() if k != "whole run")
        assert r["pipeline"]["rows_written"] == r["pipeline_pg"]["rows_written"]
        assert r["pipeline"]["rows_written"] == r["floor"]["rows"] > 0
        assert r["pipeline_unchanged"]["rows_written"] == r["pipeline_pg_unchanged"]["rows_written"]
        assert r["pipeline_unchanged"]["rows_written"] == 0
        # the executor's two modes, forced, on the steady table
        for mode in ("in_process", "multiprocess"):
            assert r[f"pipeline_{mode}"]["executor_mode"] == mode
            assert r[f"pipeline_{mode}"]["rows_written"] == 0
        # the seed's sequence costs about twice the git processes of the floor and the pipeline
        assert r["seed"]["git_processes"] >= 1.8 * r["floor"]["git_processes"]
        assert r["pipeline"]["git_processes"] <= 2 * r["pipeline"]["worktrees"] + 5
        for method in ("floor", "seed", *PIPELINES):
            assert r[method]["wall_s_runs"] == [r[method]["wall_s"]], method
            assert r[method]["wall_s"] > 0 and r[method]["peak_rss_mib"] > 0
            tree = r[method]["peak_tree_pss_mib"]
            assert tree is None or tree > 0, method
    # The daemon's path at 12: a sensor tick, the queue, a successful run on the steady table.
    for name in ("pipeline_daemon", "pipeline_pg_daemon"):
        tick = results[0][name]
        assert tick["status"] == "SUCCESS" and tick["rows_written"] == 0, tick
        assert tick["wall_s"] >= tick["run_s"] > 0 and tick["cpu_s"] > 0, tick
        assert name not in results[1]
    table = (tmp_path / "BENCH.md").read_text()
    assert "| 12 | pipeline_daemon |" in table
    assert "pipeline / floor" in table and "| 24 | pipeline_pg_unchanged |" in table
    assert "| reconcile_chain.compute_git_shard |" in table
    # The throwaway instance databases are gone.
    engine = make_engine(pg_admin_url)
    with engine.connect() as conn:
        left = conn.execute(
            sa.text("SELECT datname FROM pg_database WHERE datname = ANY(:names)"),
            {"names": [r["pg_database"] for r in results]},
        ).all()
    engine.dispose()
    assert left == []

    # The tick cost script, on the instance the benchmark left at 24 workspaces.
    home = tmp_path / "n24" / "dagster_home"
    cost = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "tick_cost.py"), "--top", "50"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        cwd=tmp_path,
    )
    assert cost.returncode == 0, cost.stdout[-3000:] + cost.stderr[-3000:]
    stages = dict(re.findall(r"^\| ([^|]+?) \| (-?[\d.]+) \|$", cost.stdout, re.M))
    whole = float(stages.pop("whole command, this process"))
    run = next(float(v) for k, v in stages.items() if k.startswith("the run, in_process"))
    assert 0 < run < whole and float(stages["import Dagster"]) > 0, stages
    assert abs(sum(float(v) for v in stages.values()) - whole) < 0.05, stages
    total = int(re.search(r"event-log connections (\d+)", cost.stdout).group(1))
    rows = re.findall(r"^\| (\d+) \| [\d.]+ \| [\d.]+ \| (index|run): (.+) \|$", cost.stdout, re.M)
    assert 0 < sum(int(n) for n, _, _ in rows) <= total, cost.stdout
    # every materialization is written to the run's shard and to the index
    assert any(shard == "run" and "store_event" in by for _, shard, by in rows), cost.stdout
    assert any(shard == "index" and "store_event" in by for _, shard, by in rows), cost.stdout
