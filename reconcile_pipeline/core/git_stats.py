"""Git stats of a workspace's worktree against its project's default branch (docs/CONTRACT.md,
"Git stats").

Read-only and failure-proof: every problem with a worktree (no path, missing, not a repo, bare,
corrupt, git error, timeout, outside the allowed roots, bad branch name) becomes a ``GitStats``
with null stats and a human-readable ``reason``; nothing here raises for a bad worktree.

Cost: two git processes per worktree in the common case, ``git status`` (emptiness only) and one
``git diff --numstat --merge-base <ref>`` (working tree vs merge-base(<ref>, HEAD), git >= 2.30).
Locating the repository and deciding which base ref exists is done in Python, reading the files
git reads, without a process; git runs as a subprocess with an argument list, no shell
and a deadline (the executable GitPython resolved, so ``GIT_PYTHON_GIT_EXECUTABLE`` applies).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import git
import pandas as pd

EMPTY_TREE_SHA1 = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
EMPTY_TREE_SHA256 = "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321"

# Read-only: never take the index lock to refresh stat info (the app may be writing), and keep
# git's messages in English so the reasons (and the errors we recognise) are stable.
_GIT_ENV = {"GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C", "LANGUAGE": "C", "GIT_TERMINAL_PROMPT": "0"}

# Only emptiness matters; --no-renames skips rename detection, which cannot change emptiness.
_STATUS_ARGS = ("status", "--porcelain=v1", "-z", "--untracked-files=normal", "--no-renames")
# --no-ext-diff/--no-textconv: no repository-configured program runs, and binary files stay
# binary ("-" counts, i.e. 0). Rename detection stays at git's default.
_DIFF_ARGS = ("diff", "--numstat", "-z", "--no-color", "--no-ext-diff", "--no-textconv")

_NO_MERGE_BASE = "no merge base found"
_NO_WORK_TREE = "must be run in a work tree"
_MULTIPLE_MERGE_BASES = "multiple merge bases found"
_MAX_REASON = 300

_FORBIDDEN_REF_CHARS = frozenset(" ~^:?*[\\")

# The reason of a workspace without a worktree path (a NEW one, say): no worktree, no failure.
NO_PATH = "no worktree path"

COLUMNS: tuple[str, ...] = (
    "workspace_id",
    "git_total",
    "git_additions",
    "git_deletions",
    "git_has_uncommitted",
    "git_reason",
    "git_base",
    "git_processes",
)
_DTYPES: dict[str, str] = {
    "workspace_id": "object",
    "git_total": "Int64",
    "git_additions": "Int64",
    "git_deletions": "Int64",
    "git_has_uncommitted": "boolean",
    "git_reason": "object",
    "git_base": "object",
    "git_processes": "int64",
}


@dataclass(frozen=True, slots=True)
class GitStats:
    total: int | None
    additions: int | None
    deletions: int | None
    has_uncommitted: bool | None
    reason: str | None
    git_processes: int
    base: str | None = None


class _GitFailed(Exception):
    """A failure that ends the computation for this worktree with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _clean(text: str) -> str:
    """One printable, valid-UTF-8 line: reasons end up in a database and in logs."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = " ".join(text.split())
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _first_line(stderr: str) -> str:
    for line in stderr.splitlines():
        if line.strip():
            return line.strip()
    return "(no message)"


def branch_name_problem(name: object) -> str | None:
    """Why ``name`` is not a valid branch name (``git check-ref-format --branch``), or None.

    Done in Python so that the name can never reach git as an option or a revision expression.
    """
    if not isinstance(name, str) or not name:
        return "empty"
    if name.startswith("-"):
        return "starts with '-'"
    if name == "HEAD":
        return "'HEAD' is reserved"
    if "\0" in name or any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return "contains a control character"
    if any(c in _FORBIDDEN_REF_CHARS for c in name):
        return "contains one of ' ~^:?*[\\'"
    if ".." in name:
        return "contains '..'"
    if "@{" in name:
        return "contains '@{'"
    if name.endswith("."):
        return "ends with '.'"
    for component in name.split("/"):
        if not component:
            return "has an empty path component (leading, trailing or double '/')"
        if component.startswith("."):
            return "has a component starting with '.'"
        if component.endswith(".lock"):
            return "has a component ending with '.lock'"
    return None


def _outside_roots(real: str, allowed_roots: Sequence[str | os.PathLike[str]]) -> bool:
    for root in allowed_roots:
        root_real = os.path.realpath(os.fsdecode(os.fspath(root)))
        try:
            if os.path.commonpath([real, root_real]) == root_real:
                return False
        except ValueError:  # different drives (Windows); not inside
            continue
    return True


# --- refs, read without a git process ---------------------------------------------------------


class _RefsUnreadable(Exception):
    """The ref store is not the files backend (e.g. reftable): ask git instead."""


def _read_text(path: str) -> str | None:
    try:
        with open(path, "rb") as fh:
            return fh.read(4096).decode("utf-8", "surrogateescape").strip()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def _is_object_id(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdefABCDEF" for c in text)


class _RefReader:
    """Resolves refs in a repository's common dir (loose files, then packed-refs)."""

    def __init__(self, git_dir: str, common_dir: str) -> None:
        self.git_dir = git_dir
        self.common_dir = common_dir
        if os.path.isdir(os.path.join(common_dir, "reftable")):
            raise _RefsUnreadable
        self._packed: dict[str, str] | None = None

    def _packed_refs(self) -> dict[str, str]:
        if self._packed is None:
            self._packed = {}
            try:
                with open(os.path.join(self.common_dir, "packed-refs"), "rb") as fh:
                    for raw in fh:
                        line = raw.decode("utf-8", "surrogateescape").rstrip("\r\n")
                        if not line or line[0] in "#^":  # header, peeled tag line
                            continue
                        sha, _, name = line.partition(" ")
                        if _is_object_id(sha) and name:
                            self._packed[name] = sha
            except (FileNotFoundError, NotADirectoryError):
                pass
        return self._packed

    def resolve(self, refname: str) -> str | None:
        """Object id that ``refname`` (refs/...) points to, or None when it does not exist."""
        for _ in range(5):  # symbolic refs: follow a few levels, like git
            content = _read_text(os.path.join(self.common_dir, *refname.split("/")))
            if content is None:
                return self._packed_refs().get(refname)
            if content.startswith("ref:"):
                refname = content[4:].strip()
                if not refname.startswith("refs/") or ".." in refname:
                    return None
                continue
            return content if _is_object_id(content) else None
        return None

    def head_is_unborn(self) -> bool:
        """True when HEAD names a branch that has no commit yet (fresh repo, orphan branch)."""
        head = _read_text(os.path.join(self.git_dir, "HEAD"))
        if head is None or not head.startswith("ref:"):
            return False  # detached (or unreadable: let git report it)
        target = head[4:].strip()
        if not target.startswith("refs/heads/"):
            return False
        return self.resolve(target) is None


