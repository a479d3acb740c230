"""The asset chain: workspace_extract → git_stats → authoritative_snapshots → snapshot_drift →
workspace_snapshot. Thin wrappers around the pure core; every asset is partitioned per project
and runs a whole partition range in one step (single-run backfill policy)."""

import math
import time
import warnings
from typing import Any

import dagster as dg
import pandas as pd

from reconcile_pipeline.core.drift import detect_drift_frame
from reconcile_pipeline.core.extract import extract_workspaces
from reconcile_pipeline.core.generations import UnknownSchemaError, detect_generation
from reconcile_pipeline.core.git_stats import git_stats_for_rows
from reconcile_pipeline.core.reconcile import (
    Authoritative,
    build_authoritative,
    convergence,
    left_stale,
    plan_prune,
    rows_to_write,
    stale_scope,
)
from reconcile_pipeline.core.session_runtime import session_fields
from reconcile_pipeline.executors import CELERY_QUEUE_TAG, celery_git_queue
from reconcile_pipeline.partitions import covers_all_projects, projects_partitions
from reconcile_pipeline.resources import (
    AppDatabase,
    GitWorktrees,
    PipelineDatabase,
    ReconcilePolicy,
    SessionRuntime,
)

# BackfillPolicy.single_run() is what makes one run cover a partition range; it is marked beta.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")
warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*partitions_def.*")

GROUP = "reconciliation"
OWNERS = ["team:workspace-platform"]
SOURCE = "reconciliation"
# Op tag that the executor limits to 3 concurrent steps (see definitions.py).
GIT_CONCURRENCY_TAG = {"reconcile/git": "shard"}
# Under the celery executor the git shard steps go to this queue only (RECONCILE_CELERY_GIT_QUEUE,
# default reconcile_git), served by the workers that see the worktrees; other executors ignore it.
GIT_CELERY_QUEUE = celery_git_queue()

NO_STALE_ENTRIES_CHECK = "no_stale_entries"
TABLE_CONVERGED_CHECK = "table_matches_authoritative"
GIT_COVERAGE_CHECK = "git_stats_coverage"
DRIFT_RATE_CHECK = "drift_rate_below_threshold"

_PARTITIONED: dict[str, Any] = dict(
    partitions_def=projects_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    owners=OWNERS,
)


