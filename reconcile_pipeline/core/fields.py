"""The snapshot contract (docs/CONTRACT.md): raw fields, their field groups, enums and defaults.

Column names are snake_case, as stored in ``workspace_snapshot``. DateTime values are stored as
epoch milliseconds (UTC) so that SQLite and PostgreSQL agree and the app can read them as-is.
"""

from __future__ import annotations

from types import MappingProxyType

WORKSPACE_STATUS = ("NEW", "PROVISIONING", "READY", "FAILED", "ARCHIVING", "ARCHIVED")
RUN_SCRIPT_STATUS = ("IDLE", "STARTING", "RUNNING", "STOPPING", "COMPLETED", "FAILED")
PR_STATE = ("NONE", "DRAFT", "OPEN", "CHANGES_REQUESTED", "APPROVED", "MERGED", "CLOSED")
PR_CI_STATUS = ("UNKNOWN", "PENDING", "SUCCESS", "FAILURE")
RATCHET_STATE = (
    "IDLE",
    "CI_RUNNING",
    "CI_FAILED",
    "MERGE_CONFLICT",
    "REVIEW_PENDING",
    "READY",
    "MERGED",
)
PENDING_REQUEST_TYPE = ("plan_approval", "user_question", "permission_request")
WORKSPACE_MODE = ("STANDARD", "AUTO_ITERATION")
AUTO_ITERATION_STATUS = (
    "IDLE",
    "RUNNING",
    "PAUSED",
    "COMPLETED",
    "MAX_ITERATIONS",
    "STOPPED",
    "FAILED",
)
RATCHET_DISPATCH_OUTCOME = ("RUNNING", "COMPLETED", "DIED")

# Enum-valued raw fields and their allowed values (None allowed only where the field is nullable).
ENUMS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "status": WORKSPACE_STATUS,
        "run_script_status": RUN_SCRIPT_STATUS,
        "pr_state": PR_STATE,
        "pr_ci_status": PR_CI_STATUS,
        "ratchet_state": RATCHET_STATE,
        "pending_request_type": PENDING_REQUEST_TYPE,
        "mode": WORKSPACE_MODE,
        "auto_iteration_status": AUTO_ITERATION_STATUS,
        "ratchet_dispatch_outcome": RATCHET_DISPATCH_OUTCOME,
    }
)

# Field group -> raw fields it owns, in column order. Each group has its own timestamp column.
GROUPS: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "workspace": (
            "name",
            "status",
            "created_at",
            "branch_name",
            "has_had_sessions",
            "mode",
            "auto_iteration_status",
        ),
        "pr": (
            "pr_url",
            "pr_number",
            "pr_state",
            "pr_ci_status",
            "pr_updated_at",
            "has_merge_conflict",
        ),
        "session": ("is_working", "pending_request_type", "session_summaries"),
        "ratchet": (
            "ratchet_enabled",
            "ratchet_state",
            "ratchet_dispatch_outcome",
            "ratchet_dispatch_retry_count",
            "ratchet_dispatch_stalled",
        ),
        "run_script": ("run_script_status",),
        "reconciliation": (
            "git_total",
            "git_additions",
            "git_deletions",
            "git_has_uncommitted",
            "last_activity_at",
        ),
    }
)

RAW_FIELDS: tuple[str, ...] = tuple(f for fields in GROUPS.values() for f in fields)
GROUP_OF: MappingProxyType[str, str] = MappingProxyType(
    {f: g for g, fields in GROUPS.items() for f in fields}
)
TS_COLUMN: MappingProxyType[str, str] = MappingProxyType({g: f"ts_{g}" for g in GROUPS})
TS_COLUMNS: tuple[str, ...] = tuple(TS_COLUMN.values())
# Who wrote each group last: the ``source`` of the write that set its timestamp.
SOURCE_COLUMN: MappingProxyType[str, str] = MappingProxyType({g: f"source_{g}" for g in GROUPS})
SOURCE_COLUMNS: tuple[str, ...] = tuple(SOURCE_COLUMN.values())

