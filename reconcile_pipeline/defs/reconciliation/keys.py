"""Names of the chain's assets and checks: the lineage the UI shows, and what tests name."""

import dagster as dg

WORKSPACE_EXTRACT = dg.AssetKey("workspace_extract")
GIT_STATS = dg.AssetKey("git_stats")
AUTHORITATIVE_SNAPSHOTS = dg.AssetKey("authoritative_snapshots")
SNAPSHOT_DRIFT = dg.AssetKey("snapshot_drift")
WORKSPACE_SNAPSHOT = dg.AssetKey("workspace_snapshot")
CHAIN = (WORKSPACE_EXTRACT, GIT_STATS, AUTHORITATIVE_SNAPSHOTS, SNAPSHOT_DRIFT, WORKSPACE_SNAPSHOT)

GIT_COVERAGE_CHECK = "git_stats_coverage"
DRIFT_RATE_CHECK = "drift_rate_below_threshold"
NO_STALE_ENTRIES_CHECK = "no_stale_entries"
TABLE_CONVERGED_CHECK = "table_matches_authoritative"
FLAPPING_CHECK = "no_flapping_fields"
CHECK_DESCRIPTIONS = {
    GIT_COVERAGE_CHECK: "Share of worktrees with git stats; lists the ones without and why.",
    DRIFT_RATE_CHECK: "Warns when the share of drifted workspaces exceeds the threshold.",
    NO_STALE_ENTRIES_CHECK: "No snapshot is left for an archived or deleted workspace.",
    TABLE_CONVERGED_CHECK: (
        "The table equals the authoritative values, except where a fresher event-driven write "
        "won (reported, not failed)."
    ),
    FLAPPING_CHECK: (
        "Warns when one field of one workspace keeps drifting (RECONCILE_FLAP_MIN_RUNS of the "
        "last RECONCILE_FLAP_RUNS runs): typically two writers that disagree."
    ),
}
CHECK_SPECS = (
    dg.AssetCheckSpec(
        GIT_COVERAGE_CHECK, asset=GIT_STATS, description=CHECK_DESCRIPTIONS[GIT_COVERAGE_CHECK]
    ),
    dg.AssetCheckSpec(
        DRIFT_RATE_CHECK, asset=SNAPSHOT_DRIFT, description=CHECK_DESCRIPTIONS[DRIFT_RATE_CHECK]
    ),
    dg.AssetCheckSpec(
        FLAPPING_CHECK, asset=SNAPSHOT_DRIFT, description=CHECK_DESCRIPTIONS[FLAPPING_CHECK]
    ),
    dg.AssetCheckSpec(
        NO_STALE_ENTRIES_CHECK,
        asset=WORKSPACE_SNAPSHOT,
        description=CHECK_DESCRIPTIONS[NO_STALE_ENTRIES_CHECK],
    ),
    dg.AssetCheckSpec(
        TABLE_CONVERGED_CHECK,
        asset=WORKSPACE_SNAPSHOT,
        description=CHECK_DESCRIPTIONS[TABLE_CONVERGED_CHECK],
    ),
)


def output_name(key: dg.AssetKey) -> str:
    """The graph output of an asset: its name."""
    return key.path[-1]


# The graph's outputs: one per asset, then one per check (the name Dagster gives a check output).
OUTPUTS: tuple[str, ...] = (
    *(output_name(key) for key in CHAIN),
    *(spec.get_python_identifier() for spec in CHECK_SPECS),
)
