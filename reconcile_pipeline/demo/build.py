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
from collections.abc import Sequence
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
        project.workspaces.append(ws)
    return plan


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
    )


_TOOLS = ("ExitPlanMode", "AskUserQuestion", "Bash", "Read", "Edit")


def demo_session_runtime(app: DemoApp, seed: int = 0) -> dict:
    """Write ``root/session_runtime.json`` (the session-runtime JSON contract) and return it:
    ``{"sessions": {"<agent session id>": {"isWorking": bool,
    "pendingRequest": {"toolName": str} | null}}}`` for every agent session of the demo."""
    table = agent_session_table(app.generation)
    engine = sa.create_engine(app.app_db_url)
    try:
        with engine.connect() as conn:
            sessions = sa.table(table, sa.column("id"))
            ids = list(conn.execute(sa.select(sessions.c.id).order_by(sessions.c.id)).scalars())
    finally:
        engine.dispose()
    rng = random.Random(seed)
    # Fixed start so that every case exists; then random.
    fixed = [
        (True, "ExitPlanMode"),
        (False, "AskUserQuestion"),
        (True, "Bash"),
        (True, None),
        (False, None),
        (False, "ExitPlanMode"),
    ]
    sessions = {}
    for n, sid in enumerate(ids):
        if n < len(fixed):
            working, tool = fixed[n]
        else:
            working = rng.random() < 0.3
            tool = rng.choice(_TOOLS) if rng.random() < 0.25 else None
        sessions[sid] = {
            "isWorking": working,
            "pendingRequest": {"toolName": tool} if tool else None,
        }
    doc = {"sessions": sessions}
    path = app.session_runtime_path
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)  # atomic: a reader never sees half a file
    return doc
