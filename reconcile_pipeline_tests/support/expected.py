"""Independent expectations: what the snapshot table must hold, computed WITHOUT the product.

Written on purpose from the contract's text and the app's own rules, not from the product's
code: nothing here imports ``reconcile_pipeline``. The app DB is read with plain ``sqlite3`` and
one hand-written query per schema generation, DateTimes are parsed with the standard library,
git runs as plain ``git`` through ``subprocess``, and the derived fields are a second,
straightforward writing of the decision tables of both rule sets (2026-02: the contract's
DESIGN.md; 2026-08: the app's TypeScript at 6c25f7f9). When the product and this module
disagree, one of them misread the contract.
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


def table_columns(db: Path) -> dict[str, set[str]]:
    """table -> its column names (PRAGMA table_info), for every table of the DB."""
    tables = [r["name"] for r in query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")]
    return {t: {c["name"] for c in query(db, f'PRAGMA table_info("{t}")')} for t in tables}


# New raw field -> where the app keeps it: flat Workspace columns (gen 2, early gen 3), and
# gen 3 side tables as (column, the app's default for a missing row). A field is read only
# where its column exists.
_FLAT_NEW_FIELDS = {
    "mode": "mode",
    "auto_iteration_status": "autoIterationStatus",
    "ratchet_dispatch_outcome": "ratchetDispatchOutcome",
    "ratchet_dispatch_retry_count": "ratchetDispatchRetryCount",
}
_SIDE_NEW_FIELDS = {
    "WorkspaceAutoIteration": {
        "mode": ("mode", "STANDARD"),
        "auto_iteration_status": ("status", None),
    },
    "WorkspaceRatchet": {
        "ratchet_dispatch_outcome": ("dispatchOutcome", None),
        "ratchet_dispatch_retry_count": ("dispatchRetryCount", 0),
        "ratchet_dispatch_stalled": ("dispatchStalled", False),
    },
}
_NEW_FIELD_TYPES = {"ratchet_dispatch_retry_count": int, "ratchet_dispatch_stalled": bool}


def new_raw_fields(db: Path, generation: int) -> dict[str, dict[str, Any]]:
    """workspace_id -> the new raw fields (mode, auto-iteration status, ratchet dispatch) that
    this DB has; a field it lacks is left out (unknown: never written).

    gen 1 has none. gen 2 keeps them flat on Workspace from the migrations that added them
    (20260401171631, 20260715201522). gen 3 reads WorkspaceAutoIteration (from 20260726230000;
    before it, the flat Workspace columns) and WorkspaceRatchet, a missing row being the
    app's defaults.
    """
    columns = table_columns(db)
    ids = [r["id"] for r in query(db, 'SELECT "id" FROM "Workspace"')]
    out: dict[str, dict[str, Any]] = {i: {} for i in ids}
    if generation == 1:
        return out
    sources: list[tuple[str, dict[str, tuple[str, Any]]]] = []
    if generation == 3:
        sources = [(t, fields) for t, fields in _SIDE_NEW_FIELDS.items() if t in columns]
    side_owned = {f for t, fields in sources for f in fields if fields[f][0] in columns[t]}
    flat = {
        f: (c, None)
        for f, c in _FLAT_NEW_FIELDS.items()
        if f not in side_owned and c in columns["Workspace"]
    }
    sources.append(("Workspace", flat))
    for table, fields in sources:
        present = {f: spec for f, spec in fields.items() if spec[0] in columns[table]}
        if not present:
            continue
        key = "id" if table == "Workspace" else "workspaceId"
        picked = ", ".join(f'"{c}"' for c, _ in present.values())
        rows = {r[key]: r for r in query(db, f'SELECT "{key}", {picked} FROM "{table}"')}
        for workspace_id, fields_out in out.items():
            found = rows.get(workspace_id)
            for field, (column, default) in present.items():
                value = found[column] if found is not None else default
                kind = _NEW_FIELD_TYPES.get(field)
                fields_out[field] = kind(value) if kind and value is not None else value
    return out


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

RULE_SETS = ("2026-02", "2026-08")
_CI_OBSERVATION = {
    "PENDING": "CHECKS_PENDING",
    "FAILURE": "CHECKS_FAILED",
    "SUCCESS": "CHECKS_PASSED",
}
_SIDEBAR_CI = {"SUCCESS": "PASSING", "FAILURE": "FAILING", "PENDING": "RUNNING"}
_NO_REASON = {
    "status_reason_code": None,
    "status_reason_label": None,
    "status_reason_tone": None,
    "status_reason_needs_user": None,
}


def default_rule_set(generation: int) -> str:
    """The rule set a DB of this generation gets unless a setting overrides it."""
    return "2026-02" if generation == 1 else "2026-08"


def _flow(row: Mapping[str, Any], ci_observation: str, active_pr: bool) -> tuple[str, bool, bool]:
    """(phase, flow working, ratchet button animated): the same table in both rule sets, only
    the CI observation fed to it differs."""
    if row["pr_state"] == "MERGED":
        return "MERGED", False, False
    if not active_pr:
        return "NO_PR", False, False
    if ci_observation in ("NOT_FETCHED", "CHECKS_PENDING"):
        return "CI_WAIT", True, bool(row["ratchet_enabled"])
    if not row["ratchet_enabled"]:
        return "READY", False, False
    if row["ratchet_state"] in ("CI_FAILED", "REVIEW_PENDING"):
        return "RATCHET_FIXING", True, False
    if row["ratchet_state"] in ("READY", "MERGED"):
        return "READY", False, False
    return "RATCHET_VERIFY", True, False  # MERGE_CONFLICT among them


def derive_2026_02(row: Mapping[str, Any]) -> dict[str, Any]:
    """The contract's derived fields (DESIGN.md "Derived fields"), written from its text; no
    status reason in this rule set."""
    ci = row["pr_ci_status"]
    if ci in _CI_OBSERVATION:
        ci_observation = _CI_OBSERVATION[ci]
    elif ci == "UNKNOWN":
        ci_observation = "NO_CHECKS" if row["pr_updated_at"] is not None else "NOT_FETCHED"
    else:
        ci_observation = "CHECKS_UNKNOWN"
    active_pr = row["pr_url"] is not None and row["pr_state"] in _OPEN_PR_STATES
    phase, working, animated = _flow(row, ci_observation, active_pr)
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
        **_NO_REASON,
    }


# Kept for callers written before the rule sets: the contract's derivation.
derive = derive_2026_02

# 2026-08 (factory-factory 6c25f7f9), written from the app's TypeScript:
# src/shared/workspace-status-reason.ts, src/shared/kanban-column-projection.ts,
# src/shared/core/workspace-sidebar-status.ts, src/shared/session-runtime.ts and
# src/backend/services/workspace/service/state/flow-state.ts.

# code -> (label, tone, needsUser, kanban column)
_REASONS_2026_08: dict[str, tuple[str, str, bool, str | None]] = {
    "ARCHIVING": ("Archiving", "working", False, None),
    "ARCHIVED": ("Archived", "neutral", False, None),
    "MERGED": ("Merged", "success", False, "DONE"),
    "PR_CLOSED": ("PR closed", "neutral", False, "DONE"),
    "NEEDS_PERMISSION": ("Needs permission", "attention", True, "WAITING"),
    "NEEDS_PLAN_APPROVAL": ("Needs plan approval", "attention", True, "WAITING"),
    "NEEDS_ANSWER": ("Needs your answer", "attention", True, "WAITING"),
    "SESSION_ERROR": ("Session error", "danger", True, "WAITING"),
    "SETTING_UP": ("Setting up workspace", "working", False, "WORKING"),
    "SETUP_FAILED": ("Setup failed", "danger", True, "WAITING"),
    "AGENT_WORKING": ("Agent working", "working", False, "WORKING"),
    "STARTING_SESSION": ("Starting session", "working", False, "WORKING"),
    "AUTO_ITERATING": ("Auto-iterating", "working", False, "WORKING"),
    "RATCHET_STALLED": ("Auto-fix stalled", "attention", True, "WAITING"),
    "FIXING_MERGE_CONFLICT": ("Fixing merge conflict", "working", False, "WORKING"),
    "MERGE_CONFLICT": ("Merge conflict", "attention", True, "WAITING"),
    "WAITING_FOR_CI": ("Waiting for CI", "waiting", False, "WORKING"),
    "FIXING_REVIEW_COMMENTS": ("Fixing review comments", "working", False, "WORKING"),
    "FIXING_CI_FAILURES": ("Fixing CI failures", "working", False, "WORKING"),
    "CHECKING_PR": ("Checking PR", "working", False, "WORKING"),
    "READY_TO_MERGE": ("Ready to merge", "success", True, "WAITING"),
    "READY_FOR_REVIEW": ("Ready for review", "neutral", True, "WAITING"),
    "NO_SESSION_STARTED": ("No session started", "neutral", True, "WAITING"),
    "READY_FOR_NEXT_PROMPT": ("Ready for next prompt", "neutral", True, "WAITING"),
}
_PENDING_REASON = {
    "permission_request": "NEEDS_PERMISSION",
    "plan_approval": "NEEDS_PLAN_APPROVAL",
    "user_question": "NEEDS_ANSWER",
}


def summary_error_message(summary: Mapping[str, Any]) -> str | None:
    """resolveSessionRuntimeErrorMessage: an error phase always has a message; otherwise only
    an unexpected exit does. Blank messages count as none."""
    message = (summary.get("errorMessage") or "").strip()
    last_exit = summary.get("lastExit") or {}
    crashed = bool(last_exit.get("unexpected"))
    code = last_exit.get("code")
    exit_text = "Exited unexpectedly" + (f" (code {code})" if code is not None else "")
    if summary["runtimePhase"] == "error":
        return message or (exit_text if crashed else "Session entered an error state")
    if crashed:
        return message or exit_text
    return None


def status_reason_code_2026_08(row: Mapping[str, Any], phase: str, ci_observation: str) -> str:
    """deriveWorkspaceStatusReason's chain, first match, as one flat list of checks."""
    summaries = json.loads(row["session_summaries"] or "[]")
    status, pr_state, ratchet = row["status"], row["pr_state"], row["ratchet_state"]
    pending = _PENDING_REASON.get(row["pending_request_type"], "")
    checks: list[tuple[bool, str]] = [
        (status == "ARCHIVING", "ARCHIVING"),
        (status == "ARCHIVED", "ARCHIVED"),
        ("MERGED" in (phase, pr_state, ratchet), "MERGED"),
        (pr_state == "CLOSED", "PR_CLOSED"),
        (pending != "", pending),
        (any(summary_error_message(s) for s in summaries), "SESSION_ERROR"),
        (status in ("NEW", "PROVISIONING"), "SETTING_UP"),
        (status == "FAILED", "SETUP_FAILED"),
        (bool(row["is_working"]), "AGENT_WORKING"),
        (any(s["runtimePhase"] in ("starting", "loading") for s in summaries), "STARTING_SESSION"),
        (
            row["mode"] == "AUTO_ITERATION" and row["auto_iteration_status"] == "RUNNING",
            "AUTO_ITERATING",
        ),
        # Ratchet trouble speaks only for a workspace that has a PR.
        (
            phase != "NO_PR" and bool(row["ratchet_enabled"] and row["ratchet_dispatch_stalled"]),
            "RATCHET_STALLED",
        ),
        (
            phase != "NO_PR" and bool(row["has_merge_conflict"]),
            "FIXING_MERGE_CONFLICT" if row["ratchet_enabled"] else "MERGE_CONFLICT",
        ),
        (phase == "CI_WAIT", "WAITING_FOR_CI"),
        (phase == "RATCHET_FIXING" and ratchet == "REVIEW_PENDING", "FIXING_REVIEW_COMMENTS"),
        (phase == "RATCHET_FIXING", "FIXING_CI_FAILURES"),
        (phase == "RATCHET_VERIFY", "CHECKING_PR"),
        (phase == "READY" and ci_observation == "CHECKS_PASSED", "READY_TO_MERGE"),
        (phase == "READY", "READY_FOR_REVIEW"),
        (not row["has_had_sessions"], "NO_SESSION_STARTED"),
    ]
    for matched, code in checks:
        if matched:
            return code
    return "READY_FOR_NEXT_PROMPT"


