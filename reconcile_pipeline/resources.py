"""Dagster resources: the app DB, the pipeline DB, the session runtime, git and the run policy.

Each field is read from an environment variable when it is set (shown as such in the UI), else it
takes the embedded default: SQLite files under DAGSTER_HOME and the demo app built there.
"""

from __future__ import annotations

import functools
import os

import dagster as dg
import sqlalchemy as sa

from reconcile_pipeline.core.db import app_engine, safe_url
from reconcile_pipeline.core.ledger import DriftLedger
from reconcile_pipeline.core.session_runtime import RuntimeRead, read_session_runtime
from reconcile_pipeline.core.store import SnapshotStore
from reconcile_pipeline.paths import (
    default_pipeline_db_url,
    demo_app_db_url,
    demo_session_runtime_path,
)


def env_or(name: str, default: str) -> str | dg.EnvVar:
    """``dg.EnvVar(name)`` when the variable is set, else the embedded default."""
    return dg.EnvVar(name) if os.environ.get(name) else default


@functools.cache
def _store(url: str) -> SnapshotStore:
    # One engine (connection pool) per process and URL, reused by every step of a run.
    return SnapshotStore(url)


@functools.cache
def _ledger(url: str) -> DriftLedger:
    return DriftLedger(_store(url).engine)


@functools.cache
def _app_engine(url: str) -> sa.Engine:
    return app_engine(url)


class AppDatabase(dg.ConfigurableResource):
    """The app's database (Prisma schema), read only. Env: RECONCILE_APP_DB_URL."""

    url: str

    def engine(self) -> sa.Engine:
        return _app_engine(self.url)

    @property
    def display_url(self) -> str:
        return safe_url(self.url)


class PipelineDatabase(dg.ConfigurableResource):
    """The pipeline DB: workspace_snapshot, drift_ledger, reconcile_run.
    Env: RECONCILE_PIPELINE_DB_URL."""

    url: str

    def store(self) -> SnapshotStore:
        return _store(self.url)

    def ledger(self) -> DriftLedger:
        return _ledger(self.url)

    @property
    def display_url(self) -> str:
        return safe_url(self.url)


class SessionRuntime(dg.ConfigurableResource):
    """Where live session state comes from: 'none', 'file' (JSON) or 'http' (GET).
    Env: RECONCILE_SESSION_RUNTIME (kind), RECONCILE_SESSION_RUNTIME_LOCATION (path or URL)."""

    kind: str = "none"
    location: str = ""
    timeout_s: float = 2.0
    retries: int = 2

    def read(self) -> RuntimeRead:
        return read_session_runtime(
            self.kind, self.location or None, timeout_s=self.timeout_s, retries=self.retries
        )


class GitWorktrees(dg.ConfigurableResource):
    """Git stats settings. Env: RECONCILE_GIT_ALLOWED_ROOTS (os.pathsep-separated; empty = any),
    RECONCILE_GIT_TIMEOUT_S, RECONCILE_GIT_MAX_SHARDS, RECONCILE_GIT_MIN_SHARD_SIZE."""

    allowed_roots: str = ""
    timeout_s: float = 60.0
    # Shards are Dagster steps: one per git slot (3) keeps the workers busy in a single wave,
    # and the step count never grows with the workspaces.
    max_shards: int = 3
    min_shard_size: int = 25

    def roots(self) -> list[str] | None:
        roots = [r for r in self.allowed_roots.split(os.pathsep) if r.strip()]
        return roots or None


class ReconcilePolicy(dg.ConfigurableResource):
    """Guards and thresholds. Env: RECONCILE_MAX_PRUNE_FRACTION, RECONCILE_MIN_PRUNE_GUARD,
    RECONCILE_DRIFT_RATE_WARN, RECONCILE_MIN_GIT_COVERAGE."""

    # Never remove more than this fraction of a run's covered snapshots in one run...
    max_prune_fraction: float = 0.5
    # ...unless that is at most this many rows (small fleets may legitimately shrink).
    min_prune_guard: int = 5
    drift_rate_warn: float = 0.05
    min_git_coverage: float = 0.9


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources as configured by the environment (see README, "Configuration"). Without
    RECONCILE_APP_DB_URL they point at the demo app under DAGSTER_HOME and its runtime file."""
    real_app = bool(os.environ.get("RECONCILE_APP_DB_URL"))
    return {
        "app_db": AppDatabase(url=env_or("RECONCILE_APP_DB_URL", demo_app_db_url())),
        "pipeline_db": PipelineDatabase(
            url=env_or("RECONCILE_PIPELINE_DB_URL", default_pipeline_db_url())
        ),
        "session_runtime": SessionRuntime(
            kind=env_or("RECONCILE_SESSION_RUNTIME", "none" if real_app else "file"),
            location=env_or(
                "RECONCILE_SESSION_RUNTIME_LOCATION",
                "" if real_app else str(demo_session_runtime_path()),
            ),
        ),
        "git": GitWorktrees(
            allowed_roots=env_or("RECONCILE_GIT_ALLOWED_ROOTS", ""),
            timeout_s=env_number("RECONCILE_GIT_TIMEOUT_S", 60.0),
            max_shards=int(env_number("RECONCILE_GIT_MAX_SHARDS", 3)),
            min_shard_size=int(env_number("RECONCILE_GIT_MIN_SHARD_SIZE", 25)),
        ),
        "policy": ReconcilePolicy(
            max_prune_fraction=env_number("RECONCILE_MAX_PRUNE_FRACTION", 0.5),
            min_prune_guard=int(env_number("RECONCILE_MIN_PRUNE_GUARD", 5)),
            drift_rate_warn=env_number("RECONCILE_DRIFT_RATE_WARN", 0.05),
            min_git_coverage=env_number("RECONCILE_MIN_GIT_COVERAGE", 0.9),
        ),
    }


def env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc
