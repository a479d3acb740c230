"""The demo app: real git repos and worktrees, checked against its own app DB, in every schema
generation of the app."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from reconcile_pipeline.core.db import app_engine
from reconcile_pipeline.core.extract import extract_workspaces
from reconcile_pipeline.core.fields import (
    PR_CI_STATUS,
    PR_STATE,
    RATCHET_STATE,
    RUN_SCRIPT_STATUS,
    WORKSPACE_STATUS,
)
from reconcile_pipeline.demo.app_schema import TABLES
from reconcile_pipeline.demo.build import (
    _REASON_SHOWCASE,
    _REASON_START,
    DemoError,
    build_demo_app,
    demo_session_runtime,
)
from reconcile_pipeline_tests.support import expected
from reconcile_pipeline_tests.support.databases import fetch_rows
from reconcile_pipeline_tests.support.gitrepos import git

# The demo of each generation (``demo30_any_generation``) is built once: one worker.
pytestmark = pytest.mark.xdist_group("demo30")


def agent_table(demo) -> str:
    return "ClaudeSession" if demo.generation == 1 else "AgentSession"


def logical_workspaces(demo) -> list[dict]:
    """Workspace rows with gen 3's side-table values folded back in (a missing side row read as
    the app's defaults), under the gen 1/2 column names."""
    workspaces = fetch_rows(demo.app_db_url, 'SELECT * FROM "Workspace"')
    if demo.generation < 3:
        return workspaces
    side = {
        "WorkspacePR": {
            "url": "prUrl",
            "number": "prNumber",
            "state": "prState",
            "ciStatus": "prCiStatus",
            "syncedAt": "prUpdatedAt",
            "hasMergeConflict": "hasMergeConflict",
        },
        "WorkspaceRatchet": {
            "enabled": "ratchetEnabled",
            "dispatchOutcome": "ratchetDispatchOutcome",
            "dispatchRetryCount": "ratchetDispatchRetryCount",
            "dispatchStalled": "ratchetDispatchStalled",
        },
        "WorkspaceRunScript": {"status": "runScriptStatus"},
        "WorkspaceAutoIteration": {"mode": "mode", "status": "autoIterationStatus"},
    }
    defaults = {
        "prUrl": None,
        "prNumber": None,
        "prState": "NONE",
        "prCiStatus": "UNKNOWN",
        "prUpdatedAt": None,
        "hasMergeConflict": 0,
        "ratchetEnabled": 1,
        "ratchetDispatchOutcome": None,
        "ratchetDispatchRetryCount": 0,
        "ratchetDispatchStalled": 0,
        "runScriptStatus": "IDLE",
        "mode": "STANDARD",
        "autoIterationStatus": None,
    }
    out = []
    for ws in workspaces:
        merged = {**ws, **defaults}
        for table, names in side.items():
            found = fetch_rows(
                demo.app_db_url, f'SELECT * FROM "{table}" WHERE "workspaceId" = \'{ws["id"]}\''
            )
            if found:
                merged.update({logical: found[0][col] for col, logical in names.items()})
        out.append(merged)
    return out


