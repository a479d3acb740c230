"""The asset chain: workspace_extract → git_stats → authoritative_snapshots → snapshot_drift →
workspace_snapshot, as ONE graph-backed asset definition of three stages:

1. ``extract_and_plan``: the poll start, the app DB read, the plan of git shards;
2. ``compute_git_shard``: one step per shard (a ``DynamicOut``), at most 3 at once;
3. ``reconcile_snapshots``: git stats collected, the authoritative snapshot, drift, the table's
   update and every check.

The five assets keep their own lineage (``internal_asset_deps``) and materializations, partitioned
per project with a single-run backfill policy; the stage values (the run's ExtractBatch, the
shards' frames) pass between the steps inside the run.
"""

import warnings

import dagster as dg

from reconcile_pipeline.defs.reconciliation.extract import extract_and_plan
from reconcile_pipeline.defs.reconciliation.git import compute_git_shard
from reconcile_pipeline.defs.reconciliation.keys import (
    AUTHORITATIVE_SNAPSHOTS,
    CHAIN,
    CHECK_SPECS,
    GIT_STATS,
    OUTPUTS,
    SNAPSHOT_DRIFT,
    WORKSPACE_EXTRACT,
    WORKSPACE_SNAPSHOT,
    output_name,
)
from reconcile_pipeline.defs.reconciliation.partitions import projects_partitions
from reconcile_pipeline.defs.reconciliation.reconcile import reconcile_snapshots

# BackfillPolicy.single_run() is what makes one run cover a partition range; it is marked beta.
warnings.filterwarnings("ignore", category=dg.BetaWarning, message=".*backfill_policy.*")
warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*partitions_def.*")

ASSET_GROUP = "reconciliation"
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


@dg.graph(out={name: dg.GraphOut() for name in OUTPUTS})
def reconcile_chain():
    extract, batch, shards = extract_and_plan()
    results = reconcile_snapshots(batch, shards.map(compute_git_shard).collect())
    return dict(zip(OUTPUTS, (extract, *results), strict=True))


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
    group_name=ASSET_GROUP,
    descriptions_by_output_name={output_name(k): d for k, d in DESCRIPTIONS.items()},
    owners_by_output_name={output_name(key): OWNERS for key in CHAIN},
    tags_by_output_name={
        output_name(key): {f"dagster/kind/{kind}": "" for kind in kinds}
        for key, kinds in KINDS.items()
    },
    check_specs=CHECK_SPECS,
)
