"""Bad input, table-driven: ONE app DB (SQLite without constraints, so it can hold what a broken
app DB holds) and real worktrees, with one bad thing per row, reconciled by ONE real run (with
``GitWorktrees(allowed_roots=...)`` set). Each case says where its per-row reason must show up
(the extract's ``problems``, or git's ``null_reasons``), and what the stored row must be. Every
other cell of a bad row, and every good row, must be reconciled normally.

Where a reason must be found: recorded in the pipeline DB (``reconcile_problem``, every reason of
the run) AND visible in what an operator sees in the UI (the run summary's ``problems`` table /
the coverage check's ``null_reasons``).

The app DB is in the app's schema generation 1, whose Workspace row holds every field (the cell
rules are the same in every generation; ``test_extract.py`` covers the side tables of gen 3).

Two kinds of input fail the whole run today, which would hide every other case here, so each is
its own test (same kind of app DB, one run): text that is not valid UTF-8 in a TEXT column, and
integers beyond 2**53 that still fit in 64 bits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from reconcile_pipeline.core.git_stats import NO_PATH
from reconcile_pipeline.core.ledger import DriftLedger
from reconcile_pipeline.defs.resources import GitWorktrees, SessionRuntime
from reconcile_pipeline_tests.support import gitrepos as gr
from reconcile_pipeline_tests.support.app_db import BASE_MS, AppDb
from reconcile_pipeline_tests.support.expected import consistency_problems, expected_git, read_table
from reconcile_pipeline_tests.support.runs import (
    add_partitions,
    check_evaluation,
    check_metadata,
    reconcile,
    resources,
    run_summary,
    table_rows,
)

# The cases read one module-scoped run (``bad_run``): one worker.
pytestmark = pytest.mark.xdist_group("bad_input_run")

ABSENT = object()  # the row must not be in the table
PROJECT = "proj"
BAD_BRANCH_PROJECT = "proj_bad_branch"
BAD_BRANCH = "--output=/tmp/reconcile-owned"


@dataclass(frozen=True)
class Case:
    id: str
    columns: dict[str, Any] = dc_field(default_factory=dict)  # Workspace columns over the template
    where: str | None = None  # "problems" | "null_reasons" | None (a good row)
    field: str | None = None  # the problems' field
    reason: str | None = None  # a substring of the reason
    stored: dict[str, Any] = dc_field(
        default_factory=dict
    )  # expected stored fields over the template
    worktree: str | None = "ok"  # key of WORKTREES; None: keep columns' worktreePath
    project: str = PROJECT


def ms(text: str) -> int:
    return int(pd.Timestamp(text).tz_convert("UTC").value // 1_000_000)


# Worktree keys (built in the fixture) -> path relative to the root, or a special value.
CASES: list[Case] = [
    # -- good rows, odd but valid values: reconciled normally ---------------------------------
    Case("ok_plain"),
    Case("dt_epoch_ms", {"createdAt": 1_735_689_600_123}, stored={"created_at": 1_735_689_600_123}),
    Case(
        "dt_sql_text",
        {"createdAt": "2025-01-02 03:04:05"},
        stored={"created_at": ms("2025-01-02T03:04:05Z")},
    ),
    Case(
        "dt_iso_z_millis",
        {"createdAt": "2025-01-02T03:04:05.678Z"},
        stored={"created_at": ms("2025-01-02T03:04:05.678Z")},
    ),
    Case(
        "dt_iso_offset",
        {"createdAt": "2025-01-02T05:04:05+02:00"},
        stored={"created_at": ms("2025-01-02T03:04:05Z")},
    ),
    Case(
        "dt_iso_nanos",
        {"createdAt": "2025-01-02T03:04:05.123456789Z"},
        stored={"created_at": ms("2025-01-02T03:04:05.123Z")},
    ),
    Case("dt_negative_before_1970", {"createdAt": -86_400_000}, stored={"created_at": -86_400_000}),
    Case(
        "pr_number_int32_max",
        {"prNumber": 2**31 - 1, "prUrl": "https://x.invalid/pr", "prState": "OPEN"},
        stored={"pr_number": 2**31 - 1},
    ),
    Case("bool_as_text_true", {"hasHadSessions": "true"}, stored={"has_had_sessions": True}),
    Case("name_100k_chars", {"name": "n" * 100_000}),
    Case("name_unicode", {"name": "Fix ünïcode ✓ — مرحبا 👩‍💻 \u202etxt"}),
    Case("worktree_unicode_path", worktree="unicode"),
    Case("worktree_detached_head", worktree="detached"),
    Case("worktree_shallow_no_merge_base", worktree="shallow"),
    Case("worktree_3000_changed_files", worktree="many"),
    Case("worktree_binary_files", worktree="binary"),
    # -- bad app DB cells: reason in the extract's problems, the cell never written -------------
    Case(
        "enum_status_unknown",
        {"status": "HIBERNATING"},
        "problems",
        "status",
        "unknown Workspace.status 'HIBERNATING'",
        {"status": "NEW"},
    ),
    Case(
        "enum_status_lowercase",
        {"status": "ready"},
        "problems",
        "status",
        "unknown Workspace.status 'ready'",
        {"status": "NEW"},
    ),
    Case(
        "enum_pr_state_unknown",
        {"prState": "SUPERSEDED"},
        "problems",
        "pr_state",
        "unknown Workspace.prState 'SUPERSEDED'",
        {"pr_state": "NONE"},
    ),
    Case(
        "enum_pr_ci_unknown",
        {"prCiStatus": "NEUTRAL"},
        "problems",
        "pr_ci_status",
        "unknown Workspace.prCiStatus 'NEUTRAL'",
        {"pr_ci_status": "UNKNOWN"},
    ),
    Case(
        "enum_ratchet_unknown",
        {"ratchetState": "PAUSED"},
        "problems",
        "ratchet_state",
        "unknown Workspace.ratchetState 'PAUSED'",
        {"ratchet_state": "IDLE"},
    ),
    Case(
        "enum_run_script_unknown",
        {"runScriptStatus": "CRASHED"},
        "problems",
        "run_script_status",
        "unknown Workspace.runScriptStatus 'CRASHED'",
        {"run_script_status": "IDLE"},
    ),
    Case(
        "null_name",
        {"name": None},
        "problems",
        "name",
        "NULL in NOT NULL column Workspace.name",
        {"name": None},
    ),
    Case(
        "null_status",
        {"status": None},
        "problems",
        "status",
        "NULL in NOT NULL column Workspace.status",
        {"status": "NEW"},
    ),
    Case(
        "null_created_at",
        {"createdAt": None},
        "problems",
        "created_at",
        "NULL in NOT NULL column Workspace.createdAt",
        {"created_at": None},
    ),
    Case(
        "null_ratchet_enabled",
        {"ratchetEnabled": None},
        "problems",
        "ratchet_enabled",
        "NULL in NOT NULL column Workspace.ratchetEnabled",
        {"ratchet_enabled": False},
    ),
    Case(
        "dt_garbage_text",
        {"createdAt": "yesterday"},
        "problems",
        "created_at",
        "unparseable DateTime Workspace.createdAt 'yesterday'",
        {"created_at": None},
    ),
    Case(
        "dt_impossible_date",
        {"createdAt": "2025-02-30 10:00:00"},
        "problems",
        "created_at",
        "unparseable DateTime Workspace.createdAt",
        {"created_at": None},
    ),
    Case(
        "dt_huge_number",
        {"createdAt": 1e300},
        "problems",
        "created_at",
        "unparseable DateTime Workspace.createdAt 1e+300",
        {"created_at": None},
    ),
    Case(
        "dt_pr_updated_garbage",
        {"prUpdatedAt": "soon"},
        "problems",
        "pr_updated_at",
        "unparseable DateTime Workspace.prUpdatedAt 'soon'",
        {"pr_updated_at": None},
    ),
    Case(
        "pr_number_negative",
        {"prNumber": -5},
        "problems",
        "pr_number",
        "prNumber -5 is negative",
        {"pr_number": None},
    ),
    Case(
        "pr_number_huge",
        {"prNumber": 1.2e21},
        "problems",
        "pr_number",
        "does not fit in 64 bits",
        {"pr_number": None},
    ),
    Case(
        "pr_number_fraction",
        {"prNumber": 12.5},
        "problems",
        "pr_number",
        "prNumber 12.5 is not an integer",
        {"pr_number": None},
    ),
    Case(
        "bool_garbage_text",
        {"ratchetEnabled": "maybe"},
        "problems",
        "ratchet_enabled",
        "non-boolean Workspace.ratchetEnabled 'maybe'",
        {"ratchet_enabled": False},
    ),
    Case(
        "bool_two",
        {"hasHadSessions": 2},
        "problems",
        "has_had_sessions",
        "non-boolean Workspace.hasHadSessions 2",
        {"has_had_sessions": False},
    ),
    Case(
        "duplicate_id",
        {"name": "first dup"},
        "problems",
        "workspace_id",
        "duplicate Workspace.id 'duplicate_id'; kept the first row",
        {"name": "first dup"},
    ),
    Case(
        "null_id",
        {"id": None, "name": "row without id"},
        "problems",
        "workspace_id",
        "NULL Workspace.id; row skipped",
        {"*": ABSENT},
    ),
    Case(
        "name_blob_not_utf8",
        {"name": b"\xff\xfe not text"},
        "problems",
        "name",
        "is not text",
        {"name": None},
    ),
    Case(
        "session_updated_at_garbage",
        {},
        "problems",
        "last_activity_at",
        "unparseable ClaudeSession.updatedAt 'garbage'",
        {"last_activity_at": None},
    ),
    # -- bad worktrees: reason in git's null_reasons, stats null, the rest reconciled --------------
    Case("path_null", where="null_reasons", reason="no worktree path", worktree=None),
    Case(
        "path_blob_not_utf8",
        where="problems",
        field="worktree_path",
        reason="Workspace.worktreePath b'",
        worktree="non_utf8_blob",
    ),
    Case(
        "path_escapes_by_dotdot",
        where="null_reasons",
        reason="worktree path outside allowed roots",
        worktree="dotdot",
    ),
    Case(
        "path_escapes_by_symlink",
        where="null_reasons",
        reason="worktree path outside allowed roots",
        worktree="symlink",
    ),
    # Resolving it against the step process's working directory (here: the test root, where
    # it names a real worktree inside the allowed roots) would make the answer depend on where
    # the run happens to execute.
    Case("path_relative", where="null_reasons", reason="not absolute", worktree="relative"),
    Case(
        "path_is_a_file",
        where="null_reasons",
        reason="worktree path is not a directory",
        worktree="file",
    ),
    Case(
        "path_missing", where="null_reasons", reason="worktree path is missing", worktree="missing"
    ),
    Case(
        "path_bare_repository",
        where="null_reasons",
        reason="bare repository, no working tree",
        worktree="bare",
    ),
    Case(
        "path_not_a_repository",
        where="null_reasons",
        reason="not a git repository",
        worktree="plain",
    ),
    Case(
        "path_corrupt_git_file",
        where="null_reasons",
        reason="not a git repository",
        worktree="corrupt",
    ),
    Case(
        "default_branch_is_an_option",
        where="null_reasons",
        reason="invalid default branch name '--output=/tmp/reconcile-owned'",
        worktree="badbranch",
        project=BAD_BRANCH_PROJECT,
    ),
]
CASE_IDS = [c.id for c in CASES]


def _template(case: Case) -> dict[str, Any]:
    return {
        "id": case.id,
        "projectId": case.project,
        "name": f"Workspace {case.id}",
        "status": "READY",
        "worktreePath": None,
        "branchName": f"feat/{case.id}",
        "runScriptStatus": "RUNNING",
        "prUrl": None,
        "prNumber": None,
        "prState": "NONE",
        "prCiStatus": "UNKNOWN",
        "prUpdatedAt": None,
        "ratchetEnabled": True,
        "ratchetState": "CI_RUNNING",
        "hasHadSessions": True,
        "createdAt": BASE_MS + 1_000,
        "updatedAt": BASE_MS + 2_000,
    }


def _expected_raw(columns: dict[str, Any], git: dict | None) -> dict[str, Any]:
    """The snapshot of a valid row (template semantics), before the case's overrides."""
    return {
        "project_id": columns["projectId"],
        "name": columns["name"],
        "status": columns["status"],
        "created_at": columns["createdAt"],
        "branch_name": columns["branchName"],
        "has_had_sessions": bool(columns["hasHadSessions"]),
        "pr_url": columns["prUrl"],
        "pr_number": columns["prNumber"],
        "pr_state": columns["prState"],
        "pr_ci_status": columns["prCiStatus"],
        "pr_updated_at": columns["prUpdatedAt"],
        "is_working": False,
        "pending_request_type": None,
        "ratchet_enabled": bool(columns["ratchetEnabled"]),
        "ratchet_state": columns["ratchetState"],
        "run_script_status": columns["runScriptStatus"],
        "git_total": None,
        "git_additions": None,
        "git_deletions": None,
        "git_has_uncommitted": None,
        "last_activity_at": None,
        **(git or {}),
    }