# --- locating the repository, without a git process --------------------------------------------


def _common_dir(git_dir: str) -> str:
    """The repository's common dir: a linked worktree's git dir points to it in ``commondir``."""
    pointer = _read_text(os.path.join(git_dir, "commondir"))
    return os.path.realpath(os.path.join(git_dir, pointer)) if pointer else git_dir


def _is_git_dir(path: str, common: str) -> bool:
    """Git's own test (setup.c is_git_directory): objects/ and refs/ (in the common dir) and HEAD."""
    return (
        os.path.isfile(os.path.join(path, "HEAD"))
        and os.path.isdir(os.path.join(common, "objects"))
        and os.path.isdir(os.path.join(common, "refs"))
    )


def _is_bare(git_dir: str) -> bool:
    try:
        config = git.GitConfigParser(os.path.join(git_dir, "config"), read_only=True)
        return str(config.get_value("core", "bare", False)).lower() == "true"
    except Exception:  # unreadable config: not provably bare
        return False


_WORKTREE_KEY = re.compile(rb"^\s*worktree\s*=", re.IGNORECASE | re.MULTILINE)


def _configured_worktree(git_dir: str, common_dir: str) -> str | None:
    """``core.worktree`` when the repository's config sets it. A plain text scan first: the
    config parser only runs for the rare config that has such a line."""
    for path in (os.path.join(common_dir, "config"), os.path.join(git_dir, "config.worktree")):
        try:
            with open(path, "rb") as fh:
                raw = fh.read(1 << 16)
        except OSError:
            continue
        if not _WORKTREE_KEY.search(raw):
            continue
        try:
            value = git.GitConfigParser(path, read_only=True).get_value("core", "worktree", "")
        except Exception:  # unreadable config: git will complain on its own if it matters
            continue
        if value:
            return str(value)
    return None