def _table(frame: pd.DataFrame, limit: int = 20) -> dg.MetadataValue:
    """A small markdown table for run metadata (values as text, at most ``limit`` rows)."""
    if frame.empty:
        return dg.MetadataValue.md("_none_")
    head = frame.head(limit).astype(object).where(frame.head(limit).notna(), None)
    lines = ["| " + " | ".join(map(str, head.columns)) + " |", "|" + "---|" * len(head.columns)]
    for row in head.itertuples(index=False):
        cells = [str(v).replace("|", "\\|").replace("\n", " ")[:120] for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    if len(frame) > limit:
        lines.append(f"\n_{len(frame) - limit} more rows_")
    return dg.MetadataValue.md("\n".join(lines))


PROBLEM_ROWS_SHOWN = 100


def _run_rows_query(table: str, run_id: str, pipeline_db: PipelineDatabase) -> dg.MetadataValue:
    """Where the full rows of this run are: a query for the operator to copy, never executed."""
    query = f"SELECT * FROM {table} WHERE run_id = '{run_id}'"  # noqa: S608
    return dg.MetadataValue.md(f"`{query}` in {pipeline_db.display_url}")


def _authoritative(value: dict[str, pd.DataFrame]) -> tuple[Authoritative, int]:
    projects = value["projects"]
    poll_start = int(projects["poll_start_ts"].min()) if len(projects) else 0
    session_known = bool(projects["session_known"].all()) if len(projects) else False
    return Authoritative(value["snapshots"], value["unknown"], session_known), poll_start


def _with_project(frame: pd.DataFrame, workspaces: pd.DataFrame) -> pd.DataFrame:
    if "project_id" in frame.columns:
        return frame
    return frame.merge(workspaces[["workspace_id", "project_id"]], on="workspace_id", how="inner")


@dg.asset(
    io_manager_key="frames_io_manager",
    kinds={"sql", "pandas"},
    retry_policy=dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL),
    description=(
        "Every non-archived workspace of the run's projects, with its project and sessions, "
        "read from the app DB in one query. Takes the poll-start timestamp (pipeline DB clock) "
        "before reading, so event writes made during the run stay newer."
    ),
    **_PARTITIONED,
)
def workspace_extract(
    context: dg.AssetExecutionContext, app_db: AppDatabase, pipeline_db: PipelineDatabase
) -> dg.Output[dict]:
    started = time.perf_counter()
    projects = list(context.partition_keys)
    poll_start_ts = pipeline_db.store().now_ms()
    try:
        generation = detect_generation(app_db.engine())
        extract = extract_workspaces(app_db.engine(), projects, generation=generation)
    except UnknownSchemaError as exc:  # permanent: a retry cannot change the schema
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    except Exception as exc:  # say which database; the retry policy tries again
        raise RuntimeError(
            f"cannot read the app DB {app_db.display_url}: {type(exc).__name__}: {exc}"
        ) from exc
    workspaces = extract.workspaces
    # Every reason is kept, also of rows that were skipped (no workspace left to attach to).
    all_problems = extract.problems.merge(
        workspaces[["workspace_id", "project_id"]], on="workspace_id", how="left"
    )
    pipeline_db.ledger().record_problems(context.run.run_id, "app_db", all_problems)
    problems = all_problems[all_problems["project_id"].notna()]
    value = {
        "projects": pd.DataFrame({"project_id": projects, "poll_start_ts": poll_start_ts}),
        "workspaces": workspaces,
        "sessions": _with_project(extract.sessions, workspaces),
        "problems": problems,
        "live_projects": extract.live_projects,
        "unknown_fields": extract.unknown_fields,
    }
    return dg.Output(
        value,
        metadata={
            "poll_start_ts": poll_start_ts,
            "schema_generation": dg.MetadataValue.int(generation.number),
            "schema": generation.label,
            "fields_not_in_schema": ", ".join(sorted(extract.unknown_fields)) or "none",
            "projects": len(projects),
            "workspaces": len(workspaces),
            "sessions": len(extract.sessions),
            "problem_cells": len(all_problems),
            "problems": _table(all_problems, PROBLEM_ROWS_SHOWN),
            "all_problems": _run_rows_query("reconcile_problem", context.run.run_id, pipeline_db),
            "app_db": app_db.display_url,
            "duration_s": round(time.perf_counter() - started, 3),
        },
    )


@dg.op(out=dg.DynamicOut(list), description="Split the worktrees into a bounded number of shards.")
def plan_git_shards(
    context: dg.OpExecutionContext, git: GitWorktrees, workspace_extract: dict
) -> Any:
    workspaces = workspace_extract["workspaces"]
    items = list(
        zip(
            workspaces["workspace_id"].astype(object),
            workspaces["project_id"].astype(object),
            workspaces["worktree_path"]
            .astype(object)
            .where(workspaces["worktree_path"].notna(), None),
            workspaces["default_branch"].astype(object).fillna("main"),
            strict=True,
        )
    )
    shards = max(1, min(git.max_shards, math.ceil(len(items) / max(1, git.min_shard_size))))
    context.log.info(f"{len(items)} worktrees in {shards} shards")
    # Always at least one (maybe empty) shard, so the collect step and the asset still run.
    for i in range(shards):
        yield dg.DynamicOutput(items[i::shards], mapping_key=f"shard_{i}")


@dg.op(
    tags={**GIT_CONCURRENCY_TAG, CELERY_QUEUE_TAG: GIT_CELERY_QUEUE},
    description="Git stats of one shard of worktrees.",
)
def compute_git_shard(
    context: dg.OpExecutionContext, git: GitWorktrees, shard: list
) -> pd.DataFrame:
    started = time.perf_counter()
    frame = git_stats_for_rows(
        [(w, path, branch) for w, _, path, branch in shard],
        allowed_roots=git.roots(),
        timeout_s=git.timeout_s,
    )
    frame.insert(1, "project_id", [p for _, p, _, _ in shard])
    context.log.info(
        f"{len(shard)} worktrees, {int(frame['git_processes'].sum())} git processes, "
        f"{round(time.perf_counter() - started, 2)} s"
    )
    return frame