def test_tables_are_the_generations(demo30_any_generation):
    demo = demo30_any_generation
    tables = {
        r["name"]
        for r in fetch_rows(demo.app_db_url, "SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    assert tables == set(TABLES[demo.generation])


def test_counts_and_db_contents(demo30_any_generation):
    demo = demo30_any_generation
    assert (demo.projects, demo.workspaces) == (2, 30)
    workspaces = logical_workspaces(demo)
    projects = fetch_rows(demo.app_db_url, 'SELECT * FROM "Project"')
    agents = fetch_rows(demo.app_db_url, f'SELECT * FROM "{agent_table(demo)}"')
    terminals = fetch_rows(demo.app_db_url, 'SELECT * FROM "TerminalSession"')
    assert len(workspaces) == 30 and len(projects) == 2
    assert (len(agents), len(terminals)) == (demo.agent_sessions, demo.terminal_sessions)
    assert demo.active_workspaces == sum(w["status"] != "ARCHIVED" for w in workspaces)
    statuses = set(WORKSPACE_STATUS) - ({"ARCHIVING"} if demo.generation == 1 else set())
    assert {w["status"] for w in workspaces} == statuses
    for column, values in (
        ("prState", PR_STATE),
        ("prCiStatus", PR_CI_STATUS),
        ("runScriptStatus", RUN_SCRIPT_STATUS),
    ):
        assert {w[column] for w in workspaces} == set(values), column
    if demo.generation < 3:  # stored; MERGE_CONFLICT only since gen 2
        states = set(RATCHET_STATE) - ({"MERGE_CONFLICT"} if demo.generation == 1 else set())
        assert {w["ratchetState"] for w in workspaces} == states
    else:  # derived: not stored, and the conflict is a stored fact
        assert "ratchetState" not in workspaces[0]
        assert {w["hasMergeConflict"] for w in workspaces} == {0, 1}
        for table in (
            "WorkspacePR",
            "WorkspaceRatchet",
            "WorkspaceRunScript",
            "WorkspaceAutoIteration",
        ):
            # Some workspaces have no side row: the app reads its defaults then.
            assert 0 < len(fetch_rows(demo.app_db_url, f'SELECT * FROM "{table}"')) < 30, table
    # every (prState, prCiStatus) pair exists
    assert len({(w["prState"], w["prCiStatus"]) for w in workspaces}) == 28
    # The app's encodings: DateTime as its client writes it (ISO-8601 with +00:00), as older
    # engines did (epoch ms) and as SQL defaults do; Boolean as 0/1.
    created = [w["createdAt"] for w in workspaces]
    assert any(isinstance(v, int) and v > 1e12 for v in created)
    assert any(isinstance(v, str) and v.endswith("+00:00") and "T" in v for v in created)
    assert any(isinstance(v, str) and len(v) == 19 and " " in v for v in created)
    assert {w["ratchetEnabled"] for w in workspaces} == {0, 1}
    assert {w["hasHadSessions"] for w in workspaces} == {0, 1}
    with_pr = [w for w in workspaces if w["prState"] != "NONE"]
    assert all(w["prUrl"] and w["prNumber"] for w in with_pr)
    assert any(w["prUpdatedAt"] is None for w in with_pr)
    assert all(s["updatedAt"] is not None and s["workflow"] for s in agents)
    if demo.generation > 1:
        assert {s["provider"] for s in agents} == {"CLAUDE", "CODEX"}
    assert sum(w["worktreePath"] is None for w in workspaces) == 1
    # Agent sessions have a tab name or none, and a model of their provider.
    assert None in {s["name"] for s in agents} and len({s["name"] for s in agents}) > 2
    models = {s["model"] for s in agents}
    assert {"sonnet", "opus"} <= models
    assert ("gpt-5-codex" in models) == (demo.generation > 1)
    # The auto-iteration and ratchet-dispatch fields: none in gen 1, every value from gen 2
    # (the stalled flag from gen 3).
    later = {
        "mode": {"STANDARD", "AUTO_ITERATION"},
        "autoIterationStatus": {
            None,
            *("IDLE", "RUNNING", "PAUSED", "COMPLETED", "MAX_ITERATIONS", "STOPPED", "FAILED"),
        },
        "ratchetDispatchOutcome": {None, "RUNNING", "COMPLETED", "DIED"},
        "ratchetDispatchStalled": {0, 1},
    }
    for field, values in later.items():
        if demo.generation == 1 or (field == "ratchetDispatchStalled" and demo.generation == 2):
            assert field not in workspaces[0], field
        else:
            assert {w[field] for w in workspaces} == values, field
    if demo.generation > 1:
        retries = {w["ratchetDispatchRetryCount"] for w in workspaces}
        assert 0 in retries and max(retries) > 0


def test_worktrees_are_real_git_worktrees(demo30_any_generation):
    demo = demo30_any_generation
    projects = {p["id"]: p for p in fetch_rows(demo.app_db_url, 'SELECT * FROM "Project"')}
    listed: dict[str, set[str]] = {}
    for pid, project in projects.items():
        porcelain = git(project["repoPath"], "worktree", "list", "--porcelain")
        listed[pid] = {
            line.removeprefix("worktree ")
            for line in porcelain.splitlines()
            if line.startswith("worktree ")
        }
    workspaces = logical_workspaces(demo)
    real, missing, not_repo = [], [], []
    for ws in workspaces:
        path = ws["worktreePath"]
        if ws["status"] == "ARCHIVED":
            assert path is None or not os.path.exists(path)
            continue
        if path is None:
            continue
        if not os.path.exists(path):
            missing.append(ws)
        elif path in listed[ws["projectId"]]:
            real.append(ws)
            # a linked worktree of the project repo, on the workspace's branch
            assert git(path, "rev-parse", "--abbrev-ref", "HEAD").strip() == ws["branchName"]
            common = git(path, "rev-parse", "--git-common-dir").strip()
            repo_git = Path(projects[ws["projectId"]]["repoPath"]) / ".git"
            assert Path(path, common).resolve() == repo_git.resolve()
            assert (Path(path) / ".git").is_file()  # linked worktrees have a .git *file*
        else:
            not_repo.append(ws)
    assert len(real) == demo.worktrees
    assert 1 <= len(missing) <= 2
    assert len(not_repo) == 1
    assert any(" " in ws["worktreePath"] for ws in real)  # odd path exists and works

    # The mix of git states the git-stats step must handle.
    states = {"clean": 0, "dirty": 0, "untracked_only": 0, "ahead": 0, "deleted": 0, "binary": 0}
    for ws in real:
        path = ws["worktreePath"]
        status = git(path, "status", "--porcelain").splitlines()
        states["clean" if not status else "dirty"] += 1
        if status and all(line.startswith("??") for line in status):
            states["untracked_only"] += 1
        if any(line[:2].strip() == "D" for line in status):
            states["deleted"] += 1
        if int(git(path, "rev-list", "--count", "main..HEAD")) > 0:
            states["ahead"] += 1
        base = git(path, "merge-base", "HEAD", "main").strip()
        if any(
            line.startswith("-\t-\t") for line in git(path, "diff", "--numstat", base).splitlines()
        ):
            states["binary"] += 1
    assert all(count > 0 for count in states.values()), states


def test_origin_remotes(demo30_any_generation):
    demo = demo30_any_generation
    repos = [p["repoPath"] for p in fetch_rows(demo.app_db_url, 'SELECT "repoPath" FROM "Project"')]
    with_origin = [r for r in repos if git(r, "remote").split() == ["origin"]]
    assert 1 <= len(with_origin) < len(repos)
    for repo in with_origin:
        # origin/main lags local main by one commit, so the two merge-bases can differ
        assert git(repo, "rev-parse", "origin/main") == git(repo, "rev-parse", "main~1")


def test_extract_on_demo(demo30_any_generation):
    demo = demo30_any_generation
    extract = extract_workspaces(app_engine(demo.app_db_url))
    assert extract.problems.empty
    assert len(extract.workspaces) == demo.active_workspaces
    assert "ARCHIVED" not in set(extract.workspaces["status"])
    live = set(WORKSPACE_STATUS) - {"ARCHIVED"} - ({"ARCHIVING"} if demo.generation == 1 else set())
    assert set(extract.workspaces["status"]) == live
    assert extract.generation == demo.generation
    active = set(extract.workspaces["workspace_id"])
    assert set(extract.sessions["workspace_id"]) <= active
    assert set(extract.sessions["kind"]) == {"agent", "terminal"}
    with_sessions = set(extract.sessions["workspace_id"])
    has_activity = set(
        extract.workspaces.loc[extract.workspaces["last_activity_at"].notna(), "workspace_id"]
    )
    assert has_activity == with_sessions


RUNTIME_KEYS = {
    "isWorking",
    "pendingRequest",
    "phase",
    "processState",
    "activity",
    "updatedAt",
    "lastExit",
    "errorMessage",
}


def test_session_runtime_json(demo30_any_generation):
    demo = demo30_any_generation
    doc = demo_session_runtime(demo)
    on_disk = json.loads(demo.session_runtime_path.read_text())
    assert on_disk == doc
    ids = {r["id"] for r in fetch_rows(demo.app_db_url, f'SELECT "id" FROM "{agent_table(demo)}"')}
    assert set(doc["sessions"]) == ids
    entries = list(doc["sessions"].values())
    assert all(expected.runtime_entry_ok(e) for e in entries)
    assert {e["isWorking"] for e in entries} == {True, False}
    tools = {e["pendingRequest"]["toolName"] if e["pendingRequest"] else None for e in entries}
    assert {None, "ExitPlanMode", "AskUserQuestion", "Bash"} <= tools
    requests = [e["pendingRequest"] for e in entries if e["pendingRequest"]]
    assert any("input" in r for r in requests) and any("input" not in r for r in requests)
    assert any(r.get("input", {}).get("type") == "ExitPlanMode" for r in requests)  # ACP plan
    # The grown document, and entries still in the first one's shape (defaults for the rest).
    assert all({"isWorking", "pendingRequest"} <= set(e) <= RUNTIME_KEYS for e in entries)
    assert any(set(e) == RUNTIME_KEYS for e in entries)
    assert any(set(e) == {"isWorking", "pendingRequest"} for e in entries)
    phases = {e.get("phase") for e in entries}
    assert {"starting", "error", "running", "idle"} <= phases
    assert {e.get("processState") for e in entries} >= {"alive", "stopped"}
    exits = [e["lastExit"] for e in entries if e.get("lastExit")]
    assert {x["unexpected"] for x in exits} == {True, False}
    assert any(e.get("errorMessage") for e in entries)
    # Deterministic for a seed.
    assert demo_session_runtime(demo) == doc


# WORKSPACE_STATUS_REASON_CODES of src/shared/workspace-status-reason.ts (6c25f7f9).
REASON_CODES = {
    *("NEEDS_PERMISSION", "NEEDS_PLAN_APPROVAL", "NEEDS_ANSWER", "SESSION_ERROR"),
    *("SETTING_UP", "SETUP_FAILED", "ARCHIVING", "ARCHIVED", "AGENT_WORKING"),
    *("STARTING_SESSION", "AUTO_ITERATING", "WAITING_FOR_CI", "FIXING_CI_FAILURES"),
    *("FIXING_REVIEW_COMMENTS", "FIXING_MERGE_CONFLICT", "MERGE_CONFLICT", "RATCHET_STALLED"),
    *("CHECKING_PR", "MERGED", "PR_CLOSED", "READY_TO_MERGE", "READY_FOR_REVIEW"),
    *("NO_SESSION_STARTED", "READY_FOR_NEXT_PROMPT"),
}
# Status reasons no live workspace of the generation can have under the app's 2026-08 rules:
# ARCHIVED workspaces are not extracted; gen 2 has no merge-conflict or stalled flag; at gen 3
# the ratchet state is derived, and an open PR that CI has a verdict on is RATCHET_VERIFY only
# when it has a conflict, which FIXING_MERGE_CONFLICT outranks: no CHECKING_PR.
UNREACHABLE = {
    2: {"ARCHIVED", "RATCHET_STALLED", "FIXING_MERGE_CONFLICT", "MERGE_CONFLICT"},
    3: {"ARCHIVED", "CHECKING_PR"},
}


@pytest.mark.parametrize("generation", (2, 3))
def test_demo_covers_every_status_reason(tmp_path, generation):
    """A 60-workspace demo with its runtime document has every status reason its generation's
    data allows (the reasons computed independently, by ``support.expected``)."""
    app = build_demo_app(tmp_path / "app", workspaces=60, generation=generation)
    demo_session_runtime(app)
    want = expected.expected_snapshots(app.app_db_path, app.session_runtime_path)
    codes = {row["status_reason_code"] for row in want.values()}
    assert codes == REASON_CODES - UNREACHABLE[generation]
    # Each showcase workspace has the reason it is there for, where the generation has it.
    by_index = {int(re.search(r"#(\d+)", r["name"]).group(1)): r for r in want.values()}
    for k, (reason, *_) in enumerate(_REASON_SHOWCASE):
        if reason not in UNREACHABLE[generation]:
            assert by_index[_REASON_START + k]["status_reason_code"] == reason, k


def test_deterministic_and_refuses_to_clobber(tmp_path):
    a = build_demo_app(tmp_path / "a", workspaces=8, seed=3)
    b = build_demo_app(tmp_path / "b", workspaces=8, seed=3)
    c = build_demo_app(tmp_path / "c", workspaces=8, seed=4)
    query = 'SELECT "id", "name", "status", "branchName", "prState", "createdAt" FROM "Workspace" ORDER BY "id"'
    assert fetch_rows(a.app_db_url, query) == fetch_rows(b.app_db_url, query)
    assert fetch_rows(a.app_db_url, query) != fetch_rows(c.app_db_url, query)
    branch = fetch_rows(a.app_db_url, query)[0]["branchName"]
    repo_a, repo_b = (
        fetch_rows(x.app_db_url, 'SELECT "repoPath" FROM "Project" ORDER BY "slug"')[0]["repoPath"]
        for x in (a, b)
    )
    assert git(repo_a, "rev-parse", f"refs/heads/{branch}") == git(
        repo_b, "rev-parse", f"refs/heads/{branch}"
    )

    with pytest.raises(DemoError, match="not empty"):
        build_demo_app(tmp_path / "a", workspaces=4)
    rebuilt = build_demo_app(tmp_path / "a", workspaces=4, force=True)
    assert rebuilt.workspaces == 4
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(DemoError, match="refusing to delete"):
        build_demo_app(foreign, workspaces=4, force=True)
    assert (foreign / "precious.txt").exists()