DERIVED_FIELDS: tuple[str, ...] = (
    "flow_phase",
    "ci_observation",
    "ratchet_button_animated",
    "kanban_column",
    "sidebar_activity_state",
    "sidebar_ci_state",
    "status_reason_code",
    "status_reason_label",
    "status_reason_tone",
    "status_reason_needs_user",
)
# Derived columns that hold booleans.
DERIVED_BOOL_FIELDS = frozenset({"ratchet_button_animated", "status_reason_needs_user"})

BOOL_FIELDS = frozenset(
    {
        "has_had_sessions",
        "has_merge_conflict",
        "is_working",
        "ratchet_enabled",
        "git_has_uncommitted",
        "ratchet_dispatch_stalled",
    }
)
INT_FIELDS = frozenset(
    {
        "created_at",
        "pr_number",
        "pr_updated_at",
        "git_total",
        "git_additions",
        "git_deletions",
        "last_activity_at",
        "ratchet_dispatch_retry_count",
    }
)
# Fields held as canonical JSON text (session_summaries: see core/session_summaries.py).
JSON_FIELDS = frozenset({"session_summaries"})
# Columns that hold epoch milliseconds.
TIMESTAMP_FIELDS = frozenset({"created_at", "pr_updated_at", "last_activity_at"})
# Columns that may not be NULL in a snapshot (they have defaults).
NOT_NULL_FIELDS = frozenset(
    {
        "status",
        "pr_state",
        "pr_ci_status",
        "ratchet_state",
        "run_script_status",
        "has_had_sessions",
        "has_merge_conflict",
        "is_working",
        "ratchet_enabled",
        "mode",
        "ratchet_dispatch_retry_count",
        "ratchet_dispatch_stalled",
        "session_summaries",
    }
)

# Defaults of a workspace's first snapshot: status NEW, enums at their idle value, booleans false,
# everything else null.
DEFAULTS: MappingProxyType[str, object] = MappingProxyType(
    {
        **{f: None for f in RAW_FIELDS},
        "status": "NEW",
        "pr_state": "NONE",
        "pr_ci_status": "UNKNOWN",
        "ratchet_state": "IDLE",
        "run_script_status": "IDLE",
        "has_had_sessions": False,
        "has_merge_conflict": False,
        "is_working": False,
        "ratchet_enabled": False,
        "mode": "STANDARD",
        "ratchet_dispatch_retry_count": 0,
        "ratchet_dispatch_stalled": False,
        "session_summaries": "[]",
    }
)

# Fields compared for drift, in group order.
DRIFT_FIELDS: tuple[str, ...] = (
    "status",
    "name",
    "branch_name",
    "pr_state",
    "pr_ci_status",
    "pr_number",
    "has_merge_conflict",
    "ratchet_enabled",
    "ratchet_state",
    "ratchet_dispatch_outcome",
    "ratchet_dispatch_retry_count",
    "run_script_status",
    "is_working",
    "pending_request_type",
    "session_summaries",
)

# Git stats as a unit: all four columns are null together when stats are unknown.
GIT_FIELDS: tuple[str, ...] = ("git_total", "git_additions", "git_deletions", "git_has_uncommitted")


def validate_value(field: str, value: object) -> None:
    """Raise ``ValueError`` when ``value`` is not acceptable for raw ``field``."""
    if field not in GROUP_OF:
        raise ValueError(f"unknown snapshot field {field!r}; expected one of {sorted(GROUP_OF)}")
    if value is None:
        if field in NOT_NULL_FIELDS:
            raise ValueError(f"field {field!r} may not be null")
        return
    if field in ENUMS:
        if value not in ENUMS[field]:
            raise ValueError(
                f"bad value {value!r} for {field!r}; expected one of {list(ENUMS[field])}"
            )
    elif field in BOOL_FIELDS:
        if not isinstance(value, bool):
            raise ValueError(f"field {field!r} takes a bool, got {value!r}")
    elif field in INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"field {field!r} takes an int, got {value!r}")
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"field {field!r} is out of the 64-bit range: {value!r}")
        if field != "created_at" and field not in TIMESTAMP_FIELDS and value < 0:
            raise ValueError(f"field {field!r} may not be negative: {value!r}")
    elif not isinstance(value, str):
        raise ValueError(f"field {field!r} takes a string, got {value!r}")


# ---- the field table: one meaning per column (docs/CONTRACT.md renders it; the UI's column
# descriptions of workspace_snapshot read it) --------------------------------------------------

