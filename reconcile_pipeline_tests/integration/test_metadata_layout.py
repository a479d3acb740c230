"""What the UI plots means one thing: the event log of real runs is read back, key by key.

Three in-process runs over a copy of a demo app (real worktrees), with changes between them that
move what the figures measure: drift made in several field groups, a workspace archived, a
worktree deleted, a bad app DB cell, a write stamped ahead of the clock. Then every
materialization and observation of the runs is read from the instance:

- no numeric key is written both on a project's partition and once per run;
- a partition's own figures are ``project_*`` keys (or Dagster's ``dagster/partition_row_count``)
  and differ between projects; run figures are never ``project_*``;
- every plotted run figure moves with what it measures across the three runs;
- row counts are true: ``dagster/row_count`` is the table's ``count(*)``, each partition's
  ``dagster/partition_row_count`` its project's;
- every partition names its project: its name beside its id.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections import defaultdict
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from reconcile_pipeline.core.ledger import DriftLedger
from reconcile_pipeline.core.reconcile import RunSummary
from reconcile_pipeline.core.store import SnapshotStore
from reconcile_pipeline.defs.resources import ReconcilePolicy, SessionRuntime
from reconcile_pipeline_tests.support.runs import add_partitions, reconcile, resources

# Run figures that the scenario cannot move: each reports a fault or a race that a healthy
# sequence of runs does not have (shown to be 0 on every run, below).
ZERO_IN_A_HEALTHY_RUN = {"mismatches", "prune_blocked"}
# Run figures that are the same on every run by the scenario's design (each named with why).
CONSTANT_HERE = {
    "projects": "the scenario keeps every project",
    "rows_inserted": "no workspace is created after the first run",
    "held_by_tombstone": "no removal races a run here (test_tombstones_and_changes.py)",
}


def _numeric(metadata) -> dict[str, float]:
    out = {}
    for key, value in metadata.items():
        if isinstance(value, dg.IntMetadataValue | dg.FloatMetadataValue):
            out[key] = value.value
    return out


def _tamper(url: str, count: int, *, future: bool = False) -> None:
    """Event writes the runs will find as drift in several groups (older than the next poll)."""
    store = SnapshotStore(url, create=False)
    try:
        ids = sorted(store.workspace_ids())[:count]
        for i, workspace_id in enumerate(ids):
            store.upsert(
                workspace_id,
                {"name": f"tampered {i}", "pr_state": "CLOSED", "ratchet_enabled": i % 2 == 0},
                source="event",
            )
            store.upsert(workspace_id, {"run_script_status": "FAILED"}, source="event")
        if future:  # a writer whose clock is an hour ahead
            store.upsert(
                ids[-1], {"is_working": True}, source="skewed-writer", ts=store.now_ms() + 3_600_000
            )
        # A derived column written by hand (no raw change): rewritten, as a re-derivation.
        with store.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE workspace_snapshot SET kanban_column = 'DONE' WHERE workspace_id = "
                    "(SELECT max(workspace_id) FROM workspace_snapshot)"
                )
            )
    finally:
        store.engine.dispose()


def test_three_runs_keep_one_meaning_per_key_and_true_row_counts(demo40, tmp_path):
    demo = demo40
    app_path = tmp_path / "app.db"
    shutil.copy(demo.app_db_path, app_path)
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    runtime = SessionRuntime(kind="file", location=str(demo.session_runtime_path))
    # A field that drifts in 2 of the last 10 runs flaps here: the third run finds flaps.
    policy = ReconcilePolicy(flap_min_runs=2)
    res = resources(f"sqlite:///{app_path}", url, session_runtime=runtime, policy=policy)
    with sqlite3.connect(app_path) as conn:
        projects = dict(conn.execute('SELECT "id", "name" FROM "Project"'))
        live = sorted(
            p
            for p, archived in conn.execute('SELECT "id", "isArchived" FROM "Project"')
            if not archived
        )
        worktrees = [
            r[0]
            for r in conn.execute(
                'SELECT "worktreePath" FROM "Workspace" WHERE "worktreePath" IS NOT NULL '
                'AND "status" != \'ARCHIVED\' ORDER BY "id"'
            )
        ]

    def between_runs(run: int) -> None:
        _tamper(url, 3 * run, future=run == 2)
        with sqlite3.connect(app_path) as conn:
            victim = conn.execute(
                'SELECT "id" FROM "Workspace" WHERE "status" = \'READY\' ORDER BY "id" LIMIT 1'
            ).fetchone()[0]
            conn.execute('UPDATE "Workspace" SET "status" = \'ARCHIVED\' WHERE "id" = ?', (victim,))
            # A bad cell: an unknown status value, reported per row, never written.
            conn.execute(
                'UPDATE "Workspace" SET "status" = \'HIBERNATING\' WHERE "id" = ('
                'SELECT "id" FROM "Workspace" WHERE "status" = \'READY\' ORDER BY "id" DESC '
                f"LIMIT 1 OFFSET {run})"
            )
        existing = [p for p in worktrees if Path(p).is_dir()]
        shutil.rmtree(existing[run])  # a worktree gone: one more without git stats
        if run == 2:  # an operator mutes a known drift: kept, marked, not counted
            ledger = DriftLedger(url)
            first = min(SnapshotStore(url, create=False).workspace_ids())
            ledger.suppress(workspace_id=first, field="*", reason="known", expires_at=2**62)
            ledger.engine.dispose()

    with dg.instance_for_test() as instance:
        add_partitions(instance, live)
        run_ids = []
        for run in range(3):
            if run:
                between_runs(run)
            result = reconcile(instance, res)
            assert result.success
            run_ids.append(result.run_id)

        per_partition: dict[str, set[str]] = defaultdict(set)  # numeric key -> assets
        per_run: dict[str, list[float]] = defaultdict(list)
        partition_values: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        labels: dict[str, set[str]] = defaultdict(set)
        row_counts: dict[str, int] = {}
        partition_rows: dict[str, dict[str, int]] = defaultdict(dict)
        for i, run_id in enumerate(run_ids):
            for entry in instance.all_logs(run_id):
                event = entry.dagster_event
                if event is None:
                    continue
                if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
                    m = event.event_specific_data.materialization
                    assert m.partition in live
                    asset = m.asset_key.to_user_string()
                    labels[m.partition].add(m.metadata["project"].value)
                    for key, value in _numeric(m.metadata).items():
                        if key == "dagster/row_count":
                            row_counts[run_id] = value
                            continue
                        per_partition[key].add(asset)
                        partition_values[key][m.partition].append(value)
                    if asset == "workspace_snapshot" and i == 2:
                        partition_rows[m.partition] = m.metadata[
                            "dagster/partition_row_count"
                        ].value
                elif event.event_type == dg.DagsterEventType.ASSET_OBSERVATION:
                    o = event.event_specific_data.asset_observation
                    for key, value in _numeric(o.metadata).items():
                        per_run[key].append(value)

        # One meaning per key: a partition's figures and the run's never share a numeric key.
        assert set(per_partition) & set(per_run) == set(), set(per_partition) & set(per_run)
        assert "dagster/row_count" not in per_run
        for key in per_partition:
            assert key.startswith("project_") or key == "dagster/partition_row_count", key
        assert not [k for k in per_run if k.startswith("project_")]
        # The run's figures are the RunSummary's, one point per run.
        assert set(RunSummary.keys()) - {"schema_generation", "rule_set", "prune_blocked"} <= set(
            per_run
        )
        assert all(len(v) == 3 for v in per_run.values()), {k: len(v) for k, v in per_run.items()}

        # Every plotted run figure moves with what it measures.
        for key, values in per_run.items():
            if key in ZERO_IN_A_HEALTHY_RUN:
                assert set(values) == {0}, (key, values)
            elif key.endswith("_s"):  # a stage's duration, in ms: equal runs can coincide
                assert all(v >= 0 for v in values), (key, values)
            elif key not in CONSTANT_HERE:
                assert len(set(values)) > 1, (key, values)
        for key in ("drift_workspace", "drift_pr", "drift_ratchet", "drift_run_script"):
            assert per_run[key][0] == 0 and per_run[key][2] > 0, (key, per_run[key])
        assert per_run["future_dated"] == [0, 0, 1]
        assert per_run["drift_suppressed"][:2] == [0, 0] and per_run["drift_suppressed"][2] > 0
        assert per_run["flapping_fields"][:2] == [0, 0] and per_run["flapping_fields"][2] > 0
        # A partition's figures are its project's: projects differ somewhere.
        assert any(
            len({tuple(v) for v in by_partition.values()}) > 1
            for by_partition in partition_values.values()
        )

        # True row counts, against the table itself.
        engine = sa.create_engine(url)
        with engine.connect() as conn:
            total = conn.execute(sa.text("SELECT count(*) FROM workspace_snapshot")).scalar()
            by_project = dict(
                conn.execute(
                    sa.text("SELECT project_id, count(*) FROM workspace_snapshot GROUP BY 1")
                ).all()
            )
        engine.dispose()
        assert row_counts[run_ids[-1]] == total
        assert partition_rows == {p: by_project.get(p, 0) for p in live}
        assert row_counts[run_ids[0]] != row_counts[run_ids[-1]]  # archived rows left the table

        # Every partition names its project.
        for partition, shown in labels.items():
            assert shown == {f"{projects[partition]} ({partition})"}, shown
