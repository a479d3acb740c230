"""The asset chain: workspace_extract → git_stats → authoritative_snapshots → snapshot_drift →
workspace_snapshot, as ONE graph-backed asset definition of three stages:

1. ``extract_workspaces``: the poll start, the app DB read, the plan of git shards;
2. ``compute_git_shard``: one step per shard (a ``DynamicOut``), at most 3 at once;
3. ``reconcile_snapshots``: git stats collected, the authoritative snapshot, drift, the table's
   update and every check.

The five assets keep their own lineage (``internal_asset_deps``) and materializations, partitioned
per project with a single-run backfill policy; the stage values (the run's ExtractBatch, the
shards' frames) pass between the steps inside the run.
"""

import datetime as dt
import os
import warnings
from collections.abc import Mapping

import dagster as dg

from reconcile_pipeline import settings
from reconcile_pipeline.assets.extract import extract_workspaces
from reconcile_pipeline.assets.git import compute_git_shard
from reconcile_pipeline.assets.keys import (
    AUTHORITATIVE_SNAPSHOTS,
    CHAIN,
    CHECKS,
    DRIFT_RATE_CHECK,
    GIT_COVERAGE_CHECK,
    GIT_STATS,
    NO_STALE_ENTRIES_CHECK,
    SNAPSHOT_DRIFT,
    TABLE_CONVERGED_CHECK,
    WORKSPACE_EXTRACT,
    WORKSPACE_SNAPSHOT,
    check_output_name,
    output_name,
)
from reconcile_pipeline.assets.reconcile import reconcile_snapshots
from reconcile_pipeline.partitions import projects_partitions

# BackfillPolicy.single_run() is what makes one run cover a partition range; it is marked beta.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")
warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*partitions_def.*")

GROUP = "reconciliation"
OWNERS = ["team:workspace-platform"]

DESCRIPTIONS = {
    WORKSPACE_EXTRACT: (
        "Every non-archived workspace of the run's projects, with its project and sessions, "
        "read from the app DB (any of its schema generations) in one statement. Takes the "
        "poll-start timestamp (pipeline DB clock) before reading, so event writes made during "
        "the run stay newer."
    ),
    GIT_STATS: (
        "Git stats of every worktree against its project's default branch, computed in shards "
        "(at most 3 shard steps at once); a failure is a null row with its reason."
    ),
    AUTHORITATIVE_SNAPSHOTS: (
        "Authoritative snapshot of every workspace: app DB columns, live session state and git "
        "stats joined in pandas, derived fields included. Cells whose value is unknown (bad "
        "input, a field the app's schema lacks, the session runtime unavailable) are never "
        "written."
    ),
    SNAPSHOT_DRIFT: (
        "Field-level drift of the stored workspace_snapshot rows against the authoritative "
        "values, appended to the drift_ledger table (one row per drifted field) with a per-run "
        "summary in reconcile_run."
    ),
    WORKSPACE_SNAPSHOT: (
        "The workspace snapshot table the app reads: authoritative values upserted with the "
        "poll-start timestamp (a fresher event write wins), unchanged rows not written, stale "
        "entries removed under a prune guard."
    ),
}
KINDS = {
    WORKSPACE_EXTRACT: ("sql", "pandas"),
    GIT_STATS: ("git", "pandas"),
    AUTHORITATIVE_SNAPSHOTS: ("pandas",),
    SNAPSHOT_DRIFT: ("pandas", "sql"),
    WORKSPACE_SNAPSHOT: ("sql",),
}
CHECK_DESCRIPTIONS = {
    GIT_COVERAGE_CHECK: "Share of worktrees with git stats; lists the ones without and why.",
    DRIFT_RATE_CHECK: "Warns when the share of drifted workspaces exceeds the threshold.",
    NO_STALE_ENTRIES_CHECK: "No snapshot is left for an archived or deleted workspace.",
    TABLE_CONVERGED_CHECK: (
        "The table equals the authoritative values, except where a fresher event-driven write "
        "won (reported, not failed)."
    ),
}


@dg.graph(
    out={
        **{output_name(key): dg.GraphOut() for key in CHAIN},
        **{check_output_name(key, check): dg.GraphOut() for key, check in CHECKS},
    }
)
def reconcile_chain():
    extract, batch, shards = extract_workspaces()
    git, authoritative, drift, table, *checks = reconcile_snapshots(
        batch, shards.map(compute_git_shard).collect()
    )
    return {
        output_name(WORKSPACE_EXTRACT): extract,
        output_name(GIT_STATS): git,
        output_name(AUTHORITATIVE_SNAPSHOTS): authoritative,
        output_name(SNAPSHOT_DRIFT): drift,
        output_name(WORKSPACE_SNAPSHOT): table,
        **{
            check_output_name(key, check): out
            for (key, check), out in zip(CHECKS, checks, strict=True)
        },
    }


chain = dg.AssetsDefinition.from_graph(
    reconcile_chain,
    keys_by_output_name={output_name(key): key for key in CHAIN},
    internal_asset_deps={
        output_name(WORKSPACE_EXTRACT): set(),
        output_name(GIT_STATS): {WORKSPACE_EXTRACT},
        output_name(AUTHORITATIVE_SNAPSHOTS): {WORKSPACE_EXTRACT, GIT_STATS},
        output_name(SNAPSHOT_DRIFT): {AUTHORITATIVE_SNAPSHOTS},
        output_name(WORKSPACE_SNAPSHOT): {SNAPSHOT_DRIFT},
    },
    partitions_def=projects_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name=GROUP,
    descriptions_by_output_name={output_name(k): d for k, d in DESCRIPTIONS.items()},
    owners_by_output_name={output_name(key): OWNERS for key in CHAIN},
    tags_by_output_name={
        output_name(key): {f"dagster/kind/{kind}": "" for kind in kinds}
        for key, kinds in KINDS.items()
    },
    check_specs=[
        dg.AssetCheckSpec(check, asset=key, description=CHECK_DESCRIPTIONS[check])
        for key, check in CHECKS
    ],
)


def freshness_policy(env: Mapping[str, str] = os.environ) -> dg.FreshnessPolicy:
    """workspace_snapshot is stale when no run materialized it for RECONCILE_FRESHNESS_* minutes
    (the daemon evaluates it even when no run happens: a tick that never comes is noticed)."""
    warn = settings.value("RECONCILE_FRESHNESS_WARN_MINUTES", env)
    fail = settings.value("RECONCILE_FRESHNESS_FAIL_MINUTES", env)
    if warn >= fail:
        raise settings.SettingError(
            f"RECONCILE_FRESHNESS_WARN_MINUTES ({warn:g}) must be less than "
            f"RECONCILE_FRESHNESS_FAIL_MINUTES ({fail:g})"
        )
    return dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(minutes=fail), warn_window=dt.timedelta(minutes=warn)
    )


ASSETS = dg.map_asset_specs(
    lambda spec: (
        spec.replace_attributes(freshness_policy=freshness_policy())
        if spec.key == WORKSPACE_SNAPSHOT
        else spec
    ),
    [chain],
)