MEANINGS: MappingProxyType[str, str] = MappingProxyType(
    {
        "workspace_id": "the workspace (Workspace.id); one row per workspace",
        "project_id": "its project (Project.id)",
        "version": "1 after the insert, +1 whenever a content column changes",
        "source": "who wrote the last change (the pipeline writes `reconciliation`)",
        "computed_at": "pipeline DB clock at the last change (epoch ms)",
        "name": "the workspace's name",
        "status": "lifecycle: NEW, PROVISIONING, READY, FAILED, ARCHIVING, ARCHIVED",
        "created_at": "when the workspace was created (epoch ms)",
        "branch_name": "its git branch",
        "has_had_sessions": "whether a session was ever started in it",
        "mode": "STANDARD, or AUTO_ITERATION for an auto-iterating workspace",
        "auto_iteration_status": "the auto-iteration loop's state, when there is one",
        "pr_url": "its pull request",
        "pr_number": "its pull request's number",
        "pr_state": "the pull request's state, NONE without one",
        "pr_ci_status": "the pull request's CI result as last read",
        "pr_updated_at": "when the pull request was last read (epoch ms)",
        "has_merge_conflict": "whether the pull request has a merge conflict",
        "is_working": "whether one of its agent sessions is working",
        "pending_request_type": "what an agent session waits for from the user, if anything",
        "session_summaries": "one summary per agent session, canonical JSON",
        "ratchet_enabled": "whether the ratchet (automatic PR fixing) is on",
        "ratchet_state": "the ratchet's view of the pull request",
        "ratchet_dispatch_outcome": "how the ratchet's last fixer dispatch ended",
        "ratchet_dispatch_retry_count": "fixer re-dispatches after one died",
        "ratchet_dispatch_stalled": "the ratchet will not act again until the PR changes",
        "run_script_status": "the dev server's state",
        "git_total": "files changed against the default branch's merge base",
        "git_additions": "lines added in those files",
        "git_deletions": "lines deleted in those files",
        "git_has_uncommitted": "whether the worktree has uncommitted changes",
        "last_activity_at": "latest session activity (epoch ms)",
        "flow_phase": "derived: where the pull request's flow stands",
        "ci_observation": "derived: what is known of the pull request's CI",
        "ratchet_button_animated": "derived: whether the ratchet button spins",
        "kanban_column": "derived: the board's column, null off the board",
        "sidebar_activity_state": "derived: the sidebar's activity dot",
        "sidebar_ci_state": "derived: the sidebar's CI badge",
        "status_reason_code": "derived (2026-08 rules): why the workspace is where it is",
        "status_reason_label": "derived: the status reason as the app shows it",
        "status_reason_tone": "derived: the status reason's tone",
        "status_reason_needs_user": "derived: whether the user owns the next action",
        "rule_set": "the rule set that derived the row (2026-02 or 2026-08)",
        **{f"ts_{g}": f"when the {g} field group was last written (epoch ms)" for g in GROUPS},
        **{f"source_{g}": f"who wrote the {g} field group last" for g in GROUPS},
    }
)


def _kind(field: str) -> str:
    if field in ENUMS:
        return "enum"
    if field in BOOL_FIELDS:
        return "bool"
    if field in TIMESTAMP_FIELDS:
        return "epoch ms"
    if field in INT_FIELDS:
        return "int ≥ 0"
    if field in JSON_FIELDS:
        return "JSON text"
    return "text"


def raw_field_table() -> str:
    """docs/CONTRACT.md's table of raw fields (a test holds the contract to it)."""
    lines = [
        "| group | field | type | null? | default | values | meaning |",
        "|---|---|---|---|---|---|---|",
    ]
    for group, names in GROUPS.items():
        for i, name in enumerate(names):
            default = DEFAULTS[name]
            shown = "null" if default is None else f"`{str(default).lower()}`"
            if isinstance(default, str):
                shown = f"`{default}`"
            values = " ".join(ENUMS[name]) if name in ENUMS else ""
            lines.append(
                f"| {group if i == 0 else ''} | `{name}` | {_kind(name)} | "
                f"{'not null' if name in NOT_NULL_FIELDS else 'nullable'} | {shown} | "
                f"{f'`{values}`' if values else ''} | {MEANINGS[name]} |"
            )
    return "\n".join(lines)
