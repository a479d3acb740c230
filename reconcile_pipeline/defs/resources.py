"""The code location's resources: the app DB, the pipeline DB, the session runtime, git, the run
policy and run retention.

Each field comes from its setting (``settings.py``): a set variable is passed as ``dg.EnvVar``
(shown as such in the UI) once it has parsed, so a bad value fails the code location's load with
its name; an unset one takes the table's default (the embedded default points at SQLite files
under DAGSTER_HOME and the demo app built there). Numbers with a fraction and JSON are passed as
values: ``dg.EnvVar`` carries only text and whole numbers.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import dagster as dg
import sqlalchemy as sa

from reconcile_pipeline import settings
from reconcile_pipeline.core.db import app_engine, safe_url
from reconcile_pipeline.core.ledger import DriftLedger
from reconcile_pipeline.core.reconcile import StagePolicy
from reconcile_pipeline.core.session_runtime import RuntimeRead, read_session_runtime
from reconcile_pipeline.core.store import DEFAULT_TOMBSTONE_GRACE_MS, SnapshotStore

_S = settings.SETTINGS


def from_env(name: str) -> Any:
    """The resource field of setting ``name``: ``dg.EnvVar`` when it is set, else its default."""
    setting = _S[name]
    if not settings.is_set(name):
        return setting.default_value(os.environ)
    parsed = setting.parse(os.environ[name])  # a clear error now, not in a run later
    if setting.kind == "int":
        return dg.EnvVar.int(name)
    if setting.kind in ("text", "url") or (setting.kind == "choice" and os.environ[name] == parsed):
        return dg.EnvVar(name)
    return parsed


@functools.cache
def _store(url: str, tombstone_grace_ms: int) -> SnapshotStore:
    # One engine (connection pool) per process and URL, reused by every step of a run.
    return SnapshotStore(url, tombstone_grace_ms=tombstone_grace_ms)


@functools.cache
def _ledger(url: str) -> DriftLedger:
    return DriftLedger(_store(url, DEFAULT_TOMBSTONE_GRACE_MS).engine)


@functools.cache
def _app_engine(url: str) -> sa.Engine:
    return app_engine(url)


class AppDatabase(dg.ConfigurableResource):
    """The app's database, read only. Env: RECONCILE_APP_DB_URL."""

    url: str

    def engine(self) -> sa.Engine:
        return _app_engine(self.url)

    @property
    def display_url(self) -> str:
        return safe_url(self.url)


class PipelineDatabase(dg.ConfigurableResource):
    """The pipeline DB: workspace_snapshot, drift_ledger, reconcile_run, reconcile_problem.
    Env: RECONCILE_PIPELINE_DB_URL."""

    url: str
    tombstone_grace_minutes: float = _S["RECONCILE_TOMBSTONE_GRACE_MINUTES"].default

    def store(self) -> SnapshotStore:
        return _store(self.url, round(self.tombstone_grace_minutes * 60_000))

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
    timeout_s: float = _S["RECONCILE_GIT_TIMEOUT_S"].default
    max_shards: int = _S["RECONCILE_GIT_MAX_SHARDS"].default
    min_shard_size: int = _S["RECONCILE_GIT_MIN_SHARD_SIZE"].default

    def roots(self) -> list[str] | None:
        roots = [r for r in self.allowed_roots.split(os.pathsep) if r.strip()]
        return roots or None


class ReconcilePolicy(dg.ConfigurableResource):
    """Rules, guards and thresholds. Env: RECONCILE_RULE_SET, RECONCILE_MAX_PRUNE_FRACTION,
    RECONCILE_MIN_PRUNE_GUARD, RECONCILE_DRIFT_RATE_WARN, RECONCILE_MIN_GIT_COVERAGE."""

    rule_set: str = _S["RECONCILE_RULE_SET"].default
    flap_runs: int = _S["RECONCILE_FLAP_RUNS"].default
    flap_min_runs: int = _S["RECONCILE_FLAP_MIN_RUNS"].default
    change_retention_hours: float = _S["RECONCILE_CHANGE_RETENTION_HOURS"].default

    max_prune_fraction: float = _S["RECONCILE_MAX_PRUNE_FRACTION"].default
    min_prune_guard: int = _S["RECONCILE_MIN_PRUNE_GUARD"].default
    drift_rate_warn: float = _S["RECONCILE_DRIFT_RATE_WARN"].default
    min_git_coverage: float = _S["RECONCILE_MIN_GIT_COVERAGE"].default

    def stage(self) -> StagePolicy:
        return StagePolicy(
            max_prune_fraction=self.max_prune_fraction,
            min_prune_guard=self.min_prune_guard,
            flap_runs=self.flap_runs,
            flap_min_runs=self.flap_min_runs,
            change_retention_ms=round(self.change_retention_hours * 3_600_000),
        )


def default_resources() -> dict[str, dg.ConfigurableResource]:
    """Resources as the environment configures them (README, "Configuration")."""
    from reconcile_pipeline.defs.retention.purge import RunRetention

    return {
        "app_db": AppDatabase(url=from_env("RECONCILE_APP_DB_URL")),
        "pipeline_db": PipelineDatabase(
            url=from_env("RECONCILE_PIPELINE_DB_URL"),
            tombstone_grace_minutes=from_env("RECONCILE_TOMBSTONE_GRACE_MINUTES"),
        ),
        "session_runtime": SessionRuntime(
            kind=from_env("RECONCILE_SESSION_RUNTIME"),
            location=from_env("RECONCILE_SESSION_RUNTIME_LOCATION"),
        ),
        "git": GitWorktrees(
            allowed_roots=from_env("RECONCILE_GIT_ALLOWED_ROOTS"),
            timeout_s=from_env("RECONCILE_GIT_TIMEOUT_S"),
            max_shards=from_env("RECONCILE_GIT_MAX_SHARDS"),
            min_shard_size=from_env("RECONCILE_GIT_MIN_SHARD_SIZE"),
        ),
        "policy": ReconcilePolicy(
            rule_set=from_env("RECONCILE_RULE_SET"),
            flap_runs=from_env("RECONCILE_FLAP_RUNS"),
            flap_min_runs=from_env("RECONCILE_FLAP_MIN_RUNS"),
            change_retention_hours=from_env("RECONCILE_CHANGE_RETENTION_HOURS"),
            max_prune_fraction=from_env("RECONCILE_MAX_PRUNE_FRACTION"),
            min_prune_guard=from_env("RECONCILE_MIN_PRUNE_GUARD"),
            drift_rate_warn=from_env("RECONCILE_DRIFT_RATE_WARN"),
            min_git_coverage=from_env("RECONCILE_MIN_GIT_COVERAGE"),
        ),
        "retention": RunRetention(
            max_age_hours=from_env("RECONCILE_RUN_RETENTION_HOURS"),
            asset_history_days=from_env("RECONCILE_ASSET_HISTORY_DAYS"),
            keep_latest=from_env("RECONCILE_RUN_RETENTION_KEEP"),
        ),
    }


@dg.definitions
def resources() -> dg.Definitions:
    return dg.Definitions(resources=default_resources())