@dg.op(
    out=dg.Out(io_manager_key="frames_io_manager"),
    description="Concatenate the shards into one frame; keep every null-stats reason.",
)
def collect_git_stats(
    context: dg.OpExecutionContext, pipeline_db: PipelineDatabase, shards: list[pd.DataFrame]
) -> pd.DataFrame:
    frame = pd.concat(shards, ignore_index=True).sort_values("workspace_id", ignore_index=True)
    failed = frame[frame["git_reason"].notna()]
    pipeline_db.ledger().record_problems(
        context.run.run_id,
        "git",
        failed.assign(field="git_stats", value=None).rename(columns={"git_reason": "reason"}),
    )
    context.add_output_metadata(
        {
            "worktrees": len(frame),
            "with_stats": len(frame) - len(failed),
            "null_stats": len(failed),
            "git_processes": int(frame["git_processes"].sum()),
            "shards": len(shards),
            "null_reasons": _table(failed[["workspace_id", "git_reason"]], PROBLEM_ROWS_SHOWN),
            "all_null_reasons": _run_rows_query(
                "reconcile_problem", context.run.run_id, pipeline_db
            ),
        }
    )
    return frame


@dg.graph_asset(
    kinds={"git", "pandas"},
    description=(
        "Git stats of every worktree against its project's default branch, computed in shards "
        "(at most 3 shard steps at once); a failure is a null row with its reason."
    ),
    **_PARTITIONED,
)
def git_stats(workspace_extract: dict) -> pd.DataFrame:
    shards = plan_git_shards(workspace_extract)
    return collect_git_stats(shards.map(compute_git_shard).collect())


@dg.asset_check(
    asset=git_stats,
    name=GIT_COVERAGE_CHECK,
    # Partitioned like the asset: a run over some projects checks (and loads) only those.
    partitions_def=projects_partitions,
    description="Share of worktrees with git stats; lists the ones without and why.",
)
def git_stats_coverage(policy: ReconcilePolicy, git_stats: pd.DataFrame) -> dg.AssetCheckResult:
    total = len(git_stats)
    failed = git_stats[git_stats["git_reason"].notna()]
    coverage = 1.0 if total == 0 else (total - len(failed)) / total
    return dg.AssetCheckResult(
        passed=coverage >= policy.min_git_coverage,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{total - len(failed)} of {total} worktrees have git stats",
        metadata={
            "coverage": round(coverage, 4),
            "null_stats": len(failed),
            "threshold": policy.min_git_coverage,
            "null_reasons": _table(failed[["workspace_id", "git_reason"]], PROBLEM_ROWS_SHOWN),
        },
    )


def _authoritative_snapshots(
    context: dg.AssetExecutionContext,
    session_runtime: SessionRuntime,
    workspace_extract: dict,
    git_stats: pd.DataFrame,
) -> tuple[dict, dg.MaterializeResult]:
    started = time.perf_counter()
    runtime = session_runtime.read()
    if runtime.reason:
        context.log.warning(f"session runtime unknown: {runtime.reason}")
    auth = build_authoritative(
        workspace_extract["workspaces"],
        workspace_extract["problems"],
        session_fields(runtime, workspace_extract["sessions"]),
        git_stats,
        workspace_extract.get("unknown_fields", ()),
    )
    projects = workspace_extract["projects"].assign(session_known=auth.session_known)
    snaps = auth.snapshots
    value = {
        "snapshots": snaps,
        "unknown": auth.unknown,
        "projects": projects,
        "live_projects": workspace_extract.get("live_projects", ()),
    }
    return value, dg.MaterializeResult(
        asset_key=AUTHORITATIVE_SNAPSHOTS,
        metadata={
            "workspaces": len(snaps),
            "session_runtime": "known" if auth.session_known else f"unknown: {runtime.reason}",
            "unknown_cells": len(auth.unknown),
            "kanban_columns": dg.MetadataValue.json(
                snaps["kanban_column"].fillna("(none)").value_counts().to_dict()
            ),
            "duration_s": round(time.perf_counter() - started, 3),
        },
    )


