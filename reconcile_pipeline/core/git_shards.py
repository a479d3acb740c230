"""Git stats in shards: the worktrees of one run split into a bounded number of shards (one
Dagster step each, so the step count never grows with the workspaces), each computing as many
worktrees at a time as it holds git slots, then collected into one report."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from reconcile_pipeline.core.git_stats import COLUMNS, NO_PATH, git_stats_for_rows
from reconcile_pipeline.core.values import is_missing

STATS_COLUMNS = ("project_id", *COLUMNS)


@dataclass(frozen=True, slots=True)
class GitTarget:
    workspace_id: str
    project_id: str
    worktree_path: str | None
    default_branch: str


@dataclass(frozen=True)
class GitShard:
    key: str  # a Dagster mapping key: [A-Za-z0-9_]+
    targets: tuple[GitTarget, ...]


def plan_shards(workspaces: pd.DataFrame, max_shards: int, min_shard_size: int) -> list[GitShard]:
    """At most ``max_shards`` shards of at least ``min_shard_size`` worktrees (fewer shards for a
    small fleet), dealt round-robin so that each gets a similar mix; always at least one shard,
    possibly empty, so that the collecting step runs and the assets materialize."""
    targets = [
        GitTarget(str(w), str(p), _text(path), _text(branch) or "main")
        for w, p, path, branch in zip(
            workspaces["workspace_id"],
            workspaces["project_id"],
            workspaces["worktree_path"].astype(object),
            workspaces["default_branch"].astype(object),
            strict=True,
        )
    ]
    count = max(1, min(max_shards, math.ceil(len(targets) / max(1, min_shard_size))))
    return [GitShard(f"shard_{i}", tuple(targets[i::count])) for i in range(count)]


def _text(value: object) -> str | None:
    return None if is_missing(value) else str(value)


def run_shard(
    shard: GitShard,
    *,
    allowed_roots: Sequence[str | os.PathLike[str]] | None,
    timeout_s: float,
    parallel: int = 1,
) -> pd.DataFrame:
    """Git stats of one shard's worktrees, ``parallel`` at a time (STATS_COLUMNS)."""
    frame = git_stats_for_rows(
        [(t.workspace_id, t.worktree_path, t.default_branch) for t in shard.targets],
        allowed_roots=allowed_roots,
        timeout_s=timeout_s,
        parallel=parallel,
    )
    frame.insert(0, "project_id", [t.project_id for t in shard.targets])
    return frame


@dataclass(frozen=True)
class GitStatsReport:
    """The git stats stage's value: every workspace's stats (null with a reason on failure).
    Coverage counts the workspaces that have a worktree path: a workspace without one (a NEW
    one) has no worktree to fail on; a path that does not exist is a failure."""

    stats: pd.DataFrame  # STATS_COLUMNS, sorted by workspace_id
    shards: int

    @property
    def _with_path(self) -> pd.DataFrame:
        return self.stats[self.stats["git_reason"].astype(object) != NO_PATH]

    @property
    def null_reasons(self) -> pd.DataFrame:
        """workspace_id, project_id, reason of every worktree without stats (workspaces without
        a worktree path are not worktrees: see ``problems``)."""
        failed = self._with_path[self._with_path["git_reason"].notna()]
        return failed[["workspace_id", "project_id", "git_reason"]].rename(
            columns={"git_reason": "reason"}
        )

    @property
    def problems(self) -> pd.DataFrame:
        """Every workspace without stats and why, as problem rows (field ``git_stats``)."""
        failed = self.stats[self.stats["git_reason"].notna()]
        return (
            failed[["workspace_id", "project_id", "git_reason"]]
            .rename(columns={"git_reason": "reason"})
            .assign(field="git_stats", value=None)
        )

    @property
    def worktrees(self) -> int:
        """Workspaces with a worktree path."""
        return len(self._with_path)

    @property
    def with_stats(self) -> int:
        return self.worktrees - len(self.null_reasons)

    @property
    def git_processes(self) -> int:
        return int(self.stats["git_processes"].sum())

    @property
    def coverage(self) -> float:
        """Share of worktrees with stats (1.0 with no worktree at all)."""
        return 1.0 if not self.worktrees else self.with_stats / self.worktrees


def collect_shards(frames: Sequence[pd.DataFrame]) -> GitStatsReport:
    """The git stats stage's report from its shards."""
    stats = pd.concat(list(frames), ignore_index=True) if frames else _empty()
    return GitStatsReport(stats.sort_values("workspace_id", ignore_index=True), len(frames))


def _empty() -> pd.DataFrame:
    frame = git_stats_for_rows([])
    frame.insert(0, "project_id", pd.Series([], dtype=object))
    return frame