def derive_2026_08(row: Mapping[str, Any]) -> dict[str, Any]:
    """The app's derived fields at 6c25f7f9: the reason first, the column read off it, the
    sidebar activity from the session's own flag only."""
    ci = row["pr_ci_status"]
    # UNKNOWN is "not fetched yet" whatever prUpdatedAt says (flow-state.ts).
    ci_observation = {**_CI_OBSERVATION, "UNKNOWN": "NOT_FETCHED"}.get(ci, "CHECKS_UNKNOWN")
    # The app tests `!prUrl`: an empty URL is no PR.
    has_url = bool(row["pr_url"])
    phase, _, animated = _flow(row, ci_observation, has_url and row["pr_state"] in _OPEN_PR_STATES)
    code = status_reason_code_2026_08(row, phase, ci_observation)
    label, tone, needs_user, column = _REASONS_2026_08[code]
    if not has_url:
        ci_state = "NONE"
    elif "MERGED" in (row["pr_state"], row["ratchet_state"]):
        ci_state = "MERGED"
    elif row["pr_state"] == "CLOSED":
        ci_state = "CLOSED"
    elif row["ratchet_state"] == "MERGE_CONFLICT":
        ci_state = "CONFLICT"
    elif ci in _SIDEBAR_CI:
        ci_state = _SIDEBAR_CI[ci]
    else:
        ci_state = {"CI_FAILED": "FAILING", "CI_RUNNING": "RUNNING"}.get(
            row["ratchet_state"], "UNKNOWN"
        )
    return {
        "flow_phase": phase,
        "ci_observation": ci_observation,
        "ratchet_button_animated": animated,
        "kanban_column": column,
        "sidebar_activity_state": "WORKING" if row["is_working"] else "IDLE",
        "sidebar_ci_state": ci_state,
        "status_reason_code": code,
        "status_reason_label": label,
        "status_reason_tone": tone,
        "status_reason_needs_user": needs_user,
    }