@dataclass(frozen=True, slots=True)
class _Repo:
    worktree: str
    git_dir: str
    common_dir: str


def _locate_repo(real: str, shown: str) -> _Repo:
    """The worktree at ``real`` and its git dirs, checked the way git checks them, in Python:
    opening a repository object per worktree costs more CPU than the git commands themselves."""
    if not os.path.exists(real):
        raise _GitFailed(f"worktree path is missing: {shown}")
    if not os.path.isdir(real):
        raise _GitFailed(f"worktree path is not a directory: {shown}")
    dot_git = os.path.join(real, ".git")
    if os.path.isfile(dot_git):  # linked worktree or submodule: "gitdir: <path>"
        content = _read_text(dot_git) or ""
        if not content.startswith("gitdir:"):
            raise _GitFailed(f"not a git repository: {shown} (unreadable .git file)")
        git_dir = os.path.realpath(os.path.join(real, content[len("gitdir:") :].strip()))
    elif os.path.isdir(dot_git):
        git_dir = os.path.realpath(dot_git)  # may be a symlink, e.g. into a worktree's admin dir
    elif _is_git_dir(real, _common_dir(real)):
        if _is_bare(real):
            raise _GitFailed(f"bare repository, no working tree: {shown}")
        raise _GitFailed(f"not the root of a git worktree: {shown}")  # e.g. a .git directory
    else:
        raise _GitFailed(f"not a git repository: {shown}")
    common = _common_dir(git_dir)
    if not _is_git_dir(git_dir, common):
        raise _GitFailed(f"not a git repository: {shown}")
    head = _read_text(os.path.join(git_dir, "HEAD")) or ""
    if not (head.startswith("ref: refs/") or _is_object_id(head)):
        raise _GitFailed(f"not a git repository: {shown} (invalid HEAD)")
    configured = _configured_worktree(git_dir, common)
    if configured is not None and os.path.realpath(os.path.join(git_dir, configured)) != real:
        # git would report on that directory instead, which may lie outside the allowed roots.
        raise _GitFailed(f"core.worktree points elsewhere: {shown} (core.worktree = {configured})")
    return _Repo(real, git_dir, common)


# --- running git --------------------------------------------------------------------------------


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(pgid, signal.SIGKILL)


def _git_executable() -> str:
    # The executable GitPython resolved (GIT_PYTHON_GIT_EXECUTABLE), not necessarily PATH's git.
    return git.Git.GIT_PYTHON_GIT_EXECUTABLE or "git"


class _Runner:
    """Runs git in one worktree, counting processes and sharing one time budget.

    Plain ``subprocess.run`` (argument list, no shell, ``timeout`` kills the process): per call it
    costs a fraction of GitPython's ``execute``, which matters when git is the whole tick.
    """

    def __init__(self, repo: _Repo, timeout_s: float) -> None:
        self.cwd = repo.worktree
        self.env = {
            **os.environ,
            **_GIT_ENV,
            # If the .git entry vanishes mid-run, git must not discover a parent repository.
            "GIT_CEILING_DIRECTORIES": os.path.dirname(repo.worktree),
        }
        self.executable = _git_executable()
        self.deadline = time.monotonic() + timeout_s
        self.timeout_s = timeout_s
        self.processes = 0

    def run(self, args: Sequence[str], what: str) -> tuple[int, bytes, str]:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise _GitFailed(f"{what} timed out after {self.timeout_s:g} s")
        try:
            # Its own process group: on timeout the whole group goes, hooks and filters that git
            # started included, not only git.
            proc = subprocess.Popen(
                [self.executable, *args],
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,  # bytes: paths need not be UTF-8
                stderr=subprocess.PIPE,
                process_group=0,
            )
        except FileNotFoundError as exc:
            if not os.path.isdir(self.cwd):  # the worktree vanished since it was located
                raise _GitFailed(f"worktree path is missing: {self.cwd}") from exc
            raise _GitFailed(f"git executable not found: {self.executable}: {exc}") from exc
        self.processes += 1
        with proc:
            try:
                out, err = proc.communicate(timeout=remaining)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.communicate()
                raise _GitFailed(f"{what} timed out after {self.timeout_s:g} s") from None
        return proc.returncode, out, err.decode("utf-8", "replace")

    def diff(self, args: Sequence[str]) -> tuple[int, bytes, str]:
        return self.run([*_DIFF_ARGS, *args, "--"], "git diff")


