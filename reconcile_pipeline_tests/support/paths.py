"""Where things are: the repository and the tests' data files (``reconcile_pipeline_tests/data``)."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
DATA = TESTS / "data"
