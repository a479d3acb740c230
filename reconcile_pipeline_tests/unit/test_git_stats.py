"""Git stats against real repositories and worktrees built in tmp_path (no mocks)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from reconcile_pipeline.core.git_stats import (
    COLUMNS,
    GitStats,
    branch_name_problem,
    git_stats_for_rows,
    parse_numstat_z,
    workspace_git_stats,
)
from reconcile_pipeline_tests.support.gitrepos import (
    APP,
    GIT_ENV,
    README,
    UNICODE,
    UNICODE_REL,
    add_worktree,
    commit_all,
    git,
    init_repo,
    make_project,
    numstat,
    populate,
    write,
)


@pytest.fixture(autouse=True)
def _isolated_git_config(monkeypatch, tmp_path):
    # The code under test inherits the environment: keep the user's git config out of it.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path)


@pytest.fixture
def feature(project, tmp_path):
    """A linked worktree on branch ``feature``, forked from main."""
    return add_worktree(project.repo, tmp_path / "worktrees" / "feature")


def assert_stats(
    stats: GitStats,
    *,
    total: int,
    additions: int,
    deletions: int,
    has_uncommitted: bool,
    base: str | None = "origin/main",
    processes: int = 2,
) -> None:
    assert stats.reason is None, stats.reason
    assert (stats.total, stats.additions, stats.deletions, stats.has_uncommitted) == (
        total,
        additions,
        deletions,
        has_uncommitted,
    )
    assert stats.base == base
    assert stats.git_processes == processes


def assert_failed(stats: GitStats, reason_start: str, *, processes: int = 0) -> None:
    assert (stats.total, stats.additions, stats.deletions, stats.has_uncommitted) == (
        None,
        None,
        None,
        None,
    )
    assert stats.base is None
    assert stats.reason is not None and stats.reason.startswith(reason_start), stats.reason
    assert stats.git_processes == processes


# --- the common case: a linked worktree against origin/main ---------------------------------


def test_clean_worktree(feature):
    assert_stats(
        workspace_git_stats(feature, "main"),
        total=0,
        additions=0,
        deletions=0,
        has_uncommitted=False,
    )


def test_committed_staged_and_unstaged_changes(project, feature):
    # Committed on feature: README line 2 replaced (+1 -1), new file of 3 lines (+3).
    write(feature, "README.md", README.replace("readme line 2\n", "changed\n"))
    write(feature, "new.txt", "n1\nn2\nn3\n")
    commit_all(feature, "feature work")
    # Staged: two lines appended to src/app.py (+2).
    write(feature, "src/app.py", APP + "extra1\nextra2\n")
    git(feature, "add", "src/app.py")
    # Unstaged: one line removed from the unicode file (-1).
    write(feature, UNICODE_REL, UNICODE.replace("beta\n", ""))
    # main moves on after the fork: not part of the workspace's changes.
    write(project.repo, "later.txt", "l1\nl2\n")
    commit_all(project.repo, "later on main")
    git(project.repo, "push", "-q", "origin", "main")

    stats = workspace_git_stats(feature, "main")
    assert_stats(stats, total=4, additions=6, deletions=2, has_uncommitted=True)
    # Cross-check with git itself, working tree vs merge-base.
    assert numstat(feature, "--merge-base", "origin/main") == (4, 6, 2)


def test_untracked_only(feature):
    write(feature, "untracked dir/new file.txt", "a\nb\n")
    assert_stats(
        workspace_git_stats(feature, "main"),
        total=0,
        additions=0,
        deletions=0,
        has_uncommitted=True,
    )


def test_ignored_files_are_not_uncommitted(feature):
    write(feature, "debug.log", "noise\n")
    assert_stats(
        workspace_git_stats(feature, "main"),
        total=0,
        additions=0,
        deletions=0,
        has_uncommitted=False,
    )


def test_committed_only_changes_are_not_uncommitted(feature):
    write(feature, "new.txt", "1\n2\n")
    commit_all(feature, "c")
    assert_stats(
        workspace_git_stats(feature, "main"),
        total=1,
        additions=2,
        deletions=0,
        has_uncommitted=False,
    )


def test_binary_files_count_zero_lines(feature):
    write(feature, "data.bin", b"\0changed binary\0")  # modified binary
    write(feature, "img.png", b"\x89PNG\r\n\x1a\n\0\0\0")  # new binary, staged
    git(feature, "add", "img.png")
    write(feature, "src/app.py", APP + "one more\n")  # +1 text
    assert_stats(
        workspace_git_stats(feature, "main"),
        total=3,
        additions=1,
        deletions=0,
        has_uncommitted=True,
    )


def test_deleted_files(feature):
    git(feature, "rm", "-q", "src/app.py")  # staged deletion of 10 lines
    (feature / "README.md").unlink()  # unstaged deletion of 5 lines
    assert_stats(
        workspace_git_stats(feature, "main"),
        total=2,
        additions=0,
        deletions=15,
        has_uncommitted=True,
    )


def test_renames_count_as_one_file(feature):
    git(feature, "mv", "src/app.py", "src/main.py")  # pure rename
    git(feature, "mv", UNICODE_REL, "dir with space/rénamed ✓ 2.txt")
    write(feature, "dir with space/rénamed ✓ 2.txt", UNICODE + "delta\n")  # rename +1
    commit_all(feature, "renames")
    assert_stats(
        workspace_git_stats(feature, "main"),
        total=2,
        additions=1,
        deletions=0,
        has_uncommitted=False,
    )


def test_staged_rename_with_unstaged_edit(feature):
    git(feature, "mv", "README.md", "READ ME ✓.md")
    write(feature, "READ ME ✓.md", README + "appended\n")
    assert_stats(
        workspace_git_stats(feature, "main"),
        total=1,
        additions=1,
        deletions=0,
        has_uncommitted=True,
    )


def test_non_utf8_file_name(feature):
    name = os.fsencode(feature) + b"/latin1-\xe9t\xe9.txt"
    with open(name, "wb") as fh:
        fh.write(b"x\ny\n")
    commit_all(feature, "latin-1 name")
    write(feature, "README.md", README + "tail\n")
    assert_stats(
        workspace_git_stats(feature, "main"),
        total=2,
        additions=3,
        deletions=0,
        has_uncommitted=True,
    )


def test_file_name_with_tab_and_newline(feature):
    write(feature, "odd\tname\nwith newline.txt", "1\n2\n3\n")
    commit_all(feature, "odd name")
    assert_stats(
        workspace_git_stats(feature, "main"),
        total=1,
        additions=3,
        deletions=0,
        has_uncommitted=False,
    )


def test_main_checkout_and_detached_head(project, feature):
    # The project's own checkout on main: nothing changed from origin/main.
    assert_stats(
        workspace_git_stats(project.repo, "main"),
        total=0,
        additions=0,
        deletions=0,
        has_uncommitted=False,
    )
    write(feature, "new.txt", "1\n")
    commit_all(feature, "c")
    git(feature, "checkout", "-q", "--detach")
    write(feature, "new2.txt", "1\n2\n")
    git(feature, "add", "new2.txt")
    assert_stats(
        workspace_git_stats(feature, "main"),
        total=2,
        additions=3,
        deletions=0,
        has_uncommitted=True,
    )


def test_packed_refs(project, feature):
    write(feature, "new.txt", "1\n2\n")
    commit_all(feature, "c")
    git(project.repo, "pack-refs", "--all")
    assert not (project.repo / ".git" / "refs" / "remotes" / "origin" / "main").exists()
    assert_stats(
        workspace_git_stats(feature, "main"),
        total=1,
        additions=2,
        deletions=0,
        has_uncommitted=False,
    )


def test_slashed_and_unicode_default_branch(tmp_path):
    repo = init_repo(tmp_path / "r")
    populate(repo)
    git(repo, "branch", "release/ünï-2")
    git(repo, "checkout", "-q", "-b", "topic")
    write(repo, "t.txt", "1\n")
    commit_all(repo, "t")
    assert_stats(
        workspace_git_stats(repo, "release/ünï-2"),
        total=1,
        additions=1,
        deletions=0,
        has_uncommitted=False,
        base="release/ünï-2",
    )


# --- which base ----------------------------------------------------------------------------


def test_origin_preferred_then_local_default_branch(project, tmp_path):
    # Local main gets an unpushed commit (+2 lines) before the fork: only origin/main excludes it.
    write(project.repo, "unpushed.txt", "u1\nu2\n")
    commit_all(project.repo, "unpushed")
    wt = add_worktree(project.repo, tmp_path / "wt")
    write(wt, "mine.txt", "m\n")
    commit_all(wt, "mine")
    assert_stats(
        workspace_git_stats(wt, "main"),
        total=2,
        additions=3,
        deletions=0,
        has_uncommitted=False,
        base="origin/main",
    )
    git(project.repo, "remote", "remove", "origin")
    assert_stats(
        workspace_git_stats(wt, "main"),
        total=1,
        additions=1,
        deletions=0,
        has_uncommitted=False,
        base="main",
    )


def test_no_origin_remote(tmp_path):
    project = make_project(tmp_path, with_origin=False)
    wt = add_worktree(project.repo, tmp_path / "wt")
    write(wt, "README.md", "only line\n")  # -5 +1
    assert_stats(
        workspace_git_stats(wt, "main"),
        total=1,
        additions=1,
        deletions=5,
        has_uncommitted=True,
        base="main",
    )


def test_default_branch_missing_everywhere_diffs_against_head(feature):
    write(feature, "new.txt", "1\n")
    commit_all(feature, "committed: not counted without a base")
    write(feature, "README.md", README + "x\n")
    assert_stats(
        workspace_git_stats(feature, "trunk"),
        total=1,
        additions=1,
        deletions=0,
        has_uncommitted=True,
        base=None,
    )


def test_unrelated_history_diffs_against_head(project, tmp_path):
    wt = tmp_path / "orphan-wt"
    git(project.repo, "worktree", "add", "-q", "--detach", str(wt))
    git(wt, "checkout", "-q", "--orphan", "orphan")
    git(wt, "rm", "-rq", "--cached", ".")
    for child in wt.iterdir():
        if child.name != ".git":
            subprocess.run(["rm", "-rf", str(child)], check=True)
    write(wt, "own.txt", "o1\no2\no3\n")
    commit_all(wt, "unrelated root")
    write(wt, "own.txt", "o1\nO2\no3\n")  # unstaged: +1 -1
    # status, diff --merge-base origin/main (no merge base; local main is the same commit), diff HEAD
    assert_stats(
        workspace_git_stats(wt, "main"),
        total=1,
        additions=1,
        deletions=1,
        has_uncommitted=True,
        base=None,
        processes=3,
    )


def test_unrelated_history_with_distinct_local_main_tries_both(project, tmp_path):
    write(project.repo, "unpushed.txt", "u\n")
    commit_all(project.repo, "local main differs from origin/main")
    wt = tmp_path / "orphan-wt"
    git(project.repo, "worktree", "add", "-q", "--detach", str(wt))
    git(wt, "checkout", "-q", "--orphan", "orphan")
    commit_all(wt, "root with the same files")
    stats = workspace_git_stats(wt, "main")
    assert_stats(
        stats, total=0, additions=0, deletions=0, has_uncommitted=False, base=None, processes=4
    )


def test_criss_cross_history_uses_one_merge_base(project, feature):
    git(feature, "checkout", "-q", "-b", "x")
    write(feature, "x.txt", "x\n")
    commit_all(feature, "x")
    git(project.repo, "checkout", "-q", "main")
    write(project.repo, "y.txt", "y1\ny2\n")
    commit_all(project.repo, "y")
    git(feature, "merge", "-q", "--no-edit", "main")
    git(project.repo, "merge", "-q", "--no-edit", "x~1")
    git(project.repo, "push", "-q", "origin", "main")
    write(feature, "x.txt", "x\nmore\n")
    assert len(git(feature, "merge-base", "--all", "origin/main", "HEAD").split()) == 2
    expected_base = git(feature, "merge-base", "origin/main", "HEAD").strip()
    files, adds, dels = numstat(feature, expected_base)
    # status, diff --merge-base (multiple bases), merge-base, diff <base>
    assert_stats(
        workspace_git_stats(feature, "main"),
        total=files,
        additions=adds,
        deletions=dels,
        has_uncommitted=True,
        processes=4,
    )


def test_shallow_clone_without_merge_base(project, tmp_path):
    # origin: main = A-B, feature = A-F. A depth-1 clone has B and F but not A.
    git(project.repo, "checkout", "-q", "-b", "feat")
    write(project.repo, "f.txt", "f\n")
    commit_all(project.repo, "F")
    git(project.repo, "push", "-q", "origin", "feat")
    git(project.repo, "checkout", "-q", "main")
    write(project.repo, "b.txt", "b\n")
    commit_all(project.repo, "B")
    git(project.repo, "push", "-q", "origin", "main")

    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{project.origin}", str(clone))
    git(clone, "fetch", "-q", "--depth", "1", "origin", "feat:feat")
    git(clone, "checkout", "-q", "feat")
    assert (clone / ".git" / "shallow").exists()
    write(clone, "f.txt", "f\ng\n")
    assert_stats(
        workspace_git_stats(clone, "main"),
        total=1,
        additions=1,
        deletions=0,
        has_uncommitted=True,
        base=None,
        processes=3,
    )


def test_unborn_repository_diffs_against_empty_tree(tmp_path):
    repo = init_repo(tmp_path / "fresh")
    write(repo, "staged.txt", "1\n2\n")
    git(repo, "add", "staged.txt")
    write(repo, "untracked.txt", "u\n")
    assert_stats(
        workspace_git_stats(repo, "main"),
        total=1,
        additions=2,
        deletions=0,
        has_uncommitted=True,
        base=None,
    )
    # Empty repository: nothing at all.
    empty = init_repo(tmp_path / "empty")
    assert_stats(
        workspace_git_stats(empty, "main"),
        total=0,
        additions=0,
        deletions=0,
        has_uncommitted=False,
        base=None,
    )


def test_orphan_branch_without_commits_diffs_against_empty_tree(project, tmp_path):
    wt = tmp_path / "wt"
    git(project.repo, "worktree", "add", "-q", "--detach", str(wt))
    git(wt, "switch", "-q", "--orphan", "fresh")
    write(wt, "a.txt", "1\n2\n3\n")
    git(wt, "add", "a.txt")
    assert_stats(
        workspace_git_stats(wt, "main"),
        total=1,
        additions=3,
        deletions=0,
        has_uncommitted=True,
        base=None,
    )


# --- failures never raise ------------------------------------------------------------------


@pytest.mark.parametrize("path", [None, ""])
def test_no_path(path):
    assert_failed(workspace_git_stats(path, "main"), "no worktree path")


def test_missing_dir(tmp_path):
    assert_failed(workspace_git_stats(tmp_path / "gone", "main"), "worktree path is missing: ")


def test_path_is_a_file(tmp_path):
    f = write(tmp_path, "file.txt", "x")
    assert_failed(workspace_git_stats(f, "main"), "worktree path is not a directory: ")


def test_not_a_repo_even_inside_one(project, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    assert_failed(workspace_git_stats(plain, "main"), "not a git repository: ")
    # A subdirectory of a repository is not a worktree root: no search upwards.
    assert_failed(workspace_git_stats(project.repo / "src", "main"), "not a git repository: ")


def test_bare_repository(project):
    assert_failed(workspace_git_stats(project.origin, "main"), "bare repository")


def test_git_dir_is_not_a_worktree(project):
    assert_failed(workspace_git_stats(project.repo / ".git", "main"), "not the root of a git")


def test_garbage_head(project):
    (project.repo / ".git" / "HEAD").write_text("garbage\n")
    assert_failed(workspace_git_stats(project.repo, "main"), "not a git repository: ")


def test_head_pointing_to_missing_object(project):
    (project.repo / ".git" / "HEAD").write_text("0123456789" * 4 + "\n")
    assert_failed(workspace_git_stats(project.repo, "main"), "git ", processes=1)


def test_corrupt_index(project):
    (project.repo / ".git" / "index").write_bytes(b"DIRC garbage garbage garbage")
    assert_failed(workspace_git_stats(project.repo, "main"), "git status failed: ", processes=1)


def test_missing_objects(feature, project):
    write(feature, "x.txt", "x\n")
    commit_all(feature, "x")
    objects = project.repo / ".git" / "objects"
    for d in objects.iterdir():
        if len(d.name) == 2:
            subprocess.run(["rm", "-rf", str(d)], check=True)
    stats = workspace_git_stats(feature, "main")
    assert stats.reason is not None and stats.reason.startswith("git "), stats
    assert stats.total is None and stats.has_uncommitted is None
    assert stats.git_processes >= 1


def test_worktree_with_pruned_admin_dir(project, feature):
    subprocess.run(["rm", "-rf", str(project.repo / ".git" / "worktrees")], check=True)
    stats = workspace_git_stats(feature, "main")
    assert stats.reason is not None and stats.total is None, stats
    assert stats.git_processes == 0


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_timeout_kills_git_and_what_it_started(project):
    # An fsmonitor hook that hangs makes `git status` hang; the hook (a shell, with its sleep)
    # must go with git, not linger after every tick.
    pidfile = project.repo.parent / "hook.pid"
    hook = write(project.repo.parent, "slow-hook.sh", f"#!/bin/sh\necho $$ > {pidfile}\nsleep 30\n")
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    git(project.repo, "config", "core.fsmonitor", str(hook))
    started = time.monotonic()
    stats = workspace_git_stats(project.repo, "main", timeout_s=0.5)
    assert time.monotonic() - started < 10
    assert_failed(stats, "git status timed out after 0.5 s", processes=1)
    hook_pid = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(hook_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(hook_pid)


def test_bare_flag_in_a_worktrees_git_dir(project):
    git(project.repo, "config", "core.bare", "true")
    assert_failed(workspace_git_stats(project.repo, "main"), "bare repository", processes=1)


def test_git_entry_symlinked_to_a_linked_worktrees_admin_dir(project, feature, tmp_path):
    """A worktree whose .git is a symlink (not a file) to main/.git/worktrees/<name>."""
    linked = Path(project.repo / ".git" / "worktrees" / feature.name)
    (feature / ".git").unlink()
    (feature / ".git").symlink_to(linked)
    stats = workspace_git_stats(feature, "main")
    assert stats.reason is None, stats.reason
    assert stats.total is not None and stats.git_processes == 2


# --- allowed roots ---------------------------------------------------------------------------


def test_allowed_roots(project, feature, tmp_path):
    root = tmp_path / "worktrees"
    assert workspace_git_stats(feature, "main", allowed_roots=[root]).reason is None
    assert workspace_git_stats(feature, "main", allowed_roots=[str(root)]).reason is None
    # Escapes via '..' ...
    escaping = root / ".." / "project"
    assert_failed(
        workspace_git_stats(escaping, "main", allowed_roots=[root]),
        "worktree path outside allowed roots: ",
    )
    # ... and via a symlink inside the root.
    link = root / "link"
    link.symlink_to(project.repo, target_is_directory=True)
    assert_failed(
        workspace_git_stats(link, "main", allowed_roots=[root]),
        "worktree path outside allowed roots: ",
    )
    # A sibling whose name merely starts with the root's name is outside too.
    sibling = tmp_path / "worktrees-evil"
    git(project.repo, "worktree", "add", "-q", "-b", "evil", str(sibling))
    assert_failed(
        workspace_git_stats(sibling, "main", allowed_roots=[root]),
        "worktree path outside allowed roots: ",
    )
    # A symlinked root is resolved too; several roots are allowed.
    root_link = tmp_path / "root-link"
    root_link.symlink_to(root, target_is_directory=True)
    assert workspace_git_stats(feature, "main", allowed_roots=[root_link]).reason is None
    assert workspace_git_stats(sibling, "main", allowed_roots=[root, sibling]).reason is None
    assert_failed(
        workspace_git_stats(feature, "main", allowed_roots=[]),
        "worktree path outside allowed roots: ",
    )


# --- default branch validation ---------------------------------------------------------------


def test_option_like_default_branch_never_reaches_git(feature, tmp_path):
    target = tmp_path / "x"
    stats = workspace_git_stats(feature, f"--output={target}")
    assert_failed(stats, "invalid default branch name ")
    assert not target.exists()


BRANCH_NAMES = [
    "main",
    "master",
    "release/1.2",
    "ünïcode-✓",
    "a-b_c.d",
    "x@y",
    "",
    "-main",
    "--output=/tmp/x",
    "a..b",
    "a b",
    "tab\tname",
    "ctl\x7f",
    "a~1",
    "a^",
    "a:b",
    "a?",
    "a*",
    "a[b",
    "a\\b",
    "a@{1}",
    "@{-1}",
    "@",
    "HEAD",
    "x.lock",
    "a/b.lock/c",
    "a/",
    "/a",
    "a//b",
    ".hidden",
    "a/.b",
    "a.",
]


@pytest.mark.parametrize("name", BRANCH_NAMES)
def test_branch_name_validation_agrees_with_git(name, tmp_path):
    proc = subprocess.run(
        ["git", "check-ref-format", "--branch", name],
        cwd=tmp_path,  # outside any repository: '@{-1}' cannot expand
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        check=False,
    )
    git_ok = proc.returncode == 0 and proc.stdout.decode().strip() == name
    assert (branch_name_problem(name) is None) == git_ok


@pytest.mark.parametrize("name", [None, 3, "a\0b", "HEAD"])
def test_invalid_default_branch_reported(feature, name):
    assert_failed(workspace_git_stats(feature, name), "invalid default branch name ")


# --- numstat parsing -------------------------------------------------------------------------


def test_parse_numstat_z():
    out = (
        b"3\t2\tplain.txt\0"
        b"-\t-\timg.png\0"
        b"1\t0\t\0old name.txt\0new\tname.txt\0"  # rename: empty path, then old and new
        b"0\t4\tlatin-\xe9.txt\0"
        b"5\t5\t\0a\0b\0"
    )
    assert parse_numstat_z(out) == (5, 9, 11)
    assert parse_numstat_z(b"") == (0, 0, 0)
    with pytest.raises(ValueError):
        parse_numstat_z(b"garbage\0")


# --- process count is honest -----------------------------------------------------------------


def _top_level_git_processes(trace: Path) -> int:
    if not trace.exists():
        return 0
    events = [json.loads(line) for line in trace.read_text().splitlines() if line.strip()]
    # Child processes of a git process have a '/'-joined session id.
    return sum(1 for e in events if e.get("event") == "start" and "/" not in e["sid"])


@pytest.mark.parametrize("case", ["common", "no_merge_base", "failure"])
def test_git_processes_matches_trace2(case, project, feature, tmp_path, monkeypatch):
    if case == "no_merge_base":
        target = feature
        git(feature, "checkout", "-q", "--orphan", "orphan")
        commit_all(feature, "root")
        expected = 3
    elif case == "failure":
        target = project.repo
        (project.repo / ".git" / "index").write_bytes(b"DIRC garbage")
        expected = 1
    else:
        target = feature
        expected = 2
    trace = tmp_path / "trace2.json"
    monkeypatch.setenv("GIT_TRACE2_EVENT", str(trace))
    stats = workspace_git_stats(target, "main")
    monkeypatch.delenv("GIT_TRACE2_EVENT")
    assert stats.git_processes == expected
    assert _top_level_git_processes(trace) == expected


# --- batch -----------------------------------------------------------------------------------


def test_rows_frame_dtypes_and_mixed_batch(project, feature, tmp_path):
    write(feature, "new.txt", "1\n2\n")
    git(feature, "add", "new.txt")
    frame = git_stats_for_rows(
        [
            ("ws-good", str(feature), "main"),
            ("ws-none", None, "main"),
            ("ws-missing", str(tmp_path / "gone"), "main"),
            ("ws-bad-branch", str(feature), "-x"),
            ("ws-main", str(project.repo), "main"),
        ]
    )
    assert list(frame.columns) == list(COLUMNS)
    assert frame.dtypes.astype(str).to_dict() == {
        "workspace_id": "object",
        "git_total": "Int64",
        "git_additions": "Int64",
        "git_deletions": "Int64",
        "git_has_uncommitted": "boolean",
        "git_reason": "object",
        "git_base": "object",
        "git_processes": "int64",
    }
    rows = {r["workspace_id"]: r for r in frame.to_dict("records")}
    good = rows["ws-good"]
    assert (good["git_total"], good["git_additions"], good["git_deletions"]) == (1, 2, 0)
    assert bool(good["git_has_uncommitted"]) is True
    assert good["git_reason"] is None and good["git_base"] == "origin/main"
    assert good["git_processes"] == 2
    assert rows["ws-main"]["git_total"] == 0 and rows["ws-main"]["git_reason"] is None
    for ws in ("ws-none", "ws-missing", "ws-bad-branch"):
        row = rows[ws]
        assert row["git_reason"], ws
        assert pd.isna(row["git_total"]) and pd.isna(row["git_has_uncommitted"]), ws
        assert row["git_base"] is None and row["git_processes"] == 0
    assert rows["ws-missing"]["git_reason"].startswith("worktree path is missing")


def test_rows_empty_input():
    frame = git_stats_for_rows([])
    assert frame.empty and list(frame.columns) == list(COLUMNS)
    assert str(frame["git_total"].dtype) == "Int64"
    assert str(frame["git_has_uncommitted"].dtype) == "boolean"
    assert str(frame["git_processes"].dtype) == "int64"
    assert str(frame["git_reason"].dtype) == "object"


def test_path_with_nul_byte_is_a_reason_not_an_exception(tmp_path):
    stats = workspace_git_stats(f"{tmp_path}/a\0b", "main")
    assert_failed(stats, "invalid worktree path (NUL byte)")


def test_missing_git_executable_is_a_reason(project, tmp_path, monkeypatch):
    monkeypatch.setattr("git.Git.GIT_PYTHON_GIT_EXECUTABLE", str(tmp_path / "no-such-git"))
    stats = workspace_git_stats(project.repo, "main")
    assert_failed(stats, "git executable not found: ")


def test_core_worktree_pointing_elsewhere_is_refused(project, tmp_path):
    """git would report on the configured directory, maybe outside the allowed roots."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    git(project.repo, "config", "core.worktree", str(elsewhere))
    assert_failed(workspace_git_stats(project.repo, "main"), "core.worktree points elsewhere: ")
    # Pointing at the worktree itself is harmless.
    git(project.repo, "config", "core.worktree", str(project.repo))
    assert workspace_git_stats(project.repo, "main").reason is None
