"""Helpers for the end-to-end pipeline tests (test_pipeline_runs.py): real Dagster runs, no mocks.

Two halves:

- **Running the pipeline.** Resources are read from the environment when
  ``reconcile_pipeline.definitions`` is imported, and the multiprocess executor's forkserver keeps
  the environment (and the preloaded definitions) of the process that started it. So every run
  happens in a fresh subprocess with its own environment:
  ``python -m reconcile_pipeline_tests.pipeline_support execute ...`` calls
  ``dg.execute_job(dg.reconstructable(reconcile_job_def), instance=DagsterInstance.get(), tags=...)``
  and prints one JSON line (run id, success, wall time).
- **Expectations computed independently of the product.** ``expected_snapshots`` reads the app DB
  with plain ``sqlite3``, the session runtime JSON with ``json`` and runs plain ``git`` through
  ``subprocess``, following DESIGN.md; ``derive`` re-implements DESIGN's derived fields. Nothing
  there imports ``reconcile_pipeline``; only the job factories (the code under test) do.

This module is imported by every step process of a run (the reconstructable job points here), so
it imports nothing heavy at module level besides dagster, which the steps load anyway.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import dagster as dg

MAIN = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PROJECTS = "projects"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
SHARD_STEP_PREFIX = "git_stats.compute_git_shard"

# The chain's assets (DESIGN's lineage, spelled out on purpose).
ASSET_NAMES = (
    "workspace_extract",
    "git_stats",
    "authoritative_snapshots",
    "snapshot_drift",
    "workspace_snapshot",
)
# The checks the run must evaluate (names from DESIGN / the UI, spelled out on purpose).
CHECK_NAMES = {
    "git_stats_coverage",
    "drift_rate_below_threshold",
    "no_stale_entries",
    "table_matches_authoritative",
}


# --------------------------------------------------------------------------------------------
# The job under test, reconstructable in the step processes
# --------------------------------------------------------------------------------------------


def reconcile_job_def() -> dg.JobDefinition:
    """The code location's reconcile_job, resolved with its resources and executor."""
    from reconcile_pipeline.definitions import defs

    return defs.resolve_job_def("reconcile_job")


CONTROL_JOB = "reconcile_job_without_git_limit"


def control_job_def() -> dg.JobDefinition:
    """Control for the concurrency test: the same assets, resources and executor settings
    (max_concurrent 4, forkserver) but WITHOUT the tag limit on git shard steps. If the
    overlap measurement sees 4 here and 3 with reconcile_job, the limit of 3 is what binds."""
    from reconcile_pipeline.definitions import defs
    from reconcile_pipeline.partitions import projects_partitions

    executor = dg.multiprocess_executor.configured(
        {
            "max_concurrent": 4,
            "start_method": {"forkserver": {"preload_modules": ["reconcile_pipeline.definitions"]}},
        },
        name="control_executor",
    )
    job = dg.define_asset_job(
        CONTROL_JOB,
        selection=dg.AssetSelection.groups("reconciliation"),
        partitions_def=projects_partitions,
        executor_def=executor,
    )
    return dg.Definitions.merge(defs, dg.Definitions(jobs=[job])).resolve_job_def(CONTROL_JOB)


# --------------------------------------------------------------------------------------------
# Environment, DAGSTER_HOME and subprocesses
# --------------------------------------------------------------------------------------------