def _parsed(out: bytes) -> tuple[int, int, int]:
    try:
        return parse_numstat_z(out)
    except ValueError as exc:
        raise _GitFailed(f"cannot parse git diff output: {exc}") from exc


def parse_numstat_z(out: bytes) -> tuple[int, int, int]:
    """(files, additions, deletions) of ``git diff --numstat -z`` output; binary counts 0.

    Entries are ``adds\\tdels\\tpath\\0``, or ``adds\\tdels\\t\\0old\\0new\\0`` for renames and
    copies; binary files have ``-`` for both counts.
    """
    files = additions = deletions = 0
    tokens = out.split(b"\0")
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if not token:
            continue  # the terminator after the last entry
        adds, dels, path = token.split(b"\t", 2)
        if not path:
            i += 2  # rename/copy: old and new path follow as their own tokens
        files += 1
        if adds != b"-":
            additions += int(adds)
        if dels != b"-":
            deletions += int(dels)
    return files, additions, deletions


def _base_candidates(
    runner: _Runner, repo: _Repo, default_branch: str
) -> tuple[list[tuple[str, str]], bool | None]:
    """Existing base refs as (refname, label), in the contract's order, and whether HEAD is unborn.

    Unborn is None when it is unknown (non-files ref store): git will tell.
    """
    wanted = [
        (f"refs/remotes/origin/{default_branch}", f"origin/{default_branch}"),
        (f"refs/heads/{default_branch}", default_branch),
    ]
    try:
        reader = _RefReader(repo.git_dir, repo.common_dir)
        found = {ref: reader.resolve(ref) for ref, _ in wanted}
        unborn: bool | None = reader.head_is_unborn()
    except _RefsUnreadable:
        # Rare (reftable): one extra process lists both refs.
        status, out, err = runner.run(
            ["for-each-ref", "--format=%(objectname) %(refname)", *(r for r, _ in wanted)],
            "git for-each-ref",
        )
        if status != 0:
            raise _GitFailed(f"git for-each-ref failed: {_first_line(err)}") from None
        listed: dict[str, str] = {}
        for line in out.decode("utf-8", "surrogateescape").splitlines():
            sha, _, name = line.partition(" ")
            listed[name] = sha
        found = {ref: listed.get(ref) for ref, _ in wanted}
        unborn = None
    candidates: list[tuple[str, str]] = []
    seen: set[str] = set()
    for ref, label in wanted:
        sha = found[ref]
        # The same commit gives the same merge base: don't ask twice.
        if sha is not None and sha not in seen:
            seen.add(sha)
            candidates.append((ref, label))
    return candidates, unborn


def _empty_tree(repo: _Repo) -> str:
    try:
        config = git.GitConfigParser(os.path.join(repo.common_dir, "config"), read_only=True)
        fmt = config.get_value("extensions", "objectformat", "sha1")
    except Exception:  # unreadable config: git will complain on its own if it matters
        fmt = "sha1"
    return EMPTY_TREE_SHA256 if str(fmt).lower() == "sha256" else EMPTY_TREE_SHA1


def _diff_stats(
    runner: _Runner, repo: _Repo, default_branch: str
) -> tuple[tuple[int, int, int], str | None]:
    """Numstat totals from the base (or HEAD, or the empty tree) to the working tree, and base."""
    candidates, unborn = _base_candidates(runner, repo, default_branch)
    if unborn:
        # No commit yet: everything in the index/working tree is new.
        status, out, err = runner.diff([_empty_tree(repo)])
        if status != 0:
            raise _GitFailed(f"git diff failed: {_first_line(err)}")
        return _parsed(out), None
    for ref, label in candidates:
        status, out, err = runner.diff(["--merge-base", ref])
        if status == 0:
            return _parsed(out), label
        if _NO_MERGE_BASE in err:
            continue  # unrelated history or a shallow clone: try the next ref, then HEAD
        if _MULTIPLE_MERGE_BASES in err:
            # Criss-cross history: use the one `git merge-base` picks, like the contract's merge-base.
            status, out, err = runner.run(["merge-base", ref, "HEAD"], "git merge-base")
            sha = out.decode("ascii", "replace").strip()
            if status != 0 or not _is_object_id(sha):
                raise _GitFailed(f"git merge-base failed: {_first_line(err)}")
            status, out, err = runner.diff([sha])
            if status != 0:
                raise _GitFailed(f"git diff failed: {_first_line(err)}")
            return _parsed(out), label
        raise _GitFailed(f"git diff failed: {_first_line(err)}")
    status, out, err = runner.diff(["HEAD"])
    if status != 0:
        raise _GitFailed(f"git diff failed: {_first_line(err)}")
    return _parsed(out), None


