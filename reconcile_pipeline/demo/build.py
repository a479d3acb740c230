"""A demo app: an app DB (SQLite, in any of the app's schema generations, with the encodings its
writers use) plus REAL git repos and linked worktrees.

Used by the CLI (``reconcile-pipeline demo``), by tests and by benchmarks (5,000 workspaces), so
it must be deterministic for a seed and cheap per workspace. Where the time goes and why:

- each project's history (main plus every workspace branch and its commits) is written by ONE
  ``git fast-import`` process, with fixed timestamps so commit ids are reproducible;
- each workspace then costs one ``git worktree add`` (a few ms on a tiny repo), plus one
  ``git add`` only for the workspaces that get staged changes; other local changes are plain
  file writes;
- projects are built in parallel threads (git runs in subprocesses), the DB in one transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from reconcile_pipeline.core.fields import (
    PR_CI_STATUS,
    PR_STATE,
    RATCHET_STATE,
    RUN_SCRIPT_STATUS,
    WORKSPACE_STATUS,
)
from reconcile_pipeline.demo import APP_DB_NAME, MARKER, SESSION_RUNTIME_NAME
from reconcile_pipeline.demo.app_schema import (
    CURRENT_GENERATION,
    GENERATIONS,
    SIDE_TABLES,
    agent_session_table,
    app_rows,
    create_app_schema,
    insert_app_rows,
    side_defaults,
)

_BASE_MS = 1_735_689_600_000  # 2025-01-01T00:00:00Z: fixed, so that builds are reproducible
_BASE_S = _BASE_MS // 1000
_IDENT = "Reconcile Demo <demo@example.invalid>"

# Isolate git from the user's config (hooks, signing, templates) and make it work without one.
_GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "Reconcile Demo",
    "GIT_AUTHOR_EMAIL": "demo@example.invalid",
    "GIT_COMMITTER_NAME": "Reconcile Demo",
    "GIT_COMMITTER_EMAIL": "demo@example.invalid",
    "LC_ALL": "C",
}
_GIT_CONFIG = (
    "-c",
    "user.name=Reconcile Demo",
    "-c",
    "user.email=demo@example.invalid",
    "-c",
    "init.defaultBranch=main",
    "-c",
    "gc.auto=0",
    "-c",
    "core.autocrlf=false",
    "-c",
    "commit.gpgsign=false",
)

# Local working-tree states of a workspace (the showcase below adds the rare broken ones).
WORKTREE_KINDS = ("clean", "unstaged", "staged", "untracked", "deleted", "binary", "mixed")

# The first workspaces are a fixed showcase so that every case exists even in a small demo:
# (status, worktree kind, branch commits). The rest are drawn at random.
_SHOWCASE: tuple[tuple[str, str, int], ...] = (
    ("READY", "unstaged", 2),
    ("NEW", "clean", 0),
    ("PROVISIONING", "untracked", 0),
    ("FAILED", "deleted", 1),
    ("ARCHIVED", "archived", 1),
    ("READY", "missing_removed", 1),  # worktree created, then its directory deleted
    ("READY", "no_path", 0),
    ("READY", "binary", 1),
    ("READY", "staged", 0),
    ("READY", "not_repo", 0),  # a directory that is not a git worktree
    ("READY", "mixed", 3),  # also has an odd (space, non-ASCII) directory name
    ("ARCHIVED", "archived", 0),
    ("READY", "missing_never", 0),  # path in the DB, never created
    ("READY", "clean", 2),
    ("ARCHIVING", "clean", 1),  # archive in progress: still live (gen 2 on; READY in gen 1)
)
_ODD_DIR_INDEX = 10

# The app's enums for the auto-iteration and ratchet-dispatch fields (src/shared/core/enums.ts).
_AUTO_ITERATION_STATUS = (
    "IDLE",
    "RUNNING",
    "PAUSED",
    "COMPLETED",
    "MAX_ITERATIONS",
    "STOPPED",
    "FAILED",
)
_DISPATCH_OUTCOMES = ("RUNNING", "COMPLETED", "DIED")
_CLAUDE_MODELS = ("sonnet", "opus", "haiku")
_CODEX_MODELS = ("gpt-5-codex", "gpt-5")
_SESSION_NAMES = ("Chat 1", "Chat 2", "Plan", "Fix CI", "Review comments", "Ratchet")

# From workspace _REASON_START on, a fixed showcase of the app's status reasons (the 2026-08
# rules, src/shared/workspace-status-reason.ts at 6c25f7f9), so that every reason a live
# workspace can have under those rules exists in a 60-workspace demo at gen 3. Each entry:
# (the reason it is there for, status, fields over a quiet base row, runtime role of its one
# agent session). Role None = no agent session at all, so that no runtime entry (working, a
# pending request, an error) can take precedence over the reason the row's data gives; a role
# = exactly one agent session, whose runtime entry ``demo_session_runtime`` pins (_ROLE_RUNTIME).
# ``ratchetState`` is for gen 1/2, which store it; gen 3 derives it from the PR fields.
_REASON_START = 28
_OPEN_PR = {"prState": "OPEN", "prCiStatus": "SUCCESS", "prReviewState": None}
_REASON_SHOWCASE: tuple[tuple[str, str, dict, str | None], ...] = (
    ("NEEDS_PERMISSION", "READY", {}, "permission"),
    ("NEEDS_PLAN_APPROVAL", "READY", {}, "plan_approval"),
    ("NEEDS_ANSWER", "READY", {}, "question"),
    ("SESSION_ERROR", "READY", {}, "error"),  # runtime phase "error"
    ("SESSION_ERROR", "READY", {}, "unexpected_exit"),  # idle, but lastExit.unexpected
    ("AGENT_WORKING", "READY", {}, "working"),
    ("STARTING_SESSION", "READY", {}, "starting"),
    ("AUTO_ITERATING", "READY", {"mode": "AUTO_ITERATION", "autoIterationStatus": "RUNNING"}, None),
    (
        "RATCHET_STALLED",
        "READY",
        {
            **_OPEN_PR,
            "ratchetState": "READY",
            "ratchetDispatchOutcome": "COMPLETED",
            "ratchetDispatchStalled": 1,
        },
        None,
    ),
    (
        "FIXING_MERGE_CONFLICT",  # gen 2 (no conflict flag): CHECKING_PR
        "READY",
        {**_OPEN_PR, "hasMergeConflict": 1, "ratchetState": "MERGE_CONFLICT"},
        None,
    ),
    (
        "MERGE_CONFLICT",  # gen 2: READY_TO_MERGE
        "READY",
        {**_OPEN_PR, "hasMergeConflict": 1, "ratchetEnabled": 0},
        None,
    ),
    (
        "WAITING_FOR_CI",
        "READY",
        {**_OPEN_PR, "prCiStatus": "PENDING", "ratchetState": "CI_RUNNING"},
        None,
    ),
    (
        "FIXING_CI_FAILURES",
        "READY",
        {
            **_OPEN_PR,
            "prCiStatus": "FAILURE",
            "ratchetState": "CI_FAILED",
            "ratchetDispatchOutcome": "DIED",
            "ratchetDispatchRetryCount": 1,
        },
        None,
    ),
    (
        "FIXING_REVIEW_COMMENTS",
        "READY",
        {
            "prState": "CHANGES_REQUESTED",
            "prCiStatus": "SUCCESS",
            "prReviewState": "CHANGES_REQUESTED",
            "ratchetState": "REVIEW_PENDING",
            "ratchetDispatchOutcome": "RUNNING",
        },
        None,
    ),
    # Gen 2 only: with a derived ratchet state (gen 3) an open PR with a verdict from CI is
    # never RATCHET_VERIFY without a conflict, which FIXING_MERGE_CONFLICT outranks; gen 3
    # derives READY here (READY_TO_MERGE).
    ("CHECKING_PR", "READY", {**_OPEN_PR, "ratchetState": "CI_RUNNING"}, None),
    (
        "READY_TO_MERGE",
        "READY",
        {**_OPEN_PR, "prState": "APPROVED", "prReviewState": "APPROVED", "ratchetState": "READY"},
        None,
    ),
    ("READY_FOR_REVIEW", "READY", {**_OPEN_PR, "prCiStatus": "FAILURE", "ratchetEnabled": 0}, None),
    ("MERGED", "READY", {**_OPEN_PR, "prState": "MERGED", "ratchetState": "MERGED"}, None),
    ("PR_CLOSED", "READY", {**_OPEN_PR, "prState": "CLOSED", "prCiStatus": "FAILURE"}, None),
    ("SETTING_UP", "NEW", {}, None),
    ("SETTING_UP", "PROVISIONING", {}, None),
    ("SETUP_FAILED", "FAILED", {}, None),
    ("ARCHIVING", "ARCHIVING", {}, None),  # gen 1 has no ARCHIVING: READY there
    ("NO_SESSION_STARTED", "READY", {"hasHadSessions": 0}, None),  # and no terminal session
    ("READY_FOR_NEXT_PROMPT", "READY", {"hasHadSessions": 1}, None),
)
# What a showcase row starts from: no PR, ratchet on, nothing dispatched, standard mode.
_QUIET_ROW = {
    "prState": "NONE",
    "prCiStatus": "UNKNOWN",
    "prReviewState": None,
    "ratchetEnabled": 1,
    "ratchetState": "IDLE",
    "hasMergeConflict": 0,
    "mode": "STANDARD",
    "autoIterationStatus": None,
    "ratchetDispatchOutcome": None,
    "ratchetDispatchRetryCount": 0,
    "ratchetDispatchStalled": 0,
}


class DemoError(RuntimeError):
    """The demo app cannot be built (root not empty, git failed, ...)."""


@dataclass(frozen=True)
class DemoApp:
    root: Path
    app_db_url: str
    generation: int  # the app's schema generation the DB is in
    projects: int
    workspaces: int  # Workspace rows, archived ones included
    active_workspaces: int  # non-archived: what the extract returns
    worktrees: int  # linked git worktrees present on disk
    agent_sessions: int
    terminal_sessions: int
    # (agent session id, role): the sessions whose runtime entry ``demo_session_runtime`` pins
    # so that the status-reason showcase holds (see _REASON_SHOWCASE).
    session_roles: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def app_db_path(self) -> Path:
        return self.root / APP_DB_NAME

    @property
    def session_runtime_path(self) -> Path:
        return self.root / SESSION_RUNTIME_NAME


# --------------------------------------------------------------------------------------------
# Plan (pure, all randomness here, in a fixed order)
# --------------------------------------------------------------------------------------------


@dataclass
class _Project:
    index: int
    id: str
    slug: str
    name: str
    repo: Path
    origin: Path | None
    worktree_base: Path
    workspaces: list[_Workspace] = field(default_factory=list)


@dataclass
class _Workspace:
    index: int
    id: str
    project: _Project
    name: str
    status: str
    kind: str
    commits: int
    base: str  # main commit the branch forks from: B, C or D (see _main_history)
    branch: str
    dir: Path
    binary_commit: bool
    odd_path_commit: bool
    row: dict
    agent_sessions: list[dict]
    terminal_sessions: list[dict]
    session_roles: list[tuple[str, str]] = field(default_factory=list)  # (agent session id, role)


def _cuid(rng: random.Random, counter: int) -> str:
    # 'c' + 8 base36 chars of a counter (unique) + 16 random ones: looks like a Prisma cuid.
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    head = ""
    n = counter
    for _ in range(8):
        n, r = divmod(n, 36)
        head = digits[r] + head
    return "c" + head + "".join(rng.choice(digits) for _ in range(16))


_WORDS = (
    "login",
    "cache",
    "parser",
    "billing",
    "search",
    "export",
    "sidebar",
    "kanban",
    "retry",
    "metrics",
)
_VERBS = ("Fix", "Add", "Refactor", "Speed up", "Document", "Test")
_SESSION_STATUS = ("IDLE", "RUNNING", "COMPLETED")


def _statuses(generation: int) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Workspace statuses the generation has, with their weights (ARCHIVING came in gen 2)."""
    weights = dict(zip(WORKSPACE_STATUS, (4, 3, 75, 4, 1, 13), strict=True))
    if generation == 1:
        del weights["ARCHIVING"]
    return tuple(weights), tuple(weights.values())


