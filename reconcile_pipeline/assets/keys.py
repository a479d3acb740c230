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
CHECKS = (
    (GIT_STATS, GIT_COVERAGE_CHECK),
    (SNAPSHOT_DRIFT, DRIFT_RATE_CHECK),
    (WORKSPACE_SNAPSHOT, NO_STALE_ENTRIES_CHECK),
    (WORKSPACE_SNAPSHOT, TABLE_CONVERGED_CHECK),
)


def output_name(key: dg.AssetKey) -> str:
    return key.path[-1]


def check_output_name(key: dg.AssetKey, check: str) -> str:
    """The graph output of a check: the name Dagster gives it (asset name, check name)."""
    return f"{output_name(key)}_{check}"
