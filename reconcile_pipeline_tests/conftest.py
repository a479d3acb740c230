"""Shared fixtures: throwaway PostgreSQL databases, SQLite files (both as SQLAlchemy URLs), real
Dagster instances and hand-built app DBs. The helpers behind them are in ``support/``."""

from __future__ import annotations

import os
from collections.abc import Iterator

import dagster as dg
import pytest

from reconcile_pipeline_tests.support.app_db import AppDb
from reconcile_pipeline_tests.support.databases import (
    PG_ADMIN_URL,
    create_pg_database,
    drop_pg_database,
    pg_available,
)


def _require_pg() -> None:
    if not pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
        pytest.skip("PostgreSQL is not reachable")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a throwaway PostgreSQL database, dropped afterwards."""
    _require_pg()
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture
def pg_admin_url() -> str:
    """The admin URL of the local server, for code that makes its own throwaway databases."""
    _require_pg()
    return PG_ADMIN_URL


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'pipeline.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    """Run the test on a real SQLite file and on a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db.sqlite'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    """A real Dagster instance with its own temporary DAGSTER_HOME."""
    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture
def app(tmp_path) -> Iterator[AppDb]:
    """A hand-built app DB of the current schema generation, on a SQLite file."""
    db = AppDb(f"sqlite:///{tmp_path / 'app.db'}")
    yield db
    db.dispose()