def _plan(root: Path, workspaces: int, projects: int, seed: int, generation: int) -> list[_Project]:
    rng = random.Random(seed)
    extra = random.Random(f"reconcile-demo-later-fields:{seed}")
    ids = iter(range(10**9))
    statuses, weights = _statuses(generation)
    plan: list[_Project] = []
    for p in range(projects):
        slug = f"demo-project-{p:03d}"
        plan.append(
            _Project(
                index=p,
                id=_cuid(rng, next(ids)),
                slug=slug,
                name=f"Demo project {p}",
                repo=root / "repos" / slug,
                origin=root / "remotes" / f"{slug}.git" if p % 2 == 0 else None,
                worktree_base=root / "worktrees" / slug,
            )
        )
    for i in range(workspaces):
        project = plan[i % projects]
        if i < len(_SHOWCASE):
            status, kind, commits = _SHOWCASE[i]
            status = status if status in statuses else "READY"
        else:
            status = rng.choices(statuses, weights=weights)[0]
            kind = (
                "archived"
                if status == "ARCHIVED"
                else rng.choices(WORKTREE_KINDS, weights=(30, 15, 10, 15, 7, 8, 15))[0]
            )
            commits = rng.choices((0, 1, 2, 3), weights=(40, 30, 20, 10))[0]
        word = _WORDS[i % len(_WORDS)]
        dirname = f"odd dir ü-{i}" if i == _ODD_DIR_INDEX else f"{word}-{i:05d}"
        ws = _Workspace(
            index=i,
            id=_cuid(rng, next(ids)),
            project=project,
            name=f"{_VERBS[i % len(_VERBS)]} {word} #{i}" + (" — ünïcode ✓" if i == 3 else ""),
            status=status,
            kind=kind,
            commits=commits,
            base=rng.choice("BCD"),
            branch=f"{rng.choice(('feat', 'fix', 'chore'))}/{word}-{i}",
            dir=project.worktree_base / dirname,
            binary_commit=kind == "binary" or (commits > 0 and rng.random() < 0.15),
            odd_path_commit=i == _ODD_DIR_INDEX or (commits > 0 and rng.random() < 0.05),
            row={},
            agent_sessions=[],
            terminal_sessions=[],
        )
        ws.row = _workspace_row(ws, rng, generation)
        n_agent = rng.choices((0, 1, 2, 3), weights=(25, 40, 25, 10))[0]
        n_term = rng.choices((0, 1, 2), weights=(50, 35, 15))[0]
        created = ws.row["createdAt"]
        for n, target in ((n_agent, ws.agent_sessions), (n_term, ws.terminal_sessions)):
            for _ in range(n):
                s_created = created + rng.randrange(60_000, 3_600_000)
                session = {
                    "id": _cuid(rng, next(ids)),
                    "workspaceId": ws.id,
                    "status": rng.choice(_SESSION_STATUS),
                    "createdAt": s_created,
                    "updatedAt": s_created + rng.randrange(0, 86_400_000),
                }
                if target is ws.agent_sessions:
                    session["provider"] = "CODEX" if rng.random() < 0.3 else "CLAUDE"
                    session["workflow"] = rng.choice(("explore", "implement", "test"))
                target.append(session)
        has_sessions = bool(ws.agent_sessions or ws.terminal_sessions)
        # A few rows disagree with their sessions (sessions deleted later): realistic noise.
        ws.row["hasHadSessions"] = int(has_sessions != (rng.random() < 0.03))
        # Fields that came later draw from their own stream: the draws above stay as they were.
        ws.row.update(_later_fields(i, ws.row, extra))
        for session in ws.agent_sessions:
            _name_and_model(session, extra, generation)
        if 0 <= i - _REASON_START < len(_REASON_SHOWCASE):
            _show_reason(ws, _REASON_SHOWCASE[i - _REASON_START], extra, ids, statuses, generation)
        project.workspaces.append(ws)
    return plan