def _build_worktrees(root: Path) -> dict[str, Any]:
    """Real repositories and worktrees; returns worktree key -> path (str or bytes)."""
    allowed = root / "allowed"
    outside = root / "outside"
    outside.mkdir(parents=True)
    project = gr.make_project(allowed / "proj")
    repo = project.repo
    wt = allowed / "wt"
    wt.mkdir()
    paths: dict[str, Any] = {}

    ok = gr.add_worktree(repo, wt / "ok", "ok")
    gr.write(ok, "src/app.py", gr.APP + "print('ok')\n")
    gr.write(ok, "notes.txt", "untracked\n")
    paths["ok"] = str(ok)

    uni = gr.add_worktree(repo, wt / "ünïcode ✓ dir", "unicode")
    gr.write(uni, "README.md", gr.README + "more\n")
    paths["unicode"] = str(uni)

    detached = wt / "detached"
    gr.git(repo, "worktree", "add", "-q", "--detach", str(detached), "main")
    gr.write(detached, "src/app.py", "print('detached')\n")
    paths["detached"] = str(detached)

    many = gr.add_worktree(repo, wt / "many", "many")
    for i in range(3000):
        gr.write(many, f"gen/f{i:04d}.txt", f"line {i}\n")
    gr.commit_all(many, "3000 files")
    gr.write(many, "gen/f0000.txt", "changed\nand more\n")
    paths["many"] = str(many)

    binary = gr.add_worktree(repo, wt / "binary", "binary")
    gr.write(binary, "data.bin", bytes(reversed(gr.BINARY)))
    gr.write(binary, "new.bin", b"\x00\x01\x02" * 100)
    gr.git(binary, "add", "new.bin")
    paths["binary"] = str(binary)

    # A shallow clone whose branch and origin/main do not meet: no merge base at all.
    gr.git(repo, "checkout", "-q", "-b", "feat-shallow")
    gr.write(repo, "feature.txt", "feature\n")
    gr.commit_all(repo, "feature")
    gr.git(repo, "push", "-q", "origin", "feat-shallow")
    gr.git(repo, "checkout", "-q", "main")
    gr.write(repo, "README.md", gr.README + "main moved on\n")
    gr.commit_all(repo, "main moves")
    gr.git(repo, "push", "-q", "origin", "main")
    shallow = allowed / "shallow"
    gr.git(
        allowed,
        "clone",
        "-q",
        "--depth",
        "1",
        "--no-single-branch",
        "--branch",
        "feat-shallow",
        f"file://{project.origin}",
        str(shallow),
    )
    gr.write(shallow, "feature.txt", "feature\nedited\n")
    paths["shallow"] = str(shallow)

    non_utf8 = os.fsencode(str(wt)) + b"/bad-\xff-dir"
    gr.git(repo, "worktree", "add", "-q", "-b", "non-utf8", os.fsdecode(non_utf8))
    paths["non_utf8_blob"] = non_utf8  # stored as a BLOB: the bytes of the real path

    dotdot = gr.add_worktree(repo, outside / "wt_dotdot", "dotdot")
    paths["dotdot"] = str(wt / ".." / ".." / "outside" / "wt_dotdot")
    assert os.path.isdir(paths["dotdot"]) and dotdot.exists()
    target = gr.add_worktree(repo, outside / "wt_link", "linked")
    (allowed / "link").symlink_to(target)
    paths["symlink"] = str(allowed / "link")
    paths["relative"] = "allowed/wt/ok"
    (allowed / "file.txt").write_text("a file, not a directory\n")
    paths["file"] = str(allowed / "file.txt")
    paths["missing"] = str(wt / "never-created")
    paths["bare"] = str(project.origin)
    (allowed / "plain").mkdir()
    (allowed / "plain" / "README").write_text("no git here\n")
    paths["plain"] = str(allowed / "plain")
    corrupt = gr.add_worktree(repo, wt / "corrupt", "corrupt")
    (corrupt / ".git").write_bytes(b"\x00\xffgarbage, not a gitdir line\n")
    paths["corrupt"] = str(corrupt)
    badbranch = gr.add_worktree(repo, wt / "badbranch", "badbranch")
    paths["badbranch"] = str(badbranch)
    return paths


