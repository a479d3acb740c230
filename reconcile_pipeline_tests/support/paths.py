"""Where things are: the repository, the tests' data files (``reconcile_pipeline_tests/data``),
and scratch directories for Dagster's SQLite storage."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
DATA = TESTS / "data"
# Memory-backed, where the machine has it: SQLite commits there never wait for the disk.
RAM = Path("/dev/shm")


@contextlib.contextmanager
def scratch_dir(fallback: Path) -> Iterator[str]:
    """A fresh directory, removed afterwards: in memory (``/dev/shm``) when the machine has a
    writable one, else ``fallback`` (created, and left to pytest's tmp_path cleanup). What is
    stored there is the same either way; only the disk waits go."""
    if RAM.is_dir() and os.access(RAM, os.W_OK):
        path = tempfile.mkdtemp(prefix="reconcile_tests_", dir=RAM)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)
    else:
        fallback.mkdir(parents=True, exist_ok=True)
        yield str(fallback)