def _snapshot_drift(
    context: dg.AssetExecutionContext,
    pipeline_db: PipelineDatabase,
    policy: ReconcilePolicy,
    authoritative_snapshots: dict,
    stored: pd.DataFrame,
) -> dg.MaterializeResult:
    started = time.perf_counter()
    auth, poll_start_ts = _authoritative(authoritative_snapshots)
    drift = detect_drift_frame(stored, auth.snapshots, auth.unknown)
    compared = int(auth.snapshots["workspace_id"].isin(stored["workspace_id"]).sum())
    drifted = int(drift["workspace_id"].nunique())
    by_group = drift["group"].value_counts().to_dict()
    pipeline_db.ledger().record(
        context.run.run_id,
        poll_start_ts,
        drift,
        {
            "projects": len(context.partition_keys),
            "workspaces": len(auth.snapshots),
            "compared": compared,
            "drifted_workspaces": drifted,
            "drift_by_group": by_group,
        },
    )
    rate = drifted / compared if compared else 0.0
    top = (
        drift.groupby(["workspace_id", "project_id"])
        .agg(fields=("field", lambda s: ", ".join(s)), count=("field", "size"))
        .reset_index()
        .sort_values("count", ascending=False, kind="stable")
    )
    metadata: dict[str, Any] = {
        "drift_records": len(drift),
        "drifted_workspaces": drifted,
        "compared_workspaces": compared,
        "drift_rate": round(rate, 4),
        **{
            f"drift_{group}": int(by_group.get(group, 0))
            for group in ("workspace", "pr", "session", "ratchet", "run_script")
        },
        "top_drifted_workspaces": _table(top),
        "drift": _table(drift),
        "ledger": _run_rows_query("drift_ledger", context.run.run_id, pipeline_db),
        "duration_s": round(time.perf_counter() - started, 3),
    }
    check = dg.AssetCheckResult(
        asset_key=SNAPSHOT_DRIFT,
        check_name=DRIFT_RATE_CHECK,
        passed=rate <= policy.drift_rate_warn,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{drifted} of {compared} compared workspaces drifted ({rate:.1%})",
        metadata={"drift_rate": round(rate, 4), "threshold": policy.drift_rate_warn},
    )
    return dg.MaterializeResult(asset_key=SNAPSHOT_DRIFT, metadata=metadata, check_results=[check])


def _workspace_snapshot(
    context: dg.AssetExecutionContext,
    pipeline_db: PipelineDatabase,
    policy: ReconcilePolicy,
    authoritative_snapshots: dict,
    stored: pd.DataFrame,
    covered: list[str] | None,
) -> dg.MaterializeResult:
    started = time.perf_counter()
    auth, poll_start_ts = _authoritative(authoritative_snapshots)
    store = pipeline_db.store()

    rows, unchanged = rows_to_write(auth, stored)
    result = store.upsert_many(rows, source=SOURCE, ts=poll_start_ts, skip_unchanged=True)
    write_s = time.perf_counter() - started

    own = authoritative_snapshots["projects"]["project_id"]
    live = authoritative_snapshots.get("live_projects", ())
    prune = plan_prune(
        stored,
        auth.snapshots,
        stale_scope(stored, covered, own, live),
        max_fraction=policy.max_prune_fraction,
        min_guard=policy.min_prune_guard,
    )
    stale, limit, prune_blocked = prune.stale, prune.limit, prune.blocked
    removed = 0 if prune_blocked else store.remove_many(stale, not_written_after=poll_start_ts)

    after = store.read_frame(covered)
    still_stale = left_stale(
        after, auth.snapshots, stale_scope(after, covered, own, live), poll_start_ts
    )
    mismatches, events_won = convergence(after, auth, poll_start_ts)

    if prune_blocked:
        stale_description = (
            f"prune guard: {len(stale)} of {len(stored)} snapshots look stale, more than the "
            f"limit of {limit} (RECONCILE_MAX_PRUNE_FRACTION={policy.max_prune_fraction}); "
            "nothing was removed. Check the app DB extract; if the removal is intended, raise "
            "the limit for one run."
        )
    else:
        stale_description = f"{removed} stale snapshots removed, {len(still_stale)} left"
    checks = [
        dg.AssetCheckResult(
            asset_key=WORKSPACE_SNAPSHOT,
            check_name=NO_STALE_ENTRIES_CHECK,
            passed=still_stale.empty,
            severity=dg.AssetCheckSeverity.ERROR,
            description=stale_description,
            metadata={
                "stale_found": len(stale),
                "removed": removed,
                "left": len(still_stale),
                "prune_limit": limit,
                "prune_blocked": prune_blocked,
                "left_ids": _table(still_stale[["workspace_id", "project_id"]]),
            },
        ),
        dg.AssetCheckResult(
            asset_key=WORKSPACE_SNAPSHOT,
            check_name=TABLE_CONVERGED_CHECK,
            passed=mismatches.empty,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                f"{len(mismatches)} mismatched fields; {len(events_won)} fields kept a fresher "
                "event-driven write"
            ),
            metadata={
                "mismatches": len(mismatches),
                "events_won": len(events_won),
                "mismatch_sample": _table(mismatches),
                "events_won_sample": _table(events_won),
            },
        ),
    ]
    return dg.MaterializeResult(
        asset_key=WORKSPACE_SNAPSHOT,
        metadata={
            "poll_start_ts": poll_start_ts,
            "rows_written": result.written,
            "rows_inserted": result.inserted,
            "rows_updated": result.updated,
            "rows_unchanged": unchanged + result.unchanged,
            "groups_kept_fresher_event": len(result.stale_groups),
            "stale_removed": removed,
            "table_rows": len(after) if covered is None else store.count(),
            "write_duration_s": round(write_s, 3),
            "duration_s": round(time.perf_counter() - started, 3),
        },
        check_results=checks,
    )