def _insert_case(app: AppDb, case: Case, paths: dict[str, Any]) -> dict[str, Any]:
    columns = _template(case)
    if case.worktree is not None:
        columns["worktreePath"] = paths[case.worktree]
    columns.update(case.columns)
    app.insert("Workspace", columns)
    return columns


@dataclass
class BadRun:
    result: dg.ExecuteInProcessResult
    rows: dict[str, dict[str, Any]]
    expected: dict[str, dict[str, Any]]  # case id -> expected raw fields
    problems: pd.DataFrame  # as recorded in the reconcile_problem table
    git: pd.DataFrame  # as persisted by git_stats
    problems_md: list[dict[str, Any]]  # the run summary's problems table
    null_reasons_md: list[dict[str, Any]]  # the coverage check's null reasons table
    extract_md: dict[str, Any]
    git_md: dict[str, Any]


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory) -> BadRun:
    root = tmp_path_factory.mktemp("bad_input")
    paths = _build_worktrees(root)
    app = AppDb(f"sqlite:///{root / 'app.db'}", generation=1, constraints=False)
    app.add_project(PROJECT)
    app.add_project(BAD_BRANCH_PROJECT)
    app.execute(
        'UPDATE "Project" SET "defaultBranch" = :b WHERE "id" = :p',
        b=BAD_BRANCH,
        p=BAD_BRANCH_PROJECT,
    )
    inserted = {case.id: _insert_case(app, case, paths) for case in CASES}
    # The second row of a duplicated id (the first one is kept).
    dup = {**inserted["duplicate_id"], "name": "second dup", "status": "FAILED"}
    app.insert("Workspace", dup)
    # Sessions: a good one, and one whose updatedAt is garbage.
    for sid, updated in (("cs_ok", BASE_MS + 5_000), ("cs_bad", "garbage")):
        app.insert(
            "ClaudeSession",
            {
                "id": sid,
                "workspaceId": "session_updated_at_garbage",
                "status": "IDLE",
                "createdAt": BASE_MS,
                "updatedAt": updated,
            },
        )
    app.dispose()

    runtime = root / "runtime.json"
    runtime.write_text('{"sessions": {}}')
    url = f"sqlite:///{root / 'pipeline.db'}"
    res = resources(
        app.url, url, session_runtime=SessionRuntime(kind="file", location=str(runtime))
    )
    res["git"] = GitWorktrees(allowed_roots=str(root / "allowed"), timeout_s=60.0)
    instance = dg.DagsterInstance.ephemeral()
    try:
        add_partitions(instance, [PROJECT, BAD_BRANCH_PROJECT])
        cwd = os.getcwd()
        os.chdir(root)  # the relative worktree path resolves to a real worktree from here
        try:
            result = reconcile(instance, res)
        finally:
            os.chdir(cwd)
    finally:
        instance.dispose()

    expected = {}
    for case in CASES:
        columns = inserted[case.id]
        path = columns["worktreePath"]
        git = None
        if case.where != "null_reasons" and case.field != "worktree_path" and path:
            git = expected_git(path, "main")
            assert git is not None, case.id
        expected[case.id] = {**_expected_raw(columns, git), **case.stored}

    # Every reason of the run, also of rows that were skipped (no project to file them under).
    recorded = DriftLedger(url).problems(result.run_id)
    problems = recorded[recorded["source"] == "app_db"].fillna({"workspace_id": "NULL"})
    git = recorded[recorded["source"] == "git"]
    extract_md = run_summary(result)
    git_md = check_metadata(check_evaluation(result, "git_stats_coverage"))
    return BadRun(
        result=result,
        rows=read_table(url),
        expected=expected,
        problems=problems,
        git=git,
        problems_md=table_rows(extract_md["problems"]),
        null_reasons_md=table_rows(git_md["null_reasons"]),
        extract_md=extract_md,
        git_md=git_md,
    )


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_bad_input_case(bad_run: BadRun, case: Case):
    workspace_id = case.columns.get("id", case.id)
    # 1. The per-row reason is recorded (in the output the next steps read).
    if case.where == "problems":
        recorded = bad_run.problems[
            (bad_run.problems["workspace_id"] == (workspace_id if workspace_id else "NULL"))
            & (bad_run.problems["field"] == case.field)
        ]
        assert len(recorded) >= 1, f"no {case.field} problem recorded for {case.id}"
        assert any(case.reason in r for r in recorded["reason"]), list(recorded["reason"])
    elif case.where == "null_reasons":
        recorded = bad_run.git[bad_run.git["workspace_id"] == workspace_id]
        assert len(recorded) == 1
        reason = recorded["reason"].iloc[0]
        assert reason is not None and case.reason in reason, reason
    else:
        assert not (bad_run.problems["workspace_id"] == case.id).any(), "a good row has problems"
        assert not (bad_run.git["workspace_id"] == case.id).any(), "a good row has no git stats"

    # 2. The stored row: the bad cell never written, every other cell reconciled.
    if case.stored.get("*") is ABSENT:
        assert not any(r["name"] == case.columns["name"] for r in bad_run.rows.values())
    else:
        row = bad_run.rows.get(case.id)
        assert row is not None, f"{case.id} is not in the table"
        want = bad_run.expected[case.id]
        got = {k: row[k] for k in want}
        assert got == want, {k: (got[k], want[k]) for k in want if got[k] != want[k]}
        assert consistency_problems({case.id: row}) == []

    # 3. The reason is visible in the run metadata an operator reads.
    if case.where == "problems":
        shown = [
            r
            for r in bad_run.problems_md
            if r["workspace_id"] == (workspace_id or "NULL") and case.reason[:60] in r["reason"]
        ]
        assert shown, (
            f"{case.id}: reason recorded but not visible in the run summary's 'problems' "
            f"({bad_run.extract_md['problem_cells']} problem cells, the table shows "
            f"{len(bad_run.problems_md)})"
        )
    elif case.where == "null_reasons":
        shown = [
            r
            for r in bad_run.null_reasons_md
            if r["workspace_id"] == workspace_id and case.reason[:60] in r["reason"]
        ]
        if case.reason == NO_PATH:  # no worktree: recorded (1.), but not a coverage failure
            assert not shown
            return
        assert shown, (
            f"{case.id}: reason recorded but not visible in the coverage check's 'null_reasons' "
            f"({bad_run.git_md['without_git_stats']} null rows, the table shows "
            f"{len(bad_run.null_reasons_md)})"
        )


