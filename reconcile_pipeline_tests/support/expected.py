"""Independent expectations: what the snapshot table must hold, computed WITHOUT the product.

Written on purpose from the contract's text and the app's own rules, not from the product's
code: nothing here imports ``reconcile_pipeline``. The app DB is read with plain ``sqlite3`` and
one hand-written query per schema generation, DateTimes are parsed with the standard library,
git runs as plain ``git`` through ``subprocess``, and the derived fields are a second,
straightforward writing of the decision tables. When the product and this module disagree, one
of them misread the contract.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconcile_pipeline_tests.support.databases import make_engine

# ---- the app DB, read per generation ------------------------------------------------------------


def query(db: Path, sql: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql)]
    finally:
        conn.close()


def generation_of(db: Path) -> int:
    tables = {r["name"] for r in query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "WorkspacePR" in tables:
        return 3
    return 2 if "AgentSession" in tables else 1


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def epoch_ms(value: Any) -> int | None:
    """A stored DateTime as epoch ms UTC: integers are epoch ms; text is ISO-8601 or SQL's
    'YYYY-MM-DD HH:MM:SS' (no offset: UTC); fractions beyond the ms are cut off."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    stamp = dt.datetime.fromisoformat(str(value).strip())
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return (stamp - _EPOCH) // dt.timedelta(milliseconds=1)


# Gen 1/2 keep every field on the Workspace row; gen 3 LEFT JOINs its side tables and applies
# the app's defaults where a row is missing.
_WORKSPACES_ON_ROW = """
SELECT w."id", w."projectId", w."name", w."status", w."createdAt", w."branchName",
       w."hasHadSessions", w."worktreePath", w."prUrl", w."prNumber", w."prState",
       w."prCiStatus", w."prUpdatedAt", w."ratchetEnabled", w."ratchetState",
       w."runScriptStatus", NULL AS "hasMergeConflict", NULL AS "reviewState",
       p."defaultBranch"
FROM "Workspace" w JOIN "Project" p ON p."id" = w."projectId"
WHERE w."status" != 'ARCHIVED' AND p."isArchived" = 0
"""
_WORKSPACES_SIDE_TABLES = """
SELECT w."id", w."projectId", w."name", w."status", w."createdAt", w."branchName",
       w."hasHadSessions", w."worktreePath",
       pr."url" AS "prUrl", pr."number" AS "prNumber",
       COALESCE(pr."state", 'NONE') AS "prState",
       COALESCE(pr."ciStatus", 'UNKNOWN') AS "prCiStatus",
       pr."syncedAt" AS "prUpdatedAt",
       COALESCE(r."enabled", 1) AS "ratchetEnabled", NULL AS "ratchetState",
       COALESCE(rs."status", 'IDLE') AS "runScriptStatus",
       COALESCE(pr."hasMergeConflict", 0) AS "hasMergeConflict", pr."reviewState",
       p."defaultBranch"
FROM "Workspace" w JOIN "Project" p ON p."id" = w."projectId"
LEFT JOIN "WorkspacePR" pr ON pr."workspaceId" = w."id"
LEFT JOIN "WorkspaceRatchet" r ON r."workspaceId" = w."id"
LEFT JOIN "WorkspaceRunScript" rs ON rs."workspaceId" = w."id"
WHERE w."status" != 'ARCHIVED' AND p."isArchived" = 0
"""

_OPEN_PR_STATES = {"OPEN", "DRAFT", "CHANGES_REQUESTED", "APPROVED"}


def app_ratchet_state(w: Mapping[str, Any]) -> str:
    """The app's projection of the ratchet state (src/shared/core/ratchet-state.ts), gen 3."""
    if not w["ratchetEnabled"]:
        return "IDLE"
    if w["prState"] == "MERGED":
        return "MERGED"
    if w["prState"] not in _OPEN_PR_STATES:
        return "IDLE"
    if w["prCiStatus"] == "FAILURE":
        return "CI_FAILED"
    if w["hasMergeConflict"]:
        return "MERGE_CONFLICT"
    if w["prCiStatus"] in ("PENDING", "UNKNOWN"):
        return "CI_RUNNING"
    if w["reviewState"] == "CHANGES_REQUESTED":
        return "REVIEW_PENDING"
    return "READY"


# ---- git ---------------------------------------------------------------------------------------

_GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_OPTIONAL_LOCKS": "0",
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
}


def _git(path: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **_GIT_ENV, "GIT_CEILING_DIRECTORIES": os.path.dirname(path)}
    env.pop("GIT_PYTHON_GIT_EXECUTABLE", None)
    return subprocess.run(
        ["git", *args], cwd=path, env=env, capture_output=True, text=True, check=False
    )


