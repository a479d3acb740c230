"""Where the embedded default keeps its files (no Dagster import: the CLI uses it too)."""

from __future__ import annotations

import os
from pathlib import Path

# The demo app's files (reconcile_pipeline/demo writes them; the embedded default reads them).
DEMO_DIR_NAME = "demo_app"  # under DAGSTER_HOME
APP_DB_NAME = "app.db"
SESSION_RUNTIME_NAME = "session_runtime.json"


def dagster_home() -> Path:
    """DAGSTER_HOME, or ./dagster_home when it is not set."""
    return Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / "dagster_home").resolve()


def demo_root() -> Path:
    return dagster_home() / DEMO_DIR_NAME


def demo_app_db_url() -> str:
    return f"sqlite:///{demo_root() / APP_DB_NAME}"


def demo_session_runtime_path() -> Path:
    return demo_root() / SESSION_RUNTIME_NAME


def default_pipeline_db_url() -> str:
    return f"sqlite:///{dagster_home() / 'pipeline.db'}"
