"""Stage 3, one step: git stats collected, the authoritative snapshot, drift, and the table's
update with its checks. Four assets of the lineage, computed back to back on the same values:
drift is measured on the table before the write, in that order, from one read of it."""

import time
from collections.abc import Iterator

import dagster as dg
import pandas as pd

from reconcile_pipeline import metadata
from reconcile_pipeline.assets.keys import (
    AUTHORITATIVE_SNAPSHOTS,
    CHECKS,
    DRIFT_RATE_CHECK,
    GIT_COVERAGE_CHECK,
    GIT_STATS,
    NO_STALE_ENTRIES_CHECK,
    SNAPSHOT_DRIFT,
    TABLE_CONVERGED_CHECK,
    WORKSPACE_SNAPSHOT,
    check_output_name,
    output_name,
)
from reconcile_pipeline.concurrency import WRITE_POOL
from reconcile_pipeline.core.extract import ExtractBatch
from reconcile_pipeline.core.git_shards import collect_shards
from reconcile_pipeline.core.reconcile import (
    build_authoritative,
    compare_with_table,
    record_drift,
    update_table,
)
from reconcile_pipeline.partitions import covers_all_projects
from reconcile_pipeline.resources import PipelineDatabase, ReconcilePolicy, SessionRuntime

_OUTS = {
    **{
        output_name(k): dg.Out(dg.Nothing)
        for k in (GIT_STATS, AUTHORITATIVE_SNAPSHOTS, SNAPSHOT_DRIFT, WORKSPACE_SNAPSHOT)
    },
    **{check_output_name(k, c): dg.Out(dg.Nothing) for k, c in CHECKS},
}


def _per_project(context: dg.AssetExecutionContext, key: dg.AssetKey, by_project: dict) -> None:
    for project, figures in by_project.items():
        context.add_asset_metadata(figures, asset_key=key, partition_key=project)


@dg.op(
    out=_OUTS,
    pool=WRITE_POOL,
    description=(
        "Collect the git shards, join the authoritative snapshot, record drift against the "
        "table, then upsert at the poll start, remove stale rows and verify."
    ),
)
def reconcile_snapshots(
    context: dg.AssetExecutionContext,
    session_runtime: SessionRuntime,
    pipeline_db: PipelineDatabase,
    policy: ReconcilePolicy,
    batch: ExtractBatch,
    shards: list[pd.DataFrame],
) -> Iterator:
    run_id, store, ledger = context.run.run_id, pipeline_db.store(), pipeline_db.ledger()
    clock = _Clock()

    git = collect_shards(shards, ledger, run_id)
    yield dg.MaterializeResult(
        asset_key=GIT_STATS,
        metadata={"shards": git.shards, "git_processes": git.git_processes},
        check_results=[
            dg.AssetCheckResult(
                asset_key=GIT_STATS,
                check_name=GIT_COVERAGE_CHECK,
                passed=git.coverage >= policy.min_git_coverage,
                severity=dg.AssetCheckSeverity.WARN,
                description=f"{git.with_stats} of {git.worktrees} worktrees have git stats",
                metadata=metadata.git_run(git, policy.min_git_coverage),
            )
        ],
    )
    clock.lap("git_collect")

    runtime = session_runtime.read()
    if runtime.reason:
        context.log.warning(f"session runtime unknown: {runtime.reason}")
    auth = build_authoritative(batch, runtime, git)
    ledger.record_problems(run_id, "session_runtime", auth.runtime_problems)
    yield dg.MaterializeResult(
        asset_key=AUTHORITATIVE_SNAPSHOTS, metadata=metadata.authoritative_run(auth)
    )
    clock.lap("authoritative")

    comparison = compare_with_table(store, auth, covers_all=covers_all_projects(context))
    drift = record_drift(ledger, run_id, auth, comparison)
    _per_project(context, SNAPSHOT_DRIFT, metadata.drift_by_project(drift, auth, comparison.stored))
    yield dg.MaterializeResult(
        asset_key=SNAPSHOT_DRIFT,
        metadata={"ledger": f"drift_ledger WHERE run_id = '{run_id}'"},
        check_results=[
            dg.AssetCheckResult(
                asset_key=SNAPSHOT_DRIFT,
                check_name=DRIFT_RATE_CHECK,
                passed=drift.rate <= policy.drift_rate_warn,
                severity=dg.AssetCheckSeverity.WARN,
                description=(
                    f"{drift.drifted_workspaces} of {drift.compared} compared workspaces "
                    f"drifted ({drift.rate:.1%})"
                ),
                metadata=metadata.drift_run(drift, policy.drift_rate_warn),
            )
        ],
    )
    clock.lap("drift")

    table = update_table(
        store,
        auth,
        comparison,
        max_prune_fraction=policy.max_prune_fraction,
        min_prune_guard=policy.min_prune_guard,
    )
    clock.lap("write")
    context.log.info(
        f"{len(auth.snapshots)} workspaces: {drift.drifted_workspaces} drifted "
        f"({len(drift.records)} drift records), {table.upsert.written} rows written, "
        + (
            "stale removal blocked by the prune guard"
            if table.prune.blocked
            else f"{table.removed} stale removed"
        )
    )
    _per_project(context, WORKSPACE_SNAPSHOT, metadata.table_by_project(table, auth))
    if table.prune.blocked:
        stale_description = (
            f"prune guard: {len(table.prune.stale)} of {len(comparison.stored)} snapshots look "
            f"stale, more than the limit of {table.prune.limit} (RECONCILE_MAX_PRUNE_FRACTION="
            f"{policy.max_prune_fraction}); nothing was removed. Check the app DB extract; if "
            "the removal is intended, raise the limit for one run."
        )
    else:
        stale_description = f"{table.removed} stale snapshots removed, {len(table.left_stale)} left"
    converged = table.convergence
    yield dg.MaterializeResult(
        asset_key=WORKSPACE_SNAPSHOT,
        metadata=metadata.table_run(pipeline_db.display_url),
        check_results=[
            dg.AssetCheckResult(
                asset_key=WORKSPACE_SNAPSHOT,
                check_name=NO_STALE_ENTRIES_CHECK,
                passed=table.left_stale.empty,
                severity=dg.AssetCheckSeverity.ERROR,
                description=stale_description,
                metadata=metadata.stale_check(table),
            ),
            dg.AssetCheckResult(
                asset_key=WORKSPACE_SNAPSHOT,
                check_name=TABLE_CONVERGED_CHECK,
                passed=converged.mismatches.empty,
                severity=dg.AssetCheckSeverity.ERROR,
                description=(
                    f"{len(converged.mismatches)} mismatched fields; {len(converged.events_won)} "
                    "fields kept a fresher event-driven write"
                ),
                metadata=metadata.converged_check(table),
            ),
        ],
    )
    # The run's figures once per run (a range run's materializations are one per project).
    yield dg.AssetObservation(
        asset_key=WORKSPACE_SNAPSHOT,
        description="reconcile run summary",
        metadata=metadata.run_summary(batch, git, auth, drift, table, clock.laps),
    )


class _Clock:
    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now
