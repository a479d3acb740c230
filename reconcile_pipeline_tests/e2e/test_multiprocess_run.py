"""Real multiprocess runs of the reconcile pipeline (``execute_job`` + ``reconstructable``, the
code location's executor, in a fresh process), no mocks.

- Over a 60-workspace demo app in each schema generation: the snapshot table equals expectations
  computed independently (plain sqlite3, plain git, the runtime JSON, the contract's
  derivations); a second run writes nothing; a tampered table is repaired with the drift in the
  ledger.
- A failed run and its project partitions, as RUNBOOK describes them.

Every run happens in a subprocess with its own environment (see support.runs).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import dagster as dg
import pytest

from reconcile_pipeline.defs.reconciliation.partitions import PROJECTS
from reconcile_pipeline_tests.support.databases import sql
from reconcile_pipeline_tests.support.expected import (
    pathless_workspaces,
    read_table,
    table_differences,
)
from reconcile_pipeline_tests.support.processes import dagster_home
from reconcile_pipeline_tests.support.runs import (
    ASSET_NAMES,
    CHECK_NAMES,
    RANGE_END,
    RANGE_START,
    add_project_partitions,
    app_env,
    check_metadata,
    execute,
    open_instance,
    run_facts,
)


def versions(db: Path) -> dict[str, int]:
    return dict(sql(db, "SELECT workspace_id, version FROM workspace_snapshot"))


def ledger(db: Path, run_id: str) -> list[tuple]:
    return sql(
        db,
        "SELECT workspace_id, project_id, field, field_group, stored_value, authoritative_value "
        "FROM drift_ledger WHERE run_id = ? ORDER BY id",
        (run_id,),
    )


@pytest.mark.slow
def test_multiprocess_run_converges_idles_and_repairs(tmp_path, demo60_any_generation):
    app, expected = demo60_any_generation
    # The demo covers the cases that make the comparison meaningful.
    rows = list(expected.values())
    assert len(rows) == app.active_workspaces >= 45
    assert {r["pending_request_type"] for r in rows} == {
        None,
        "plan_approval",
        "user_question",
        "permission_request",
    }
    if app.generation == 3:  # the merge-conflict flag and the projected ratchet state
        assert {r["has_merge_conflict"] for r in rows} == {True, False}
        assert "MERGE_CONFLICT" in {r["ratchet_state"] for r in rows}
    if app.generation > 1:
        assert "ARCHIVING" in {r["status"] for r in rows}
    assert {r["is_working"] for r in rows} == {True, False}
    assert {r["git_has_uncommitted"] for r in rows} == {True, False, None}
    assert any(r["git_additions"] and r["git_deletions"] for r in rows)
    assert any(r["git_total"] == 0 for r in rows)
    null_git = [r["workspace_id"] for r in rows if r["git_total"] is None]
    assert 1 <= len(null_git) < len(rows)

    home = dagster_home(tmp_path / "home")
    db = tmp_path / "pipeline.db"
    env = app_env(home, app, db)
    partition_range = add_project_partitions(home, app.app_db_path)

    # Run 1: seeds the empty table.
    first = execute(env, partition_range)
    assert first["success"], first["stderr"][-5000:]
    run, checks, meta = run_facts(home, first["run_id"])
    assert run.status == dg.DagsterRunStatus.SUCCESS and run.job_name == "reconcile_job"
    assert run.tags[RANGE_START] + "..." + run.tags[RANGE_END] == partition_range
    assert set(checks) == CHECK_NAMES  # all four evaluated in this very run
    for name in ("no_stale_entries", "table_matches_authoritative", "drift_rate_below_threshold"):
        assert checks[name].passed, (name, check_metadata(checks[name]))
    # Coverage counts worktrees: a workspace without a worktree path (a NEW one) has none.
    pathless = pathless_workspaces(app.app_db_path)
    worktrees = [r for r in rows if r["workspace_id"] not in pathless]
    no_stats = [r for r in worktrees if r["git_total"] is None]
    coverage = check_metadata(checks["git_stats_coverage"])
    assert coverage["worktrees"] == len(worktrees)
    assert coverage["without_git_stats"] == len(no_stats) >= 1
    assert coverage["coverage"] == round((len(worktrees) - len(no_stats)) / len(worktrees), 4)
    assert checks["git_stats_coverage"].passed == (coverage["coverage"] >= 0.9)  # the default
    assert meta["rows_inserted"] == len(rows)
    assert meta["rows_updated"] == 0
    assert meta["schema_generation"] == str(app.generation)  # a setting, shown as text
    # Dagster's bookkeeping of a range run (dagster_env.py): one planned event per asset, one
    # materialization per asset and project.
    with open_instance(home) as instance:
        projects = len(instance.get_dynamic_partitions(PROJECTS))
        kinds = Counter(e.dagster_event_type for e in instance.all_logs(first["run_id"]))
    assert projects >= 2
    assert kinds[dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED] == len(ASSET_NAMES)
    assert kinds[dg.DagsterEventType.ASSET_MATERIALIZATION] == projects * len(ASSET_NAMES)

    stored = read_table(db)
    assert table_differences(stored, expected) == []
    before = versions(db)
    assert set(before.values()) == {1}

    # Run 2: nothing changed, nothing written.
    second = execute(env, partition_range)
    assert second["success"], second["stderr"][-5000:]
    _, checks, meta = run_facts(home, second["run_id"])
    assert set(checks) == CHECK_NAMES and all(
        checks[n].passed for n in CHECK_NAMES - {"git_stats_coverage"}
    )
    assert meta["rows_written"] == 0
    assert meta["rows_unchanged"] == len(rows)
    assert meta["drift_records"] == 0
    assert versions(db) == before
    assert table_differences(read_table(db), expected) == []
    assert ledger(db, second["run_id"]) == []

    # Tamper: a lost status event, a lost insert, an entry for a workspace that never existed.
    changed = next(r for r in rows if r["status"] == "READY")
    deleted = next(r for r in rows if r["workspace_id"] != changed["workspace_id"])
    project = changed["project_id"]
    sql(
        db,
        "UPDATE workspace_snapshot SET status = 'FAILED' WHERE workspace_id = ?",
        (changed["workspace_id"],),
    )
    sql(db, "DELETE FROM workspace_snapshot WHERE workspace_id = ?", (deleted["workspace_id"],))
    sql(
        db,
        "INSERT INTO workspace_snapshot (workspace_id, project_id, name, status) "
        "VALUES ('ghost-workspace', ?, 'ghost', 'READY')",
        (project,),
    )

    third = execute(env, partition_range)
    assert third["success"], third["stderr"][-5000:]
    _, checks, meta = run_facts(home, third["run_id"])
    assert ledger(db, third["run_id"]) == [
        (changed["workspace_id"], project, "status", "workspace", '"FAILED"', '"READY"')
    ]  # the re-seeded row is not drift, the ghost is not drift: it is stale
    runs = sql(
        db,
        "SELECT compared, drifted_workspaces, drift_records FROM reconcile_run WHERE run_id = ?",
        (third["run_id"],),
    )
    assert runs == [(len(rows) - 1, 1, 1)]
    assert table_differences(read_table(db), expected) == []  # restored, ghost gone
    after = versions(db)
    assert after[changed["workspace_id"]] == before[changed["workspace_id"]] + 1
    assert after[deleted["workspace_id"]] == 1
    assert "ghost-workspace" not in after
    unchanged = set(before) - {changed["workspace_id"], deleted["workspace_id"]}
    assert {w: after[w] for w in unchanged} == {w: before[w] for w in unchanged}
    snapshot_meta = meta
    assert (snapshot_meta["rows_inserted"], snapshot_meta["rows_updated"]) == (1, 1)
    assert snapshot_meta["stale_removed"] == 1
    assert checks["no_stale_entries"].passed
    assert check_metadata(checks["no_stale_entries"])["removed"] == 1
    assert checks["table_matches_authoritative"].passed
    assert meta["drift_records"] == 1
    assert meta["drift_rate"] == round(1 / (len(rows) - 1), 4)

    print(
        "\nrun durations (execute_job s / whole process s): "
        + ", ".join(f"{r['duration_s']}/{r['process_s']}" for r in (first, second, third))
    )


@pytest.mark.slow
@pytest.mark.parametrize("planned_per_project", [False, True])
def test_failed_run_and_project_partition_status(tmp_path, demo60, planned_per_project):
    """What RUNBOOK says of a failed run: with one planned event per asset (the default), its
    project partitions are not marked failed, the run is, and its range tags name the projects;
    with Dagster's per-project planned events they would be marked failed."""
    app, _ = demo60
    home = dagster_home(tmp_path / "home")
    env = app_env(home, app, tmp_path / "pipeline.db")
    # The app DB is gone: workspace_extract fails (after its retries), so the run fails.
    env["RECONCILE_APP_DB_URL"] = f"sqlite:///{tmp_path / 'missing' / 'app.db'}"
    if planned_per_project:
        env["DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"] = "false"
    partition_range = add_project_partitions(home, app.app_db_path)
    result = execute(env, partition_range)
    assert not result["success"]
    with open_instance(home) as instance:
        run = instance.get_run_by_id(result["run_id"])
        keys = instance.get_dynamic_partitions(PROJECTS)
        status = instance.get_status_by_partition(
            dg.AssetKey("workspace_extract"), keys, dg.DynamicPartitionsDefinition(name=PROJECTS)
        )
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert run.tags[RANGE_START] == keys[0] and run.tags[RANGE_END] == keys[-1]
    failed = {k for k, v in (status or {}).items() if v == dg.AssetPartitionStatus.FAILED}
    assert failed == (set(keys) if planned_per_project else set())
