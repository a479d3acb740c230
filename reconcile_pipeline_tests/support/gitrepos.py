"""Builders of real git repositories and worktrees for tests (no mocks).

Every git command runs with a fixed identity and without the user's/system's git config, so the
repositories look the same on any machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test Author",
    "GIT_AUTHOR_EMAIL": "author@example.com",
    "GIT_COMMITTER_NAME": "Test Committer",
    "GIT_COMMITTER_EMAIL": "committer@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "LC_ALL": "C",
}

# Base content of every project: exact line counts matter to the tests.
README = "".join(f"readme line {i}\n" for i in range(1, 6))  # 5 lines
APP = "".join(f"print({i})\n" for i in range(1, 11))  # 10 lines
UNICODE_REL = "dir with space/ünïcode ✓.txt"
UNICODE = "alpha\nbeta\ngamma\n"  # 3 lines
BINARY = bytes(range(256)) * 4  # has NUL bytes: git treats it as binary
GITIGNORE = "*.log\n"


def git(cwd: str | os.PathLike[str], *args: str, check: bool = True) -> str:
    """Run git in ``cwd``; return stdout (text, surrogate-escaped)."""
    proc = subprocess.run(
        ["git", "-c", "protocol.file.allow=always", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"git {' '.join(args)} failed in {cwd}: {proc.stderr.decode(errors='replace')}"
        )
    return proc.stdout.decode("utf-8", "surrogateescape")


def write(root: str | os.PathLike[str], rel: str, content: str | bytes) -> Path:
    path = Path(root, rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def commit_all(repo: str | os.PathLike[str], message: str) -> str:
    """Stage everything and commit; return the new commit id."""
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def init_repo(path: str | os.PathLike[str], *, bare: bool = False) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main", *(["--bare"] if bare else []))
    return path


def populate(repo: str | os.PathLike[str]) -> str:
    """Write the base content (see module constants) and commit it."""
    write(repo, "README.md", README)
    write(repo, "src/app.py", APP)
    write(repo, UNICODE_REL, UNICODE)
    write(repo, "data.bin", BINARY)
    write(repo, ".gitignore", GITIGNORE)
    return commit_all(repo, "base")


@dataclass(frozen=True)
class Project:
    origin: Path  # bare remote
    repo: Path  # the project's main checkout, on main, pushed to origin


def make_project(base: str | os.PathLike[str], *, with_origin: bool = True) -> Project:
    """A project repository with the base content on ``main``, pushed to a bare ``origin``."""
    base = Path(base)
    repo = init_repo(base / "project")
    populate(repo)
    origin = base / "origin.git"
    if with_origin:
        init_repo(origin, bare=True)
        git(repo, "remote", "add", "origin", str(origin))
        git(repo, "push", "-q", "-u", "origin", "main")
    return Project(origin=origin, repo=repo)


def add_worktree(
    repo: str | os.PathLike[str], path: str | os.PathLike[str], branch: str = "feature"
) -> Path:
    """``git worktree add -b <branch> <path>`` from the repo's current HEAD."""
    git(repo, "worktree", "add", "-q", "-b", branch, str(path))
    return Path(path)


def numstat(repo: str | os.PathLike[str], *args: str) -> tuple[int, int, int]:
    """(files, additions, deletions) from plain ``git diff --numstat`` (text format), for
    cross-checks."""
    files = adds = dels = 0
    for line in git(repo, "diff", "--numstat", *args).splitlines():
        a, d, _ = line.split("\t", 2)
        files += 1
        adds += 0 if a == "-" else int(a)
        dels += 0 if d == "-" else int(d)
    return files, adds, dels


# ---- a slow, logging git: how many git processes ran at once -----------------------------------


def slow_git(directory: Path, delay_s: float = 0.2) -> tuple[Path, Path]:
    """A ``git`` that sleeps ``delay_s`` per call and logs its start and end
    (``start|end <pid> <epoch s> <subcommand>``), to be put first on PATH and in
    GIT_PYTHON_GIT_EXECUTABLE. Returns (script, log)."""
    real = shutil.which("git")
    assert real, "git is not installed"
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "calls.log"
    script = directory / "git"
    script.write_text(
        "#!/bin/bash\n"
        f'echo "start $$ $(date +%s.%N) $1" >> "{log}"\n'
        f"sleep {delay_s}\n"
        f'"{real}" "$@"\n'
        "rc=$?\n"
        f'echo "end $$ $(date +%s.%N) $1" >> "{log}"\n'
        "exit $rc\n"
    )
    script.chmod(0o755)
    return script, log


def git_windows(log: Path) -> list[tuple[float, float]]:
    """(start, end) of every finished git call in a ``slow_git`` log."""
    starts: dict[str, float] = {}
    windows = []
    for line in log.read_text().splitlines():
        kind, pid, stamp, *_ = line.split()
        if kind == "start":
            starts[pid] = float(stamp)
        elif pid in starts:
            windows.append((starts.pop(pid), float(stamp)))
    return windows


def git_calls(log: Path) -> list[str]:
    """The subcommand of every git call in a ``slow_git`` log."""
    return [line.split()[3] for line in log.read_text().splitlines() if line.startswith("start")]