def workspace_git_stats(
    path: str | os.PathLike[str] | None,
    default_branch: str,
    *,
    allowed_roots: Sequence[str | os.PathLike[str]] | None = None,
    timeout_s: float = 60.0,
) -> GitStats:
    """Git stats of the worktree at ``path`` against ``default_branch``; never raises.

    ``timeout_s`` is the budget of the whole call: each git process gets what is left of it.
    """
    processes = 0
    try:
        if path is None or not os.fspath(path):
            return GitStats(None, None, None, None, NO_PATH, 0)
        shown = os.fsdecode(os.fspath(path))
        if "\0" in shown:
            raise _GitFailed(f"invalid worktree path (NUL byte): {shown!r}")
        problem = branch_name_problem(default_branch)
        if problem is not None:
            raise _GitFailed(f"invalid default branch name {default_branch!r}: {problem}")
        if not os.path.isabs(shown):
            # Relative to what? The step's working directory is not the app's.
            raise _GitFailed(f"worktree path is not absolute: {shown}")
        real = os.path.realpath(shown)
        if allowed_roots is not None and _outside_roots(real, allowed_roots):
            raise _GitFailed(f"worktree path outside allowed roots: {shown} (resolves to {real})")
        repo = _locate_repo(real, shown)
        runner = _Runner(repo, timeout_s)
        try:
            status, out, err = runner.run(_STATUS_ARGS, "git status")
            if status != 0 and _NO_WORK_TREE in err:  # its git dir says core.bare = true
                raise _GitFailed(f"bare repository, no working tree: {shown}")
            if status != 0:
                raise _GitFailed(f"git status failed: {_first_line(err)}")
            has_uncommitted = bool(out)
            (total, additions, deletions), base = _diff_stats(runner, repo, default_branch)
        finally:
            processes = runner.processes
        return GitStats(total, additions, deletions, has_uncommitted, None, processes, base)
    except _GitFailed as exc:
        return GitStats(None, None, None, None, _clean(exc.reason), processes)
    except Exception as exc:  # never fail the run for one worktree
        return GitStats(None, None, None, None, _clean(f"{type(exc).__name__}: {exc}"), processes)


def git_stats_for_rows(
    rows: Iterable[tuple[str, str | None, str]],
    *,
    allowed_roots: Sequence[str | os.PathLike[str]] | None = None,
    timeout_s: float = 60.0,
    parallel: int = 1,
) -> pd.DataFrame:
    """Git stats of (workspace_id, worktree_path, default_branch) rows, at most ``parallel``
    worktrees at a time (threads: the work is waiting on git processes), in row order.

    Columns: ``COLUMNS``; counts are nullable ``Int64``, ``git_has_uncommitted`` is ``boolean``.
    """
    rows = list(rows)

    def one(row: tuple[str, str | None, str]) -> GitStats:
        _, worktree_path, default_branch = row
        return workspace_git_stats(
            worktree_path, default_branch, allowed_roots=allowed_roots, timeout_s=timeout_s
        )

    if parallel > 1 and len(rows) > 1:
        with ThreadPoolExecutor(min(parallel, len(rows)), thread_name_prefix="git") as pool:
            results = list(pool.map(one, rows))
    else:
        results = [one(row) for row in rows]
    records = [
        {
            "workspace_id": row[0],
            "git_total": stats.total,
            "git_additions": stats.additions,
            "git_deletions": stats.deletions,
            "git_has_uncommitted": stats.has_uncommitted,
            "git_reason": stats.reason,
            "git_base": stats.base,
            "git_processes": stats.git_processes,
        }
        for row, stats in zip(rows, results, strict=True)
    ]
    # Column by column with the final dtype: no detour through float64 for nullable counts.
    return pd.DataFrame({c: pd.Series([r[c] for r in records], dtype=_DTYPES[c]) for c in COLUMNS})