def _later_fields(i: int, row: dict, rng: random.Random) -> dict:
    """Auto-iteration and ratchet-dispatch fields (gen 2 on; the stalled flag gen 3 on). The
    first 28 workspaces cycle through every value; later ones are random."""
    has_pr = row["prState"] != "NONE"
    if i < 28:
        auto = i % 4 == 1  # i = 1, 5, ..., 25: every auto-iteration status once
        status = _AUTO_ITERATION_STATUS[(i // 4) % 7] if auto else None
        outcome = (None, *_DISPATCH_OUTCOMES)[i % 4] if has_pr else None
        retries = 1 + (i // 4) % 3 if outcome == "DIED" else 0
        stalled = outcome in ("COMPLETED", "DIED") and i % 3 == 0
    else:
        auto = rng.random() < 0.08
        status = (
            rng.choices(_AUTO_ITERATION_STATUS, weights=(15, 30, 15, 15, 10, 10, 5))[0]
            if auto
            else None
        )
        outcome = (
            rng.choices((None, *_DISPATCH_OUTCOMES), weights=(55, 15, 20, 10))[0]
            if has_pr and row["ratchetEnabled"]
            else None
        )
        retries = rng.randint(1, 3) if outcome == "DIED" else 0
        stalled = outcome in ("COMPLETED", "DIED") and rng.random() < 0.3
    return {
        "mode": "AUTO_ITERATION" if auto else "STANDARD",
        "autoIterationStatus": status,
        "ratchetDispatchOutcome": outcome,
        "ratchetDispatchRetryCount": retries,
        "ratchetDispatchStalled": int(stalled),
    }


def _name_and_model(session: dict, rng: random.Random, generation: int) -> None:
    """An agent session's tab name (sometimes none) and model; gen 1 sessions are all Claude."""
    name = rng.choice(_SESSION_NAMES) if rng.random() < 0.7 else None
    models = _CODEX_MODELS if session.get("provider") == "CODEX" else _CLAUDE_MODELS
    pick = rng.random()
    session["name"] = name
    session["model"] = (_CLAUDE_MODELS if generation == 1 else models)[int(pick * len(models))]


def _show_reason(
    ws: _Workspace,
    entry: tuple[str, str, dict, str | None],
    rng: random.Random,
    ids: Iterator[int],
    statuses: Sequence[str],
    generation: int,
) -> None:
    """Make ``ws`` a status-reason showcase workspace (see _REASON_SHOWCASE)."""
    _, status, fields, role = entry
    ws.status = status if status in statuses else "READY"
    if ws.kind == "archived":  # the drawn status was ARCHIVED: it gets a worktree after all
        ws.kind = "clean"
    row = ws.row
    row.update(_QUIET_ROW)
    row.update(fields)
    row["status"] = ws.status
    if generation == 3:  # derived there, and the conflict is a stored fact
        del row["ratchetState"]
    else:
        del row["hasMergeConflict"]
        if generation == 1 and row["ratchetState"] == "MERGE_CONFLICT":  # came in gen 2
            row["ratchetState"] = "IDLE"
    has_pr = row["prState"] != "NONE"
    number = 1000 + ws.index if has_pr else None
    row["prNumber"] = number
    row["prUrl"] = (
        f"https://github.com/demo-org/{ws.project.slug}/pull/{number}" if has_pr else None
    )
    row["prUpdatedAt"] = row["createdAt"] + 3_600_000 if has_pr else None
    if role is None:
        ws.agent_sessions = []
        if not row["hasHadSessions"]:
            ws.terminal_sessions = []
        return
    if ws.agent_sessions:
        del ws.agent_sessions[1:]
    else:
        created = row["createdAt"] + rng.randrange(60_000, 3_600_000)
        session = {
            "id": _cuid(rng, next(ids)),
            "workspaceId": ws.id,
            "createdAt": created,
            "updatedAt": created + rng.randrange(0, 86_400_000),
            "provider": "CLAUDE",
            "workflow": "implement",
        }
        _name_and_model(session, rng, generation)
        ws.agent_sessions.append(session)
    ws.agent_sessions[0]["status"] = _ROLE_SESSION_STATUS.get(role, "IDLE")
    ws.session_roles.append((ws.agent_sessions[0]["id"], role))
    row["hasHadSessions"] = 1


def _workspace_row(ws: _Workspace, rng: random.Random, generation: int) -> dict:
    """The workspace in the app's logical vocabulary (see ``app_schema.app_rows``)."""
    i = ws.index
    # gen 1 has no MERGE_CONFLICT ratchet state (it came in gen 2); gen 3 derives the state.
    ratchet_states = (
        RATCHET_STATE
        if generation > 1
        else tuple(r for r in RATCHET_STATE if r != "MERGE_CONFLICT")
    )
    # The first 28 workspaces cover every (prState, prCiStatus) pair and every ratchet and
    # run-script state; later ones are random.
    if i < len(PR_STATE) * len(PR_CI_STATUS):
        pr_state = PR_STATE[i % len(PR_STATE)]
        ci = PR_CI_STATUS[(i // len(PR_STATE)) % len(PR_CI_STATUS)]
        ratchet = ratchet_states[i % len(ratchet_states)]
        run_script = RUN_SCRIPT_STATUS[(i + 3) % len(RUN_SCRIPT_STATUS)]
        conflict = i % 5 == 2
    else:
        pr_state = rng.choices(PR_STATE, weights=(30, 10, 25, 8, 10, 12, 5))[0]
        ci = rng.choice(PR_CI_STATUS)
        ratchet = rng.choice(ratchet_states)
        run_script = rng.choices(RUN_SCRIPT_STATUS, weights=(50, 5, 25, 5, 10, 5))[0]
        conflict = rng.random() < 0.1
    if pr_state == "NONE":
        ci = "UNKNOWN" if i >= 28 else ci
    created = _BASE_MS + i * 60_000 + rng.randrange(0, 59_000)
    has_pr = pr_state != "NONE"
    number = 1000 + i if has_pr else None
    # prUpdatedAt NULL with UNKNOWN CI = checks never fetched; set = fetched, no checks.
    fetched = has_pr and not (ci == "UNKNOWN" and i % 2 == 0)
    review = (
        rng.choice((None, "APPROVED", "CHANGES_REQUESTED", "REVIEW_REQUIRED")) if has_pr else None
    )
    row = {
        "id": ws.id,
        "projectId": ws.project.id,
        "name": ws.name,
        "status": ws.status,
        "worktreePath": None if ws.kind == "no_path" else str(ws.dir),
        "branchName": ws.branch,
        "runScriptStatus": run_script,
        "prUrl": f"https://github.com/demo-org/{ws.project.slug}/pull/{number}" if has_pr else None,
        "prNumber": number,
        "prState": pr_state,
        "prReviewState": review,
        "prCiStatus": ci,
        "prUpdatedAt": created + rng.randrange(3_600_000, 7 * 86_400_000) if fetched else None,
        "ratchetEnabled": int(rng.random() < 0.75),
        "hasHadSessions": 0,  # set once the sessions are drawn
        "createdAt": created,
        "updatedAt": created + rng.randrange(0, 7 * 86_400_000),
    }
    if generation == 3:
        row["hasMergeConflict"] = int(conflict and has_pr)
    else:
        row["ratchetState"] = ratchet
    return row


# DateTime columns of the logical rows, and how the demo writes them. The app's current client
# (Prisma's better-sqlite3 adapter) writes ISO-8601 text with a +00:00 offset; databases that
# older engines wrote hold epoch-ms integers, and rows written by plain SQL hold SQL's
# 'YYYY-MM-DD HH:MM:SS'. Every tenth row takes the other two, so every encoding is there.
_DATETIME_FIELDS = ("createdAt", "updatedAt", "prUpdatedAt")


def _encode_datetime(ms: int | None, row_index: int) -> int | str | None:
    if ms is None:
        return None
    if row_index % 10 == 7:
        return ms
    stamp = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    if row_index % 10 == 9:
        return stamp.strftime("%Y-%m-%d %H:%M:%S")
    return stamp.isoformat(timespec="milliseconds")


def _encoded(rows: Sequence[dict], first_index: int = 0) -> list[dict]:
    return [
        {
            k: _encode_datetime(v, first_index + n) if k in _DATETIME_FIELDS else v
            for k, v in row.items()
        }
        for n, row in enumerate(rows)
    ]


# --------------------------------------------------------------------------------------------
# Git
# --------------------------------------------------------------------------------------------


def _git(*args: str | Path, cwd: Path | None = None, data: bytes | None = None) -> None:
    cmd = ["git", *_GIT_CONFIG, *(str(a) for a in args)]
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        input=data,
        capture_output=True,
        env={**os.environ, **_GIT_ENV},
        check=False,
    )
    if proc.returncode != 0:
        stderr = proc.stderr.decode(errors="replace").strip()
        raise DemoError(f"git {' '.join(str(a) for a in args[:3])} failed in {cwd}: {stderr}")


def _file_cmd(path: str, data: bytes) -> bytes:
    # fast-import filemodify with inline data; the path is the last field, spaces are fine.
    return b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(data), data)


def _commit(ref: str, mark: int, when: int, message: str, body: bytes, parent: int | None) -> bytes:
    msg = message.encode()
    header = b"commit %s\nmark :%d\nauthor %s %d +0000\ncommitter %s %d +0000\ndata %d\n%s\n" % (
        ref.encode(),
        mark,
        _IDENT.encode(),
        when,
        _IDENT.encode(),
        when,
        len(msg),
        msg,
    )
    if parent is not None:
        header += b"from :%d\n" % parent
    return header + body + b"\n"


def _binary(seed: int, size: int = 96) -> bytes:
    rng = random.Random(seed)
    return b"\x00\x89PNG\r\n" + bytes(rng.randrange(256) for _ in range(size))


_APP_PY = "".join(f"def step_{n}():\n    return {n}\n\n" for n in range(6)).encode()
_UTIL_PY = b'"""Helpers."""\n\n\ndef clamp(x, lo, hi):\n    return max(lo, min(hi, x))\n'


def _main_history(project: _Project) -> tuple[bytes, dict[str, int]]:
    """main: A (files) -> B (edit app.py) -> C (edit README) -> D (edit notes); origin gets C,
    so branches forked from D differ between merge-base with origin/main and with main."""
    readme = f"# {project.name}\n\nA tiny demo repository.\n".encode()
    marks = {"A": 1, "B": 2, "C": 3, "D": 4}
    out = _commit(
        "refs/heads/main",
        1,
        _BASE_S,
        "Initial commit",
        _file_cmd("README.md", readme)
        + _file_cmd("src/app.py", _APP_PY)
        + _file_cmd("src/util.py", _UTIL_PY)
        + _file_cmd("docs/notes.txt", b"notes\n" * 4)
        + _file_cmd("assets/logo.bin", _binary(project.index)),
        None,
    )
    out += _commit(
        "refs/heads/main",
        2,
        _BASE_S + 60,
        "Add step",
        _file_cmd("src/app.py", _APP_PY + b"def step_more():\n    return -1\n"),
        None,
    )
    out += _commit(
        "refs/heads/main",
        3,
        _BASE_S + 120,
        "Readme",
        _file_cmd("README.md", readme + b"\nUsage: none.\n"),
        None,
    )
    out += _commit(
        "refs/heads/main",
        4,
        _BASE_S + 180,
        "Notes",
        _file_cmd("docs/notes.txt", b"notes\n" * 5),
        None,
    )
    return out, marks


def _branch_history(ws: _Workspace, marks: dict[str, int], next_mark: int) -> tuple[bytes, int]:
    ref = f"refs/heads/{ws.branch}"
    if ws.commits == 0:
        return b"reset %s\nfrom :%d\n\n" % (ref.encode(), marks[ws.base]), next_mark
    out = b""
    parent: int | None = marks[ws.base]
    for c in range(ws.commits):
        body = _file_cmd(
            f"src/feature_{ws.index}.py",
            "".join(f"VALUE_{n} = {n}\n" for n in range(3 * (c + 1))).encode(),
        )
        if c == 0:
            body += _file_cmd("src/util.py", _UTIL_PY + b"\n\ndef twice(x):\n    return 2 * x\n")
            if ws.binary_commit:
                body += _file_cmd(f"assets/data_{ws.index}.bin", _binary(ws.index + 7))
            if ws.odd_path_commit:
                body += _file_cmd(f"odd dir/naïve file {ws.index}.txt", b"odd\n")
        if c == 1:
            body += b"D docs/notes.txt\n"
        out += _commit(
            ref, next_mark, _BASE_S + 600 + ws.index, f"{ws.name}: step {c + 1}", body, parent
        )
        parent = None  # later commits continue from the branch tip
        next_mark += 1
    return out, next_mark


def _apply_local_state(ws: _Workspace) -> None:
    """Uncommitted changes in the worktree: plain file writes, one `git add` when staged."""
    d = ws.dir
    kind = ws.kind
    if kind in ("unstaged", "mixed"):
        with open(d / "src" / "app.py", "ab") as f:
            f.write(b"\n# local edit\nLOCAL = True\n")
    if kind in ("staged", "mixed"):
        with open(d / "README.md", "ab") as f:
            f.write(b"\nStaged change.\n")
        _git("add", "README.md", cwd=d)
    if kind in ("untracked", "mixed"):
        (d / "scratch").mkdir(exist_ok=True)
        (d / "scratch" / f"todo-{ws.index}.md").write_bytes(b"- [ ] try it\n")
    if kind == "deleted":
        (d / "src" / "util.py").unlink()
    if kind == "binary":
        (d / "assets" / "logo.bin").write_bytes(_binary(ws.index + 1000))


def _build_project(project: _Project) -> int:
    """Repo, optional bare origin, all branches, then the worktrees. Returns worktrees on disk."""
    project.repo.mkdir(parents=True)
    project.worktree_base.mkdir(parents=True)
    _git("init", "-q", "-b", "main", project.repo)
    stream, marks = _main_history(project)
    next_mark = 100
    for ws in project.workspaces:
        if ws.kind in ("archived", "no_path", "missing_never", "not_repo"):
            continue
        part, next_mark = _branch_history(ws, marks, next_mark)
        stream += part
    _git("fast-import", "--quiet", cwd=project.repo, data=stream + b"done\n")
    _git("reset", "-q", "--hard", "main", cwd=project.repo)
    if project.origin is not None:
        _git("init", "-q", "--bare", "-b", "main", project.origin)
        _git("remote", "add", "origin", project.origin, cwd=project.repo)
        # origin/main one commit behind local main (see _main_history).
        _git("push", "-q", "origin", "main~1:refs/heads/main", cwd=project.repo)
    present = 0
    for ws in project.workspaces:
        if ws.kind == "not_repo":
            ws.dir.mkdir()
            (ws.dir / "README.md").write_bytes(b"not a git worktree\n")
            continue
        if ws.kind in ("archived", "no_path", "missing_never"):
            continue
        _git("worktree", "add", "-q", ws.dir, ws.branch, cwd=project.repo)
        if ws.kind == "missing_removed":
            shutil.rmtree(ws.dir)  # git still lists it (prunable): a vanished worktree
            continue
        _apply_local_state(ws)
        present += 1
    return present


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _prepare_root(root: Path, force: bool) -> None:
    if root.exists() and not root.is_dir():
        raise DemoError(f"demo root {root} exists and is not a directory")
    if root.exists() and any(root.iterdir()):
        if not force:
            raise DemoError(f"demo root {root} is not empty; pass force=True (--force) to rebuild")
        if not (root / MARKER).exists():
            # Guard against `--root . --force` style accidents: only delete what we built.
            raise DemoError(
                f"demo root {root} is not empty and was not built by the demo "
                f"(no {MARKER} file); refusing to delete it"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("built by reconcile_pipeline.demo; safe to delete\n")


def _missing_side_rows(all_ws: Sequence[_Workspace]) -> list[tuple[str, str]]:
    """gen 3 side rows the demo leaves out: every third workspace whose values in that table
    are the app's defaults (the app reads a missing row as its defaults)."""
    missing = []
    for ws in all_ws:
        if ws.index % 3:
            continue
        for table in SIDE_TABLES:
            defaults = side_defaults(table)
            if all(ws.row.get(k, v) == v for k, v in defaults.items()):
                missing.append((ws.id, table))
    return missing


def build_demo_app(
    root: Path | str,
    workspaces: int = 200,
    projects: int | None = None,
    seed: int = 0,
    *,
    generation: int = CURRENT_GENERATION,
    force: bool = False,
    max_workers: int | None = None,
) -> DemoApp:
    """Build the demo app under ``root``: ``root/app.db`` plus repos, remotes and worktrees.

    Deterministic for ``seed`` (ids, rows, commit ids). ``workspaces`` counts Workspace rows,
    archived ones included; ``generation`` is the app's schema generation the DB is built in.
    Refuses a non-empty ``root`` unless ``force`` (then deletes it, but only if it carries the
    demo marker).
    """
    if workspaces < 1:
        raise ValueError("workspaces must be >= 1")
    if generation not in GENERATIONS:
        raise ValueError(f"generation must be one of {GENERATIONS}, got {generation!r}")
    projects = max(2, workspaces // 40) if projects is None else projects
    if projects < 1:
        raise ValueError("projects must be >= 1")
    projects = min(projects, workspaces)
    root = Path(root).expanduser().resolve()
    if shutil.which("git") is None:
        raise DemoError("git is not installed")
    _prepare_root(root, force)
    plan = _plan(root, workspaces, projects, seed, generation)

    workers = max_workers or min(len(plan), max(2, 2 * (os.cpu_count() or 1)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        worktrees = sum(pool.map(_build_project, plan))

    all_ws = [ws for p in plan for ws in p.workspaces]
    agents = [s for ws in all_ws for s in ws.agent_sessions]
    terminals = [s for ws in all_ws for s in ws.terminal_sessions]
    rows = app_rows(
        generation,
        projects=_encoded(
            [
                {
                    "id": p.id,
                    "name": p.name,
                    "slug": p.slug,
                    "repoPath": str(p.repo),
                    "worktreeBasePath": str(p.worktree_base),
                    "defaultBranch": "main",
                    "isArchived": 0,
                    "createdAt": _BASE_MS - 86_400_000,
                    "updatedAt": _BASE_MS,
                }
                for p in plan
            ]
        ),
        workspaces=_encoded([ws.row for ws in all_ws]),
        agent_sessions=_encoded(agents),
        terminal_sessions=_encoded(terminals, first_index=3),
        missing_side_rows=_missing_side_rows(all_ws) if generation == 3 else (),
    )
    url = f"sqlite:///{root / APP_DB_NAME}"
    engine = sa.create_engine(url)
    try:
        create_app_schema(engine, generation)
        with engine.begin() as conn:
            insert_app_rows(conn, rows)
    finally:
        engine.dispose()
    return DemoApp(
        root=root,
        app_db_url=url,
        generation=generation,
        projects=len(plan),
        workspaces=len(all_ws),
        active_workspaces=sum(ws.status != "ARCHIVED" for ws in all_ws),
        worktrees=worktrees,
        agent_sessions=len(agents),
        terminal_sessions=len(terminals),
        session_roles=tuple(pair for ws in all_ws for pair in ws.session_roles),
    )


_TOOLS = ("ExitPlanMode", "AskUserQuestion", "Bash", "Read", "Edit")
# Pending requests' inputs, as the app stores them (src/shared/pending-request-types.ts).
_QUESTIONS = {
    "questions": [
        {
            "question": "Which branch should the fix go on?",
            "header": "Branch",
            "options": [{"label": "main"}, {"label": "release"}],
            "multiSelect": False,
        }
    ]
}
_TOOL_INPUTS: dict[str, dict] = {
    "ExitPlanMode": {"plan": "1. Add the index\n2. Backfill the column\n3. Test"},
    "AskUserQuestion": _QUESTIONS,
    "Bash": {"command": "npm test -- --watch=false"},
    "Read": {"file_path": "src/app.py"},
    "Edit": {"file_path": "src/util.py", "old_string": "lo", "new_string": "low"},
}
_ERRORS = (
    "Agent process failed to start: spawn claude ENOENT",
    "Session crashed: out of memory",
    "Provider rejected the request: rate limited",
)


def _iso_z(ms: int) -> str:
    """JS ``Date.toISOString()``: UTC, milliseconds, a ``Z``."""
    stamp = dt.datetime.fromtimestamp(ms // 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{ms % 1000:03d}Z"


def _state(
    phase: str,
    process: str,
    activity: str,
    at: int,
    last_exit: dict | None = None,
    error: str | None = None,
) -> dict:
    """The grown document's fields of one entry, ``at`` ms after the demo's base time."""
    return {
        "phase": phase,
        "processState": process,
        "activity": activity,
        "updatedAt": _iso_z(_BASE_MS + at),
        "lastExit": last_exit,
        "errorMessage": error,
    }


def _exit(code: int | None, at: int, unexpected: bool) -> dict:
    return {"code": code, "timestamp": _iso_z(_BASE_MS + at), "unexpected": unexpected}


_RUNNING = ("running", "alive", "WORKING")
_IDLE = ("idle", "alive", "IDLE")
_H = 3_600_000
# Sessions of the status-reason showcase (_REASON_SHOWCASE): their runtime entry, and the
# persisted status of their row.
_ROLE_RUNTIME: dict[str, dict] = {
    "permission": {
        "isWorking": True,
        "pendingRequest": {"toolName": "Bash", "input": {"command": "rm -rf node_modules"}},
        **_state(*_RUNNING, 10 * _H),
    },
    "plan_approval": {
        "isWorking": True,
        "pendingRequest": {"toolName": "ExitPlanMode", "input": _TOOL_INPUTS["ExitPlanMode"]},
        **_state(*_RUNNING, 11 * _H),
    },
    "question": {
        "isWorking": True,
        "pendingRequest": {"toolName": "AskUserQuestion", "input": _QUESTIONS},
        **_state(*_RUNNING, 12 * _H),
    },
    "error": {
        "isWorking": False,
        "pendingRequest": None,
        **_state("error", "stopped", "IDLE", 13 * _H, error=_ERRORS[0]),
    },
    "unexpected_exit": {
        "isWorking": False,
        "pendingRequest": None,
        **_state("idle", "stopped", "IDLE", 14 * _H, last_exit=_exit(137, 14 * _H, True)),
    },
    "working": {"isWorking": True, "pendingRequest": None, **_state(*_RUNNING, 15 * _H)},
    "starting": {
        "isWorking": False,
        "pendingRequest": None,
        **_state("starting", "alive", "IDLE", 16 * _H),
    },
}
_ROLE_SESSION_STATUS = {
    "permission": "RUNNING",
    "plan_approval": "RUNNING",
    "question": "RUNNING",
    "error": "FAILED",
    "unexpected_exit": "FAILED",
    "working": "RUNNING",
    "starting": "IDLE",
}
# The document's fixed start (agent sessions by id = in the order the demo made them), so that
# every kind of entry exists in any demo: the six of the first document's shape (two of them
# still in that shape: the rest of their fields take the defaults), then the grown document's
# phases, exits and errors, pending requests recognised by their input (the app's ACP
# classification) and the two halves of "working" (activity, or phase running).
_FIXED_RUNTIME: tuple[dict, ...] = (
    {
        "isWorking": True,
        "pendingRequest": {"toolName": "ExitPlanMode", "input": _TOOL_INPUTS["ExitPlanMode"]},
        **_state(*_RUNNING, 1 * _H),
    },
    {
        "isWorking": False,
        "pendingRequest": {"toolName": "AskUserQuestion", "input": _QUESTIONS},
        **_state(*_IDLE, 2 * _H),
    },
    {"isWorking": True, "pendingRequest": {"toolName": "Bash"}, **_state(*_RUNNING, 3 * _H)},
    {"isWorking": True, "pendingRequest": None},
    {
        "isWorking": False,
        "pendingRequest": None,
        **_state("idle", "stopped", "IDLE", 4 * _H, last_exit=_exit(0, 4 * _H, False)),
    },
    {"isWorking": False, "pendingRequest": {"toolName": "ExitPlanMode"}},
    {"isWorking": False, "pendingRequest": None, **_state("starting", "alive", "IDLE", 5 * _H)},
    {
        "isWorking": False,
        "pendingRequest": None,
        **_state("error", "stopped", "IDLE", 6 * _H, error=_ERRORS[1]),
    },
    {
        "isWorking": False,
        "pendingRequest": None,
        **_state("idle", "stopped", "IDLE", 7 * _H, last_exit=_exit(None, 7 * _H, True)),
    },
    {
        "isWorking": False,
        "pendingRequest": None,
        **_state("error", "stopped", "IDLE", 8 * _H, last_exit=_exit(1, 8 * _H, True)),
    },
    {"isWorking": False, "pendingRequest": None, **_state("loading", "unknown", "IDLE", 9 * _H)},
    {"isWorking": False, "pendingRequest": None, **_state("stopping", "alive", "IDLE", 9 * _H)},
    {
        "isWorking": True,
        "pendingRequest": {"toolName": "Plan", "input": {"type": "ExitPlanMode", "plan": "Ship"}},
        **_state(*_RUNNING, 10 * _H),
    },
    {
        "isWorking": False,
        "pendingRequest": {"toolName": "ask_user", "input": _QUESTIONS},
        **_state(*_IDLE, 11 * _H),
    },
    {"isWorking": True, "pendingRequest": None, **_state("idle", "alive", "WORKING", 12 * _H)},
    {"isWorking": False, "pendingRequest": None, **_state("running", "alive", "IDLE", 13 * _H)},
)
_FIRST_FIXED = 6  # the first document's fixed start: later positions draw as they did then


def _random_runtime(working: bool, tool: str | None, rng: random.Random) -> dict:
    """A runtime entry around the first document's two draws; the rest from ``rng``."""
    request = None
    if tool:
        request = {"toolName": tool}
        if rng.random() < 0.7:
            request["input"] = _TOOL_INPUTS[tool]
    entry = {"isWorking": working, "pendingRequest": request}
    if rng.random() < 0.15:
        return entry  # the first document's shape: defaults for the rest
    if working:
        phase, process, activity = _RUNNING
    else:
        phase = rng.choices(("idle", "starting", "loading", "stopping", "error"), (88, 4, 2, 2, 4))[
            0
        ]
        activity = "IDLE"
        if phase == "idle":
            process = rng.choices(("alive", "stopped", "unknown"), (55, 40, 5))[0]
        else:
            process = {"error": "stopped", "loading": "unknown"}.get(phase, "alive")
    at = rng.randrange(0, 30 * 24 * _H)
    last_exit = None
    if process == "stopped" and rng.random() < 0.6:
        unexpected = rng.random() < 0.15
        last_exit = _exit(rng.choice((1, 137, None)) if unexpected else 0, at, unexpected)
    error = rng.choice((*_ERRORS, None)) if phase == "error" else None
    entry.update(_state(phase, process, activity, at, last_exit, error))
    if rng.random() < 0.3:
        del entry["updatedAt"]  # then the session row's updatedAt
    return entry


def demo_session_runtime(app: DemoApp, seed: int = 0) -> dict:
    """Write ``root/session_runtime.json`` (the session-runtime JSON contract) and return it:
    ``{"sessions": {"<agent session id>": {"isWorking": bool, "pendingRequest":
    {"toolName": str, "input"?: {...}} | null, "phase"?, "processState"?, "activity"?,
    "updatedAt"?, "lastExit"?, "errorMessage"?}}}`` for every agent session of the demo: a fixed
    start (_FIXED_RUNTIME), then random, with the showcase's sessions pinned (_ROLE_RUNTIME)."""
    table = agent_session_table(app.generation)
    engine = sa.create_engine(app.app_db_url)
    try:
        with engine.connect() as conn:
            sessions = sa.table(table, sa.column("id"))
            ids = list(conn.execute(sa.select(sessions.c.id).order_by(sessions.c.id)).scalars())
    finally:
        engine.dispose()
    rng = random.Random(seed)
    extra = random.Random(f"reconcile-demo-runtime:{seed}")
    roles = dict(app.session_roles)
    sessions = {}
    for n, sid in enumerate(ids):
        if n >= _FIRST_FIXED:  # drawn as in the first document, even where it is now fixed
            working = rng.random() < 0.3
            tool = rng.choice(_TOOLS) if rng.random() < 0.25 else None
        if sid in roles:
            entry = _ROLE_RUNTIME[roles[sid]]
        elif n < len(_FIXED_RUNTIME):
            entry = _FIXED_RUNTIME[n]
        else:
            entry = _random_runtime(working, tool, extra)
        sessions[sid] = json.loads(json.dumps(entry))  # a copy: the tables stay as they are
    doc = {"sessions": sessions}
    path = app.session_runtime_path
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)  # atomic: a reader never sees half a file
    return doc