AUTHORITATIVE_SNAPSHOTS = dg.AssetKey("authoritative_snapshots")
SNAPSHOT_DRIFT = dg.AssetKey("snapshot_drift")
WORKSPACE_SNAPSHOT = dg.AssetKey("workspace_snapshot")
_SPEC_DEFAULTS: dict[str, Any] = dict(
    group_name=GROUP, owners=OWNERS, partitions_def=projects_partitions
)


# Three assets, one step: each is a stage of the lineage, but they run back to back on the same
# frames, so one step saves two process start-ups and two round trips through storage per run.
@dg.multi_asset(
    name="reconcile_snapshots",
    specs=[
        dg.AssetSpec(
            AUTHORITATIVE_SNAPSHOTS,
            deps=[workspace_extract, git_stats],
            kinds={"pandas"},
            description=(
                "Authoritative snapshot of every workspace: app DB columns, live session state "
                "and git stats joined in pandas, derived fields included. Cells whose value is "
                "unknown (bad input, or the session runtime is unavailable) are listed and "
                "never written."
            ),
            **_SPEC_DEFAULTS,
        ),
        dg.AssetSpec(
            SNAPSHOT_DRIFT,
            deps=[AUTHORITATIVE_SNAPSHOTS],
            kinds={"pandas", "sql"},
            description=(
                "Field-level drift of the stored workspace_snapshot rows against the "
                "authoritative values, appended to the drift_ledger table (one row per drifted "
                "field) with a per-run summary in reconcile_run."
            ),
            **_SPEC_DEFAULTS,
        ),
        dg.AssetSpec(
            WORKSPACE_SNAPSHOT,
            deps=[SNAPSHOT_DRIFT],
            kinds={"sql"},
            description=(
                "The workspace snapshot table the app reads: authoritative values upserted with "
                "the poll-start timestamp (a fresher event write wins), unchanged rows not "
                "written, stale entries removed under a prune guard."
            ),
            **_SPEC_DEFAULTS,
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            DRIFT_RATE_CHECK,
            asset=SNAPSHOT_DRIFT,
            description="Warns when the share of drifted workspaces exceeds the threshold.",
        ),
        dg.AssetCheckSpec(
            NO_STALE_ENTRIES_CHECK,
            asset=WORKSPACE_SNAPSHOT,
            description="No snapshot is left for an archived or deleted workspace.",
        ),
        dg.AssetCheckSpec(
            TABLE_CONVERGED_CHECK,
            asset=WORKSPACE_SNAPSHOT,
            description=(
                "The table equals the authoritative values, except where a fresher event-driven "
                "write won (reported, not failed)."
            ),
        ),
    ],
    ins={"workspace_extract": dg.AssetIn(), "git_stats": dg.AssetIn()},
    partitions_def=projects_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
)
def reconcile_snapshots(
    context: dg.AssetExecutionContext,
    session_runtime: SessionRuntime,
    pipeline_db: PipelineDatabase,
    policy: ReconcilePolicy,
    workspace_extract: dict,
    git_stats: pd.DataFrame,
):
    value, authoritative = _authoritative_snapshots(
        context, session_runtime, workspace_extract, git_stats
    )
    yield authoritative
    # One read of the table serves both stages: drift is measured against it before the write
    # (the order is the contract), and the write skips the rows it shows unchanged.
    covered = None if covers_all_projects(context) else list(context.partition_keys)
    stored = pipeline_db.store().read_frame(covered)
    yield _snapshot_drift(context, pipeline_db, policy, value, stored)
    yield _workspace_snapshot(context, pipeline_db, policy, value, stored, covered)


ASSETS = [workspace_extract, git_stats, reconcile_snapshots]
ASSET_CHECKS = [git_stats_coverage]
