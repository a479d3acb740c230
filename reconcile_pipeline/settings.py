"""Every setting once: name, kind, default and meaning. The resources read them from here, the
README's configuration table is rendered from here (``reconcile-pipeline settings`` prints it; a
test holds the README to it), and a bad value is a clear error naming the variable.

Every setting is an environment variable; unset (or empty) means the default. No Dagster import:
the CLI uses it too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reconcile_pipeline.concurrency import DEFAULT_GIT_QUEUE
from reconcile_pipeline.core.rules import AUTO, NAMES
from reconcile_pipeline.paths import (
    default_pipeline_db_url,
    demo_app_db_url,
    demo_session_runtime_path,
)

Env = Mapping[str, str]


class SettingError(ValueError):
    """A setting holds a value it cannot take."""


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str  # text | url | int | number | choice | json
    default: Any  # the value when unset; a callable computes it from the environment
    meaning: str
    shown_default: str | None = None  # the README's spelling of a computed default
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def default_value(self, env: Env) -> Any:
        return self.default(env) if callable(self.default) else self.default

    def parse(self, raw: str) -> Any:
        text = raw.strip()
        if self.kind == "int":
            try:
                value: Any = int(text)
            except ValueError:
                raise SettingError(f"{self.name} must be a whole number, got {raw!r}") from None
        elif self.kind == "number":
            try:
                value = float(text)
            except ValueError:
                raise SettingError(f"{self.name} must be a number, got {raw!r}") from None
        elif self.kind == "choice":
            value = text.lower()
            if value not in self.choices:
                raise SettingError(
                    f"{self.name} must be one of {', '.join(self.choices)}, got {raw!r}"
                )
        elif self.kind == "json":
            try:
                value = json.loads(text)
            except ValueError as exc:
                raise SettingError(f"{self.name} must be JSON: {exc}") from None
            if not isinstance(value, dict):
                raise SettingError(f"{self.name} must be a JSON object, got {raw!r}")
        else:
            value = text
        if isinstance(value, int | float):
            low, high = self.minimum, self.maximum
            if (low is not None and value < low) or (high is not None and value > high):
                bounds = f"from {low:g}" if high is None else f"from {low:g} to {high:g}"
                raise SettingError(f"{self.name} must be {bounds}, got {raw!r}")
        return value

    @property
    def shown(self) -> str:
        if self.shown_default is not None:
            return self.shown_default
        if self.default in (None, ""):
            return "empty"
        return f"`{self.default}`"


def _demo_or_none(env: Env, demo: Callable[[], Any], otherwise: Any) -> Any:
    """The embedded default points at the demo app when no app DB is configured."""
    return otherwise if env.get("RECONCILE_APP_DB_URL") else demo()


SETTINGS_LIST: tuple[Setting, ...] = (
    Setting(
        "DAGSTER_HOME",
        "text",
        "./dagster_home",
        "Dagster instance (`dagster.yaml`), pipeline DB and demo app",
        shown_default="`./dagster_home`",
    ),
    Setting(
        "RECONCILE_APP_DB_URL",
        "url",
        lambda env: demo_app_db_url(),
        "the app DB (SQLAlchemy URL, SQLite or PostgreSQL; a plain `postgresql://` works), "
        "read only, in any of the app's schema generations",
        shown_default="demo app: `sqlite:///$DAGSTER_HOME/demo_app/app.db`",
    ),
    Setting(
        "RECONCILE_PIPELINE_DB_URL",
        "url",
        lambda env: default_pipeline_db_url(),
        "where `workspace_snapshot`, `drift_ledger`, `reconcile_run` live",
        shown_default="`sqlite:///$DAGSTER_HOME/pipeline.db`",
    ),
    Setting(
        "RECONCILE_SESSION_RUNTIME",
        "choice",
        lambda env: _demo_or_none(env, lambda: "file", "none"),
        "where live session state comes from: `none`, `file` or `http`",
        shown_default="`none` (demo: `file`)",
        choices=("none", "file", "http"),
    ),
    Setting(
        "RECONCILE_SESSION_RUNTIME_LOCATION",
        "text",
        lambda env: _demo_or_none(env, lambda: str(demo_session_runtime_path()), ""),
        "path or URL of the session runtime document",
        shown_default="(demo: `$DAGSTER_HOME/demo_app/session_runtime.json`)",
    ),
    Setting(
        "RECONCILE_RULE_SET",
        "choice",
        AUTO,
        "the app's rules the derived fields follow: `auto` (a gen 1 DB gets `2026-02`, gen 2 "
        "and 3 get `2026-08`), `2026-02` or `2026-08` (`docs/CONTRACT.md`, Rule sets)",
        choices=(AUTO, *NAMES),
    ),
    Setting(
        "RECONCILE_GIT_ALLOWED_ROOTS",
        "text",
        "",
        "`:`-separated roots; git never runs on a worktree outside them",
        shown_default="empty (any path)",
    ),
    Setting(
        "RECONCILE_GIT_TIMEOUT_S",
        "number",
        60.0,
        "time budget of the git work of one worktree, seconds",
        minimum=0.1,
    ),
    Setting(
        "RECONCILE_GIT_MAX_SHARDS",
        "int",
        3,
        (
            "git shards (Dagster steps) per run in step processes; 3 = one wave of the 3 git "
            "slots (a run in process has one)"
        ),
        minimum=1,
        maximum=64,
    ),
    Setting(
        "RECONCILE_GIT_MIN_SHARD_SIZE",
        "int",
        25,
        "fewer worktrees than this per shard means fewer shards",
        minimum=1,
    ),
    Setting(
        "RECONCILE_IN_PROCESS_MAX_WORKSPACES",
        "int",
        2000,
        "a fleet up to this many workspaces runs in one process (one git shard, 3 worktrees at "
        "a time); a larger one in step processes, 3 git shards at once",
        minimum=0,
    ),
    Setting(
        "RECONCILE_MAX_PRUNE_FRACTION",
        "number",
        0.5,
        "never remove more than this share of the covered snapshots in one run...",
        minimum=0.0,
        maximum=1.0,
    ),
    Setting(
        "RECONCILE_MIN_PRUNE_GUARD",
        "int",
        5,
        "...unless it is at most this many rows",
        minimum=0,
    ),
    Setting(
        "RECONCILE_DRIFT_RATE_WARN",
        "number",
        0.05,
        "drift rate (drifted / compared workspaces) above which the drift check warns",
        minimum=0.0,
        maximum=1.0,
    ),
    Setting(
        "RECONCILE_FLAP_RUNS",
        "int",
        10,
        "the window of the flapping check: the last this many runs...",
        minimum=2,
    ),
    Setting(
        "RECONCILE_FLAP_MIN_RUNS",
        "int",
        3,
        "...in at least this many of which one field of one workspace drifted is a flap",
        minimum=2,
    ),
    Setting(
        "RECONCILE_TOMBSTONE_GRACE_MINUTES",
        "number",
        10.0,
        "a removed snapshot is not re-created by a write stamped at or before its removal for "
        "this long (longer than a run)",
        minimum=0.0,
    ),
    Setting(
        "RECONCILE_CHANGE_RETENTION_HOURS",
        "number",
        24.0,
        "how long the change feed (`workspace_snapshot_change`) keeps a change",
        minimum=0.0,
    ),
    Setting(
        "RECONCILE_MIN_GIT_COVERAGE",
        "number",
        0.9,
        "share of worktrees with git stats below which the coverage check warns",
        minimum=0.0,
        maximum=1.0,
    ),
    Setting(
        "RECONCILE_FRESHNESS_WARN_MINUTES",
        "number",
        2.0,
        "workspace_snapshot is flagged stale (warning) when not materialized for this long: "
        "ticks stopped (daemon down, sensor off, queue stuck); Dagster's minimum is 1",
        minimum=1.0,
    ),
    Setting(
        "RECONCILE_FRESHNESS_FAIL_MINUTES",
        "number",
        5.0,
        "...and failed after this long (more than the warning)",
        minimum=1.0,
    ),
    Setting(
        "RECONCILE_EXECUTOR",
        "choice",
        "multiprocess",
        "`multiprocess` (local processes, at most 3 git steps at once), `celery` or `k8s`: "
        "`docs/DISTRIBUTED.md`",
        choices=("multiprocess", "celery", "k8s"),
    ),
    Setting(
        "RECONCILE_CELERY_BROKER",
        "url",
        "",
        "broker URL for `celery`",
        shown_default="dagster-celery's",
    ),
    Setting(
        "RECONCILE_CELERY_BACKEND",
        "url",
        "",
        "result backend URL for `celery`",
        shown_default="dagster-celery's",
    ),
    Setting(
        "RECONCILE_CELERY_GIT_QUEUE",
        "text",
        DEFAULT_GIT_QUEUE,
        "celery queue of the git shard steps (workers that see the worktrees)",
    ),
    Setting(
        "RECONCILE_CELERY_DEFAULT_QUEUE",
        "text",
        "",
        "celery queue of every other step",
        shown_default="`dagster`",
    ),
    Setting(
        "RECONCILE_K8S_GIT_STEP_CONFIG",
        "json",
        None,
        "JSON pod config (volume with the worktrees) for the git steps under `k8s`",
    ),
    Setting(
        "RECONCILE_RUN_RETENTION_HOURS",
        "number",
        24.0,
        "finished reconcile runs older than this lose (hourly) their log lines and step "
        "events, compute logs and step outputs; the run, its status, asset materializations "
        "and check results stay",
        minimum=0.0,
    ),
    Setting(
        "RECONCILE_ASSET_HISTORY_DAYS",
        "number",
        30.0,
        "finished reconcile runs older than this are deleted entirely, with their asset "
        "materializations and check results",
        minimum=0.0,
    ),
    Setting(
        "RECONCILE_RUN_RETENTION_KEEP",
        "int",
        100,
        "...but the newest this many runs are never touched",
        minimum=0,
    ),
    Setting(
        "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS",
        "text",
        "true",
        "Dagster's: one planned event per asset and run, not per project (a failed run then "
        "does not mark its projects failed)",
    ),
    Setting(
        "DAGSTER_EVENT_BATCH_SIZE",
        "text",
        "1000",
        "Dagster's: a run's per-project materializations are stored as one batch (one `INSERT` "
        "on PostgreSQL)",
    ),
)
SETTINGS: Mapping[str, Setting] = {s.name: s for s in SETTINGS_LIST}


def is_set(name: str, env: Env = os.environ) -> bool:
    return bool((env.get(name) or "").strip())


def value(name: str, env: Env = os.environ) -> Any:
    """The setting's value: parsed from the environment when set, else its default."""
    setting = SETTINGS[name]
    if not is_set(name, env):
        return setting.default_value(env)
    return setting.parse(env[name])


def check_all(env: Env = os.environ) -> None:
    """Parse every setting that is set, so that a bad one fails the code location's load with
    its name instead of a run later; settings that bound each other must agree."""
    for name in SETTINGS:
        if is_set(name, env):
            SETTINGS[name].parse(env[name])
    runs, at_least = value("RECONCILE_FLAP_RUNS", env), value("RECONCILE_FLAP_MIN_RUNS", env)
    if at_least > runs:
        raise SettingError(
            f"RECONCILE_FLAP_MIN_RUNS ({at_least}) must not exceed RECONCILE_FLAP_RUNS ({runs}): "
            "the flapping check could never fire"
        )


def markdown_table() -> str:
    """The README's configuration table."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    lines += [f"| `{s.name}` | {s.shown} | {s.meaning} |" for s in SETTINGS_LIST]
    return "\n".join(lines)