def make_dagster_home(path: Path) -> Path:
    """A fresh DAGSTER_HOME with the project's dagster.yaml (never the repository's own home)."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(MAIN / "dagster_home" / "dagster.yaml", path / "dagster.yaml")
    return path


def pipeline_env(home: Path, **settings: str | os.PathLike[str]) -> dict[str, str]:
    """Environment for a pipeline subprocess: this process's, minus any RECONCILE_* and Dagster
    settings it may carry, plus DAGSTER_HOME and ``settings``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RECONCILE_") and k not in ("DAGSTER_HOME", "GIT_PYTHON_GIT_EXECUTABLE")
    }
    env["DAGSTER_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(MAIN), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: os.fspath(v) for k, v in settings.items()})
    return env


def run_cli(
    args: list[str], env: Mapping[str, str], timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, env=dict(env), cwd=MAIN, capture_output=True, text=True, timeout=timeout
    )


def sync_partitions(env: Mapping[str, str]) -> str:
    """``reconcile-pipeline sync-partitions --quiet``; returns the range ``first...last``."""
    proc = run_cli([str(BIN / "reconcile-pipeline"), "sync-partitions", "--quiet"], env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def add_project_partitions(home: Path, app_db: Path) -> str:
    """Add the app DB's live projects as partitions (Dagster's API, not the product's CLI);
    returns the range ``first...last`` that covers them all."""
    live = [r["id"] for r in _query(app_db, 'SELECT "id" FROM "Project" WHERE "isArchived" = 0')]
    with open_instance(home) as instance:
        current = set(instance.get_dynamic_partitions(PROJECTS))
        instance.add_dynamic_partitions(PROJECTS, sorted(set(live) - current))
        keys = instance.get_dynamic_partitions(PROJECTS)
    return f"{keys[0]}...{keys[-1]}"


def execute(
    env: Mapping[str, str], partition_range: str, *, control: bool = False
) -> dict[str, Any]:
    """One multiprocess run of reconcile_job (or the control job) over ``first...last``, in a
    fresh process. Returns run_id, success, duration_s (execute_job) and process_s."""
    started = time.perf_counter()
    proc = run_cli(
        [sys.executable, "-m", "reconcile_pipeline_tests.pipeline_support", "execute"]
        + ["--range", partition_range]
        + (["--control"] if control else []),
        env,
    )
    assert proc.returncode == 0, f"runner failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = round(time.perf_counter() - started, 2)
    result["stderr"] = proc.stderr
    return result


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pipeline_support")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("execute", help="execute reconcile_job with the multiprocess executor")
    run.add_argument("--range", required=True, help="first...last partition key")
    run.add_argument("--control", action="store_true", help="run the control job instead")
    args = parser.parse_args(argv)
    # Import ourselves by module name: under ``python -m`` this file is ``__main__``, and the step
    # processes must find the job through a module pointer, not a file path.
    from reconcile_pipeline_tests import pipeline_support as me

    target = me.control_job_def if args.control else me.reconcile_job_def

    first, _, last = args.range.partition("...")
    with dg.DagsterInstance.get() as instance:
        started = time.perf_counter()
        result = dg.execute_job(
            dg.reconstructable(target),
            instance=instance,
            tags={RANGE_START: first, RANGE_END: last or first},
        )
        duration = time.perf_counter() - started
        print(
            json.dumps(
                {
                    "run_id": result.run_id,
                    "success": result.success,
                    "duration_s": round(duration, 2),
                }
            )
        )
    return 0


# --------------------------------------------------------------------------------------------
# Reading the Dagster instance
# --------------------------------------------------------------------------------------------


def open_instance(home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(home))


def _metadata_values(metadata: Mapping[str, Any]) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def check_evaluations(instance: dg.DagsterInstance, run_id: str) -> dict[str, Any]:
    """check name -> AssetCheckEvaluation of the run (metadata as plain values)."""
    out = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        out[evaluation.check_name] = evaluation
    return out


def check_metadata(evaluation: Any) -> dict[str, Any]:
    return _metadata_values(evaluation.metadata)


def materialization_metadata(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict]:
    """asset name -> metadata (plain values) of its materialization in the run."""
    out = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.dagster_event.event_specific_data.materialization
        out[materialization.asset_key.to_user_string()] = _metadata_values(materialization.metadata)
    return out


def step_windows(instance: dg.DagsterInstance, run_id: str) -> dict[str, tuple[float, float]]:
    """step key -> (STEP_START, STEP_SUCCESS or STEP_FAILURE) timestamps."""
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    types = {
        dg.DagsterEventType.STEP_START,
        dg.DagsterEventType.STEP_SUCCESS,
        dg.DagsterEventType.STEP_FAILURE,
    }
    for entry in instance.all_logs(run_id, of_type=types):
        kind = entry.dagster_event.event_type
        target = starts if kind == dg.DagsterEventType.STEP_START else ends
        target[entry.step_key] = entry.timestamp
    return {key: (starts[key], ends[key]) for key in starts if key in ends}


def max_overlap(windows: Iterable[tuple[float, float]]) -> int:
    """Most intervals open at one instant (an end at t closes before a start at t opens)."""
    events = sorted([(s, 1) for s, _ in windows] + [(e, -1) for _, e in windows])
    best = current = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


# Independent expectations live in support.expected (no product code there).
from reconcile_pipeline_tests.support.expected import (  # noqa: E402
    BOOL_COLUMNS,
    derive,
    expected_git,
    expected_snapshots,
    read_snapshot_table,
    table_differences,
)
from reconcile_pipeline_tests.support.expected import query as _query  # noqa: E402

__all__ = [
    "BOOL_COLUMNS",
    "derive",
    "expected_git",
    "expected_snapshots",
    "read_snapshot_table",
    "table_differences",
]


if __name__ == "__main__":
    sys.exit(_main())
