"""Per-project dynamic partitions: a backfill after an outage targets all or some projects.

The sensor keeps the partition set equal to the app DB's live projects each tick; a run over
every partition is the regular reconciliation (one run, one DB read).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg

PROJECTS = "projects"
projects_partitions = dg.DynamicPartitionsDefinition(name=PROJECTS)


@dataclass(frozen=True)
class PartitionSync:
    add: list[str]
    delete: list[str]
    keys_after: list[str]  # in the order Dagster will hold them: a range first...last is all

    @property
    def full_range(self) -> str | None:
        return f"{self.keys_after[0]}...{self.keys_after[-1]}" if self.keys_after else None

    def requests(self) -> list:
        out: list = []
        if self.delete:
            out.append(projects_partitions.build_delete_request(self.delete))
        if self.add:
            out.append(projects_partitions.build_add_request(self.add))
        return out


def plan_sync(current: Sequence[str], live_projects: Sequence[str]) -> PartitionSync:
    live = list(dict.fromkeys(live_projects))
    live_set, current_set = set(live), set(current)
    delete = [k for k in current if k not in live_set]
    add = sorted(k for k in live if k not in current_set)
    keys_after = [k for k in current if k in live_set] + add
    return PartitionSync(add=add, delete=delete, keys_after=keys_after)


def _live(projects):
    # NULL or garbage in isArchived counts as live, as in the extract.
    return ~projects["is_archived"].astype("boolean").fillna(False).astype(bool)


def live_project_ids(projects) -> list[str]:
    """Project ids of the app DB's non-archived projects (a ``list_projects`` frame)."""
    return projects.loc[_live(projects), "project_id"].astype(str).tolist()


def live_workspaces(projects) -> int:
    """How many workspaces a run over every live project reads (a ``list_projects`` frame)."""
    return int(projects.loc[_live(projects), "workspaces"].sum())


def range_tags(keys: Sequence[str]) -> dict[str, str]:
    """Run tags that make one run cover every partition from the first key to the last."""
    return {
        "dagster/asset_partition_range_start": keys[0],
        "dagster/asset_partition_range_end": keys[-1],
    }


def covers_all_projects(context: dg.AssetExecutionContext) -> bool:
    """True when this run targets every current project: stale cleanup may then reach rows
    whose project is gone from the app DB."""
    current = set(context.instance.get_dynamic_partitions(PROJECTS))
    return set(context.partition_keys) >= current
