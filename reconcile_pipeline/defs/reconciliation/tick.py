"""One tick, planned once for the sensor and the command line: the app DB's projects, the
partition sync they call for, and the run that covers them all (its tags and run config)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from reconcile_pipeline.core.extract import list_projects
from reconcile_pipeline.defs.reconciliation.partitions import (
    PROJECTS,
    PartitionSync,
    live_project_ids,
    live_workspaces,
    plan_sync,
    range_tags,
)
from reconcile_pipeline.executors import run_config


@dataclass(frozen=True)
class TickPlan:
    projects: pd.DataFrame  # every project of the app DB (core.extract.list_projects)
    sync: PartitionSync  # the partitions to add and delete so that they equal the live projects
    workspaces: int  # what a run over every live project reads

    @property
    def archived(self) -> int:
        return len(self.projects) - len(self.sync.keys_after)

    @property
    def tags(self) -> dict[str, str]:
        """The run covers every partition, first to last."""
        return range_tags(self.sync.keys_after)

    @property
    def run_config(self) -> dict:
        return run_config(self.workspaces)


def plan_tick(app_db: sa.Engine, partitions: Sequence[str]) -> TickPlan:
    """The tick for the app DB behind ``app_db`` and the instance's current ``partitions``;
    an UnknownSchemaError (what the database lacks) or the driver's error when it cannot be read."""
    projects = list_projects(app_db)
    return TickPlan(
        projects=projects,
        sync=plan_sync(partitions, live_project_ids(projects)),
        workspaces=live_workspaces(projects),
    )


def apply_sync(instance: dg.DagsterInstance, sync: PartitionSync) -> None:
    """Apply a partition sync directly (the command line's way; the sensor returns requests)."""
    for key in sync.delete:
        instance.delete_dynamic_partition(PROJECTS, key)
    if sync.add:
        instance.add_dynamic_partitions(PROJECTS, sync.add)