def expected_git(path: str | None, default_branch: str) -> dict[str, Any] | None:
    """Git stats with plain git: None when there is no usable worktree."""
    if not path or not os.path.isdir(path):
        return None
    top = _git(path, "rev-parse", "--show-toplevel")
    if top.returncode != 0 or os.path.realpath(top.stdout.strip()) != os.path.realpath(path):
        return None
    status = _git(path, "status", "--porcelain")
    assert status.returncode == 0, status.stderr
    base = None
    for ref in (f"origin/{default_branch}", default_branch):
        found = _git(path, "merge-base", "HEAD", ref)
        if found.returncode == 0:
            base = found.stdout.strip()
            break
    diff = _git(path, "diff", "--numstat", *([base] if base else ["HEAD"]))
    assert diff.returncode == 0, diff.stderr
    total = additions = deletions = 0
    for line in diff.stdout.splitlines():
        adds, dels, _ = line.split("\t", 2)
        total += 1
        additions += 0 if adds == "-" else int(adds)
        deletions += 0 if dels == "-" else int(dels)
    return {
        "git_total": total,
        "git_additions": additions,
        "git_deletions": deletions,
        "git_has_uncommitted": status.stdout != "",
    }


# ---- derived fields ----------------------------------------------------------------------------

_CI_OBSERVATION = {
    "PENDING": "CHECKS_PENDING",
    "FAILURE": "CHECKS_FAILED",
    "SUCCESS": "CHECKS_PASSED",
}
_SIDEBAR_CI = {"SUCCESS": "PASSING", "FAILURE": "FAILING", "PENDING": "RUNNING"}


def derive(row: Mapping[str, Any]) -> dict[str, Any]:
    """The contract's derived fields, written from its text."""
    ci = row["pr_ci_status"]
    if ci in _CI_OBSERVATION:
        ci_observation = _CI_OBSERVATION[ci]
    elif ci == "UNKNOWN":
        ci_observation = "NO_CHECKS" if row["pr_updated_at"] is not None else "NOT_FETCHED"
    else:
        ci_observation = "CHECKS_UNKNOWN"
    active_pr = row["pr_url"] is not None and row["pr_state"] in _OPEN_PR_STATES
    animated = False
    if row["pr_state"] == "MERGED":
        phase, working = "MERGED", False
    elif not active_pr:
        phase, working = "NO_PR", False
    elif ci_observation in ("NOT_FETCHED", "CHECKS_PENDING"):
        phase, working, animated = "CI_WAIT", True, bool(row["ratchet_enabled"])
    elif not row["ratchet_enabled"]:
        phase, working = "READY", False
    elif row["ratchet_state"] in ("CI_FAILED", "REVIEW_PENDING"):
        phase, working = "RATCHET_FIXING", True
    elif row["ratchet_state"] in ("READY", "MERGED"):
        phase, working = "READY", False
    else:  # MERGE_CONFLICT among them
        phase, working = "RATCHET_VERIFY", True
    effective = bool(row["is_working"]) or working
    if row["status"] in ("ARCHIVED", "ARCHIVING"):
        kanban = None
    elif row["status"] in ("NEW", "PROVISIONING", "FAILED") or effective:
        kanban = "WORKING"
    elif row["pr_state"] == "MERGED":
        kanban = "DONE"
    elif not row["has_had_sessions"]:
        kanban = None
    else:
        kanban = "WAITING"
    if row["pr_url"] is None:
        ci_state = "NONE"
    elif row["pr_state"] == "MERGED" or row["ratchet_state"] == "MERGED":
        ci_state = "MERGED"
    elif row["ratchet_state"] == "MERGE_CONFLICT":
        ci_state = "CONFLICT"
    else:
        ci_state = _SIDEBAR_CI.get(ci, "UNKNOWN")
        if ci_state == "UNKNOWN":
            ci_state = {"CI_FAILED": "FAILING", "CI_RUNNING": "RUNNING"}.get(
                row["ratchet_state"], "UNKNOWN"
            )
    return {
        "flow_phase": phase,
        "ci_observation": ci_observation,
        "ratchet_button_animated": animated,
        "kanban_column": kanban,
        "sidebar_activity_state": "WORKING" if effective else "IDLE",
        "sidebar_ci_state": ci_state,
    }


# ---- the whole expected table ------------------------------------------------------------------

_PENDING_TYPES = {"ExitPlanMode": "plan_approval", "AskUserQuestion": "user_question"}


def pending_request_type(agent_states: list[Mapping[str, Any]]) -> str | None:
    """From agent sessions in (createdAt, id) order: the first plan approval or question, else a
    permission request when another tool waits, else none."""
    tools = [(s.get("pendingRequest") or {}).get("toolName") for s in agent_states]
    for tool in tools:
        if tool in _PENDING_TYPES:
            return _PENDING_TYPES[tool]
    return "permission_request" if any(tools) else None