_DERIVE = {"2026-02": derive_2026_02, "2026-08": derive_2026_08}


def derive_for(rule_set: str, row: Mapping[str, Any]) -> dict[str, Any]:
    """The 10 derived fields of ``row`` under ``rule_set`` ("2026-02" or "2026-08")."""
    return _DERIVE[rule_set](row)


# ---- the session runtime and session rules -----------------------------------------------------

_PHASES = ("loading", "starting", "running", "idle", "stopping", "error")
_PROCESS_STATES = ("unknown", "alive", "stopped")
_ACTIVITIES = ("WORKING", "IDLE")
_PENDING_TYPES = {"ExitPlanMode": "plan_approval", "AskUserQuestion": "user_question"}


def read_runtime(path: Path) -> dict[str, Any] | None:
    """The ``sessions`` object of a runtime document, or None when the document is not
    ``{"sessions": {...}}`` JSON (the whole runtime is then unknown)."""
    try:
        doc = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("sessions"), dict):
        return None
    return doc["sessions"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def runtime_entry_ok(entry: Any) -> bool:
    """Whether one entry of the runtime document has the documented types (other keys are
    ignored). A bad entry makes its session, and so its workspace's session group, unknown."""
    if not isinstance(entry, dict) or not isinstance(entry.get("isWorking"), bool):
        return False
    request = entry.get("pendingRequest")
    if request is not None and not (
        isinstance(request, dict)
        and isinstance(request.get("toolName"), str)
        and request["toolName"] != ""
        and (request.get("input") is None or isinstance(request["input"], dict))
    ):
        return False
    last_exit = entry.get("lastExit")
    if last_exit is not None and not (
        isinstance(last_exit, dict)
        and "code" in last_exit
        and (last_exit["code"] is None or _is_int(last_exit["code"]))
        and isinstance(last_exit.get("timestamp"), str)
        and isinstance(last_exit.get("unexpected"), bool)
    ):
        return False
    optional = {
        "phase": lambda v: v in _PHASES,
        "processState": lambda v: v in _PROCESS_STATES,
        "activity": lambda v: v in _ACTIVITIES,
        "updatedAt": lambda v: isinstance(v, str),  # the app's schema: any string
    }
    if any(key in entry and not ok(entry[key]) for key, ok in optional.items()):
        return False
    message = entry.get("errorMessage")
    return message is None or isinstance(message, str)


def js_iso(epoch: int) -> str:
    """Epoch ms as JavaScript's ``Date.toISOString()``: ``YYYY-MM-DDTHH:MM:SS.sssZ`` (UTC)."""
    stamp = _EPOCH + dt.timedelta(milliseconds=epoch)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{epoch % 1000:03d}Z"


def runtime_state(entry: Mapping[str, Any] | None, db_updated_at: int) -> dict[str, Any]:
    """One session's runtime after the spec's defaults; ``entry`` None = absent from a valid
    document = the app's initial runtime state (idle, process stopped)."""
    if entry is None:
        entry = {"isWorking": False, "phase": "idle", "processState": "stopped"}
    working = entry["isWorking"]
    last_exit = entry.get("lastExit")
    return {
        "isWorking": working,
        "pendingRequest": entry.get("pendingRequest"),
        "phase": entry.get("phase", "running" if working else "idle"),
        "processState": entry.get("processState", "unknown"),
        "activity": entry.get("activity", "WORKING" if working else "IDLE"),
        "updatedAt": entry.get("updatedAt", js_iso(db_updated_at)),
        # Only the documented keys of lastExit reach the summary.
        "lastExit": None
        if last_exit is None
        else {k: last_exit[k] for k in ("code", "timestamp", "unexpected")},
        "errorMessage": entry.get("errorMessage"),
    }


def session_summary(session: Mapping[str, Any], state: Mapping[str, Any]) -> dict[str, Any]:
    """buildWorkspaceSessionSummaries for one agent session row and its runtime state; no
    ``provider`` key when the row has none (gen 1)."""
    out = {
        "sessionId": session["id"],
        "name": session["name"],
        "workflow": session["workflow"],
        "model": session["model"],
        "persistedStatus": session["status"],
        "runtimePhase": state["phase"],
        "processState": state["processState"],
        "activity": state["activity"],
        "updatedAt": state["updatedAt"],
        "lastExit": state["lastExit"],
        "errorMessage": state["errorMessage"],
    }
    if "provider" in session:
        out["provider"] = session["provider"]
    return out


def canonical_summaries(summaries: list[Mapping[str, Any]]) -> str:
    """The snapshot's text of a summary list: sorted by sessionId, keys sorted, compact."""
    ordered = sorted(summaries, key=lambda s: s["sessionId"])
    return json.dumps(ordered, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def pending_request_type_2026_02(agent_states: list[Mapping[str, Any]]) -> str | None:
    """From agent sessions in (createdAt, id) order: the first plan approval or question (by
    tool name), else a permission request when another tool waits, else none."""
    tools = [(s.get("pendingRequest") or {}).get("toolName") for s in agent_states]
    for tool in tools:
        if tool in _PENDING_TYPES:
            return _PENDING_TYPES[tool]
    return "permission_request" if any(tools) else None


pending_request_type = pending_request_type_2026_02


def pending_request_type_2026_08(agent_states: list[Mapping[str, Any]]) -> str | None:
    """computePendingRequestType at 6c25f7f9: any plan approval, else any question, else any
    other request; a request is classified by its tool name or its input's shape."""
    kinds = set()
    for state in agent_states:
        request = state.get("pendingRequest")
        if not request:
            continue
        tool, given = request["toolName"], request.get("input") or {}
        if tool == "ExitPlanMode" or given.get("type") == "ExitPlanMode":
            kinds.add("plan_approval")
        elif tool == "AskUserQuestion" or isinstance(given.get("questions"), list):
            kinds.add("user_question")
        else:
            kinds.add("permission_request")
    for kind in ("plan_approval", "user_question", "permission_request"):
        if kind in kinds:
            return kind
    return None


def session_working_for(rule_set: str, state: Mapping[str, Any]) -> bool:
    """2026-02: the runtime's isWorking; 2026-08: isSessionSummaryWorking (activity or phase)."""
    if rule_set == "2026-02":
        return bool(state["isWorking"])
    return state["activity"] == "WORKING" or state["phase"] == "running"


def session_group(
    sessions: list[Mapping[str, Any]], runtime: Mapping[str, Any] | None, rule_set: str
) -> dict[str, Any] | None:
    """is_working, pending_request_type and session_summaries of one workspace from its agent
    sessions in (createdAt, id) order; None when unknown (no runtime, or a bad entry)."""
    if runtime is None:
        return None
    states = []
    for session in sessions:
        entry = runtime.get(session["id"])
        # A present entry must be valid; JSON null is a bad entry, not an absent session.
        if session["id"] in runtime and not runtime_entry_ok(entry):
            return None
        states.append(runtime_state(entry, epoch_ms(session["updatedAt"])))
    pending = (
        pending_request_type_2026_02 if rule_set == "2026-02" else pending_request_type_2026_08
    )
    return {
        "is_working": any(session_working_for(rule_set, st) for st in states),
        "pending_request_type": pending(states),
        "session_summaries": canonical_summaries(
            [session_summary(s, st) for s, st in zip(sessions, states, strict=True)]
        ),
    }


def pathless_workspaces(app_db: Path) -> set[str]:
    """Workspaces without a worktree path (NEW ones): not worktrees, so outside git coverage."""
    return {
        r["id"] for r in query(app_db, 'SELECT "id" FROM "Workspace" WHERE "worktreePath" IS NULL')
    }


# ---- the whole expected table ------------------------------------------------------------------

# What a field that is never written holds: the snapshot defaults of the new raw fields.
NEW_FIELD_DEFAULTS: dict[str, Any] = {
    "mode": "STANDARD",
    "auto_iteration_status": None,
    "ratchet_dispatch_outcome": None,
    "ratchet_dispatch_retry_count": 0,
    "ratchet_dispatch_stalled": False,
}
_UNKNOWN_SESSION = {"is_working": False, "pending_request_type": None, "session_summaries": "[]"}


def expected_snapshots(
    app_db: Path, runtime_json: Path | None, rule_set: str | None = None
) -> dict[str, dict[str, Any]]:
    """workspace_id -> the snapshot row the contract asks for (raw and derived fields and the
    rule set), from the app DB (plain sqlite3, any generation), the session runtime file and
    plain git. ``rule_set`` None = the default for the DB's generation.

    Fields the DB lacks (the merge-conflict flag before gen 3, the new fields where their column
    or table is missing) are never written, so they hold the snapshot default. Without a runtime
    file, with a document that is not ``{"sessions": {...}}``, or for a workspace one of whose
    sessions has a bad entry, the session group is unknown and never written either: the
    defaults (not working, no request, no summaries) then.
    """
    generation = generation_of(app_db)
    rule_set = rule_set or default_rule_set(generation)
    runtime = read_runtime(runtime_json) if runtime_json else None
    workspaces = query(app_db, _WORKSPACES_SIDE_TABLES if generation == 3 else _WORKSPACES_ON_ROW)
    new_fields = new_raw_fields(app_db, generation)
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
        session = session_group(_summary_rows(mine), runtime, rule_set) or _UNKNOWN_SESSION
        git = expected_git(w["worktreePath"], w["defaultBranch"] or "main")
        row = {
            "workspace_id": w["id"],
            "project_id": w["projectId"],
            "name": w["name"],
            "status": w["status"],
            "created_at": epoch_ms(w["createdAt"]),
            "branch_name": w["branchName"],
            "has_had_sessions": bool(w["hasHadSessions"]),
            **NEW_FIELD_DEFAULTS,
            **new_fields.get(w["id"], {}),
            "pr_url": w["prUrl"],
            "pr_number": w["prNumber"],
            "pr_state": w["prState"],
            "pr_ci_status": w["prCiStatus"],
            "pr_updated_at": epoch_ms(w["prUpdatedAt"]),
            "has_merge_conflict": bool(w["hasMergeConflict"]),
            **session,
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
        row.update(derive_for(rule_set, row))
        row["rule_set"] = rule_set
        out[w["id"]] = row
    return out


def _summary_rows(sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The columns of a session row the summary and runtime defaults read (``provider`` only
    where the table has it)."""
    keys = ("id", "name", "workflow", "model", "status", "provider", "updatedAt")
    return [{k: s[k] for k in keys if k in s} for s in sessions]


# Columns of workspace_snapshot that hold booleans (SQLite stores 0/1).
BOOL_COLUMNS = {
    "has_had_sessions",
    "has_merge_conflict",
    "is_working",
    "ratchet_enabled",
    "git_has_uncommitted",
    "ratchet_button_animated",
    "ratchet_dispatch_stalled",
    "status_reason_needs_user",
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
    """Every way a stored row is not self-consistent: derived fields that are not its own rule
    set's derivation of the raw fields (a NULL rule_set is a row from before rule sets:
    2026-02), an unknown rule set, a version below 1, a negative group timestamp, no source."""
    problems = []
    for workspace_id, row in sorted(rows.items()):
        rule_set = row.get("rule_set") or "2026-02"
        if rule_set not in RULE_SETS:
            problems.append(f"{workspace_id}: rule_set={rule_set!r}")
            continue
        for column, value in derive_for(rule_set, row).items():
            if row[column] != value:
                problems.append(
                    f"{workspace_id}: {column}={row[column]!r}, {rule_set} derives {value!r}"
                )
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