def test_bad_input_run_succeeds_and_reconciles_everything_else(bad_run: BadRun):
    assert bad_run.result.success
    present = {c.id for c in CASES if c.stored.get("*") is not ABSENT}
    assert set(bad_run.rows) == present
    assert consistency_problems(bad_run.rows) == []
    # The second row of the duplicated id did not win anything.
    assert bad_run.rows["duplicate_id"]["name"] == "first dup"
    assert bad_run.rows["name_100k_chars"]["name"] == "n" * 100_000
    print(
        f"\nBAD_INPUT {len(CASES)} cases: {bad_run.extract_md['problem_cells']} problem cells, "
        f"{bad_run.git_md['without_git_stats']} null git rows of {bad_run.git_md['worktrees']}, "
        f"{len(bad_run.rows)} rows stored"
    )


def test_text_that_is_not_utf8_is_a_per_row_problem_not_a_failed_run(tmp_path):
    """Text columns holding bytes that are not UTF-8 (a worktree path from a non-UTF-8 file
    system written as TEXT, a corrupted name): per-row reasons, the run goes on."""
    allowed = tmp_path / "allowed"
    project = gr.make_project(allowed / "proj")
    target = os.fsencode(str(allowed)) + b"/wt-\xff"
    gr.git(project.repo, "worktree", "add", "-q", "-b", "non-utf8", os.fsdecode(target))
    app = AppDb(f"sqlite:///{tmp_path / 'app.db'}", generation=1, constraints=False)
    app.add_project(PROJECT)
    app.add_workspace("good", PROJECT)
    app.add_workspace("bad_name", PROJECT)
    app.add_workspace("bad_path", PROJECT)
    app.execute(
        """UPDATE "Workspace" SET "name" = CAST(X'66ff6f' AS TEXT) WHERE "id" = 'bad_name'"""
    )
    app.execute(
        'UPDATE "Workspace" SET "worktreePath" = CAST(:p AS TEXT) WHERE "id" = \'bad_path\'',
        p=target,
    )
    app.dispose()
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    res = resources(app.url, url)
    res["git"] = GitWorktrees(allowed_roots=str(allowed), timeout_s=60.0)
    instance = dg.DagsterInstance.ephemeral()
    try:
        add_partitions(instance, [PROJECT])
        result = reconcile(instance, res, raise_on_error=False)
    finally:
        instance.dispose()
    errors = [
        e.event_specific_data.error.message.strip()
        for e in result.all_events
        if e.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    assert result.success, f"one row of non-UTF-8 text failed the whole run: {errors}"
    rows = read_table(url)
    assert set(rows) == {"good", "bad_name", "bad_path"}
    problems = table_rows(run_summary(result)["problems"])
    assert "bad_name" in {r["workspace_id"] for r in problems}
    git = check_metadata(check_evaluation(result, "git_stats_coverage"))
    # The path's bytes name a real worktree: either its stats, or a reason.
    null = {r["workspace_id"] for r in table_rows(git["null_reasons"])}
    assert rows["bad_path"]["git_total"] is not None or "bad_path" in null


def test_integers_beyond_2_53_that_fit_int64_are_stored_exactly(tmp_path):
    """prNumber / createdAt values that fit in 64 bits (the app DB parser accepts them) but not in
    a float64 mantissa: stored exactly, and the next run finds nothing to do."""
    app = AppDb(f"sqlite:///{tmp_path / 'app.db'}", generation=1, constraints=False)
    app.add_project(PROJECT)
    app.add_workspace("good", PROJECT)
    app.add_workspace(
        "pr_number_int64_max",
        PROJECT,
        prNumber=2**63 - 1,
        prUrl="https://x.invalid/pr",
        prState="OPEN",
    )
    app.add_workspace("created_at_2_62", PROJECT, createdAt=2**62)
    app.add_workspace("created_at_2_53_plus_1", PROJECT, createdAt=2**53 + 1)
    app.dispose()
    url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    res = resources(app.url, url)
    instance = dg.DagsterInstance.ephemeral()
    try:
        add_partitions(instance, [PROJECT])
        first = reconcile(instance, res, raise_on_error=False)
        second = reconcile(instance, res, raise_on_error=False)
    finally:
        instance.dispose()
    for n, result in enumerate((first, second), 1):
        errors = [
            f"{e.step_key}: {e.event_specific_data.error.cause.message.strip()}"
            if e.event_specific_data.error.cause
            else e.event_specific_data.error.message.strip()
            for e in result.all_events
            if e.event_type == dg.DagsterEventType.STEP_FAILURE
        ]
        assert result.success, f"run {n} failed: {errors}"
    rows = read_table(url)
    assert rows["pr_number_int64_max"]["pr_number"] == 2**63 - 1
    assert rows["created_at_2_62"]["created_at"] == 2**62
    assert rows["created_at_2_53_plus_1"]["created_at"] == 2**53 + 1
    assert run_summary(second)["rows_written"] == 0
    # ...and sees no drift: the values it compares are the stored ones, not float64 roundings.
    assert run_summary(second)["drift_records"] == 0
    assert check_evaluation(second, "table_matches_authoritative").passed