def expected_snapshots(app_db: Path, runtime_json: Path | None) -> dict[str, dict[str, Any]]:
    """workspace_id -> the snapshot row the contract asks for (raw and derived fields), from the
    app DB (plain sqlite3, any generation), the session runtime file and plain git.

    Fields the DB's generation lacks (the merge-conflict flag before gen 3) are never written,
    so they hold the snapshot default (false). Without a runtime file the session group is
    unknown and never written either: the defaults (not working, no request) then.
    """
    generation = generation_of(app_db)
    runtime = json.loads(runtime_json.read_text())["sessions"] if runtime_json else {}
    workspaces = query(app_db, _WORKSPACES_SIDE_TABLES if generation == 3 else _WORKSPACES_ON_ROW)
    agent_table = "ClaudeSession" if generation == 1 else "AgentSession"
    agents = sorted(
        query(app_db, f'SELECT * FROM "{agent_table}"'),
        key=lambda s: (epoch_ms(s["createdAt"]), s["id"]),
    )
    terminals = query(app_db, 'SELECT * FROM "TerminalSession"')
    out: dict[str, dict[str, Any]] = {}
    for w in workspaces:
        mine = [s for s in agents if s["workspaceId"] == w["id"]]
        activity = [
            epoch_ms(s["updatedAt"]) for s in mine + terminals if s["workspaceId"] == w["id"]
        ]
        states = [runtime.get(s["id"], {"isWorking": False, "pendingRequest": None}) for s in mine]
        git = expected_git(w["worktreePath"], w["defaultBranch"] or "main")
        row = {
            "workspace_id": w["id"],
            "project_id": w["projectId"],
            "name": w["name"],
            "status": w["status"],
            "created_at": epoch_ms(w["createdAt"]),
            "branch_name": w["branchName"],
            "has_had_sessions": bool(w["hasHadSessions"]),
            "pr_url": w["prUrl"],
            "pr_number": w["prNumber"],
            "pr_state": w["prState"],
            "pr_ci_status": w["prCiStatus"],
            "pr_updated_at": epoch_ms(w["prUpdatedAt"]),
            "has_merge_conflict": bool(w["hasMergeConflict"]),
            "is_working": runtime_json is not None and any(st["isWorking"] for st in states),
            "pending_request_type": pending_request_type(states) if runtime_json else None,
            "ratchet_enabled": bool(w["ratchetEnabled"]),
            "ratchet_state": app_ratchet_state(w) if generation == 3 else w["ratchetState"],
            "run_script_status": w["runScriptStatus"],
            "git_total": None,
            "git_additions": None,
            "git_deletions": None,
            "git_has_uncommitted": None,
            "last_activity_at": max(activity) if activity else None,
            **(git or {}),
        }
        row.update(derive(row))
        out[w["id"]] = row
    return out


# Columns of workspace_snapshot that hold booleans (SQLite stores 0/1).
BOOL_COLUMNS = {
    "has_had_sessions",
    "has_merge_conflict",
    "is_working",
    "ratchet_enabled",
    "git_has_uncommitted",
    "ratchet_button_animated",
}


def read_table(db: str | Path) -> dict[str, dict[str, Any]]:
    """workspace_id -> stored row of workspace_snapshot, booleans as bool, with plain SQL: ``db``
    is a SQLAlchemy URL (SQLite or PostgreSQL) or the path of a SQLite file."""
    import sqlalchemy as sa

    url = str(db) if "://" in str(db) else f"sqlite:///{db}"
    engine = make_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = [
                dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM workspace_snapshot"))
            ]
    finally:
        engine.dispose()
    for row in rows:
        for column in BOOL_COLUMNS & set(row):
            if row[column] is not None:
                row[column] = bool(row[column])
    return {r["workspace_id"]: r for r in rows}


_TS_COLUMNS = (
    "ts_workspace",
    "ts_pr",
    "ts_session",
    "ts_ratchet",
    "ts_run_script",
    "ts_reconciliation",
)


def consistency_problems(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every way a stored row is not self-consistent: derived fields that are not the contract's
    derivation of the raw fields, a version below 1, a negative group timestamp, no source."""
    problems = []
    for workspace_id, row in sorted(rows.items()):
        for column, value in derive(row).items():
            if row[column] != value:
                problems.append(f"{workspace_id}: {column}={row[column]!r}, derive gives {value!r}")
        if row["version"] is None or row["version"] < 1:
            problems.append(f"{workspace_id}: version {row['version']!r}")
        for ts in _TS_COLUMNS:
            if row[ts] is None or row[ts] < 0:
                problems.append(f"{workspace_id}: {ts}={row[ts]!r}")
        if not row["source"] or not row["project_id"]:
            problems.append(
                f"{workspace_id}: source={row['source']!r} project={row['project_id']!r}"
            )
    return problems


def table_differences(
    stored: Mapping[str, Mapping[str, Any]], expected: Mapping[str, Mapping[str, Any]]
) -> list[tuple[str, str, Any, Any]]:
    """(workspace_id, column, stored, expected) for every difference; '*' for a missing/extra
    row. Compares every expected column."""
    diffs: list[tuple[str, str, Any, Any]] = []
    for workspace_id in sorted(set(stored) | set(expected)):
        if workspace_id not in stored:
            diffs.append((workspace_id, "*", None, "row"))
        elif workspace_id not in expected:
            diffs.append((workspace_id, "*", "row", None))
        else:
            for column, want in expected[workspace_id].items():
                have = stored[workspace_id][column]
                if have != want or type(have) is not type(want):
                    diffs.append((workspace_id, column, have, want))
    return diffs
