"""Every shared fixture, once: throwaway PostgreSQL databases and SQLite files (both as SQLAlchemy
URLs), real Dagster instances, hand-built app DBs and demo apps. The helpers behind them are in
``support/``. A fixture used by one test file only may live in that file, under a name no other
fixture has.

The end of the file says how ``make test`` spreads the suite over pytest-xdist workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from reconcile_pipeline.core.store import SnapshotStore
from reconcile_pipeline.demo.build import DemoApp, build_demo_app, demo_session_runtime
from reconcile_pipeline_tests.support.app_db import AppDb
from reconcile_pipeline_tests.support.databases import (
    PG_ADMIN_URL,
    create_pg_database,
    drop_pg_database,
    pg_available,
    psycopg2_url,
)
from reconcile_pipeline_tests.support.expected import expected_snapshots
from reconcile_pipeline_tests.support.paths import TESTS, scratch_dir

GENERATIONS = (1, 2, 3)  # every app schema generation


def _generation_id(generation: int) -> str:
    return f"gen{generation}"


# ---- databases ----------------------------------------------------------------------------------


def require_pg() -> None:
    """Skip without the local PostgreSQL server; under CI (``CI`` set) fail instead."""
    if not pg_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_URL}")
        pytest.skip("PostgreSQL is not reachable")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a throwaway PostgreSQL database, dropped afterwards."""
    require_pg()
    url = create_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(url)


@pytest.fixture
def pg_admin_url() -> str:
    """The admin URL of the local server, for code that makes its own throwaway databases."""
    require_pg()
    return PG_ADMIN_URL


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """URL of a fresh SQLite file."""
    return f"sqlite:///{tmp_path / 'pipeline.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> Iterator[str]:
    """Run the test on a real SQLite file and on a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db.sqlite'}"
    else:
        yield request.getfixturevalue("pg_url")


@pytest.fixture
def store(db_url) -> Iterator[SnapshotStore]:
    """The snapshot store (``core.store``) on a SQLite file and on a PostgreSQL database."""
    s = SnapshotStore(db_url)
    yield s
    s.engine.dispose()


# ---- Dagster instances --------------------------------------------------------------------------


@pytest.fixture
def instance(tmp_path) -> Iterator[dg.DagsterInstance]:
    """A real persistent Dagster instance with SQLite storage (the embedded default's), in a fresh
    directory of its own: what ``build_sensor_context`` needs, and what storage-level tests
    inspect. The directory is in memory (``/dev/shm``) where the machine has one."""
    with scratch_dir(tmp_path / "dagster") as home, dg.instance_for_test(temp_dir=home) as inst:
        yield inst


@pytest.fixture
def memory_instance() -> Iterator[dg.DagsterInstance]:
    """A real instance with in-memory storage (runs, events, dynamic partitions): about twice as
    fast per in-process run as ``instance``, for tests that need no persistent storage."""
    inst = dg.DagsterInstance.ephemeral()
    try:
        yield inst
    finally:
        inst.dispose()


@pytest.fixture
def pg_instance(tmp_path, pg_url) -> Iterator[dg.DagsterInstance]:
    """A real instance whose run, event-log and schedule storage is the throwaway PostgreSQL
    database ``pg_url`` (dagster-postgres, as in production)."""
    overrides = {"storage": {"postgres": {"postgres_url": psycopg2_url(pg_url)}}}
    with (
        scratch_dir(tmp_path / "dagster") as home,
        dg.instance_for_test(temp_dir=home, overrides=overrides) as inst,
    ):
        assert type(inst.event_log_storage).__name__ == "PostgresEventLogStorage"
        yield inst


# ---- app DBs ------------------------------------------------------------------------------------


@pytest.fixture(params=GENERATIONS, ids=_generation_id)
def generation(request) -> int:
    """Each app schema generation the app has shipped."""
    return request.param


@pytest.fixture
def app(tmp_path) -> Iterator[AppDb]:
    """A hand-built app DB of the current schema generation, on a SQLite file."""
    db = AppDb(f"sqlite:///{tmp_path / 'app.db'}")
    yield db
    db.dispose()


# ---- demo apps (real git repositories and worktrees; read only: copy app.db to change it) -------


@pytest.fixture(scope="session")
def demo24(tmp_path_factory) -> DemoApp:
    """A 24-workspace demo app (seed 5) with its session runtime file."""
    app = build_demo_app(tmp_path_factory.mktemp("demo24") / "demo", workspaces=24, seed=5)
    demo_session_runtime(app, seed=5)
    return app


@pytest.fixture(scope="session")
def demo40(tmp_path_factory) -> DemoApp:
    """A 40-workspace demo app (seed 11) with its session runtime file."""
    app = build_demo_app(tmp_path_factory.mktemp("demo40") / "demo", workspaces=40, seed=11)
    demo_session_runtime(app, seed=11)
    return app


@pytest.fixture(scope="session", params=GENERATIONS, ids=_generation_id)
def demo30_any_generation(request, tmp_path_factory) -> DemoApp:
    """A 30-workspace demo app in each schema generation, without a session runtime file."""
    root = tmp_path_factory.mktemp(f"demo30_gen{request.param}") / "app"
    return build_demo_app(root, workspaces=30, generation=request.param)


def _demo60(root: Path, generation: int = 3) -> tuple[DemoApp, dict[str, dict]]:
    app = build_demo_app(root, workspaces=60, generation=generation)
    demo_session_runtime(app)
    return app, expected_snapshots(app.app_db_path, app.session_runtime_path)


@pytest.fixture(scope="session")
def demo60(tmp_path_factory) -> tuple[DemoApp, dict[str, dict]]:
    """A 60-workspace demo app of the current schema, its session runtime file, and the snapshot
    table expected of it (computed without product code: ``support.expected``)."""
    return _demo60(tmp_path_factory.mktemp("demo60") / "app")


@pytest.fixture(scope="session", params=GENERATIONS, ids=_generation_id)
def demo60_any_generation(request, tmp_path_factory) -> tuple[DemoApp, dict[str, dict]]:
    """``demo60`` in each schema generation the app has shipped."""
    return _demo60(tmp_path_factory.mktemp(f"demo60_gen{request.param}") / "app", request.param)


# ---- how `make test` spreads the suite over xdist workers -----------------------------------------
#
# `make test` runs `pytest -n 4 --dist loadgroup --no-loadscope-reorder`: each work unit goes to
# the next free worker, in the order below, so that the long tests start at once and everything
# else runs beside them (the longest-processing-time-first rule):
#
# 1. the slow tests, longest first (LONGEST_FIRST; a slow test not listed comes after those);
# 2. the other end-to-end tests, then the other integration tests, then the unit tests: each
#    kind heavier per test than the next, so the last to finish are the quickest.
#
# A test is a unit of its own unless it is marked ``pytest.mark.xdist_group(name)``: the tests of
# a group share a unit (one worker, one after the other). Group the tests that share an expensive
# module fixture (a stack with a webserver, one app run read by many cases, a private PostgreSQL
# cluster) or that must not use a resource at the same time. Nothing else is shared between tests:
# each makes its own DAGSTER_HOME, databases (unique names), ports (``free_port``), broker queues
# and Redis keys, so any two may run side by side.

# Seconds each on the 2-core CI machine (`make test`); only their order matters. Node id prefixes
# under reconcile_pipeline_tests/.
LONGEST_FIRST = {
    "e2e/test_benchmark_smoke.py::test_benchmark_smoke": 165,
    "e2e/test_retention.py::test_a_day_of_60s_ticks[sqlite]": 110,
    "e2e/test_retention.py::test_a_day_of_60s_ticks[postgres]": 105,
    "e2e/test_freshness.py::": 105,
    "e2e/test_git_concurrency.py::test_git_shards_run_three_at_a_time": 85,
    "e2e/test_run_launcher.py::": 80,  # each waits out the sensor's 60 s interval once
    "e2e/test_ui_screenshots.py::": 60,  # the two tests of one stack, together
    "e2e/test_git_concurrency.py::test_in_process_run": 40,
    "e2e/test_soak.py::": 38,
    "e2e/test_dev_stack.py::": 35,
    "e2e/test_cli.py::test_cli_materialize_range_then_one_partition": 38,
    "e2e/test_celery_executor.py::": 36,
    "e2e/test_faults_sigkill.py::": 35,
    "e2e/test_retention.py::test_run_retention_on_postgres": 35,
    "e2e/test_pools.py::": 34,
}
KIND_ORDER = ("e2e", "integration", "unit")  # of the tests that are not slow


def _loadgroup(config: pytest.Config) -> bool:
    """``--dist loadgroup``: xdist workers see it as ``option.loadgroup``."""
    return bool(getattr(config.option, "loadgroup", False)) or config.option.dist == "loadgroup"


def _nodeid(item: pytest.Item) -> str:
    return item.nodeid.removeprefix(f"{TESTS.name}/")


def _unit(item: pytest.Item) -> str:
    group = item.get_closest_marker("xdist_group")
    if group is not None:
        return str(group.args[0] if group.args else group.kwargs["name"])
    return item.nodeid


def _rank(item: pytest.Item) -> tuple[int, float]:
    """(kind, -seconds): slow tests first, longest first; then the others by kind."""
    nodeid = _nodeid(item)
    if item.get_closest_marker("slow"):
        seconds = next((s for p, s in LONGEST_FIRST.items() if nodeid.startswith(p)), 30.0)
        return 0, -seconds
    kind = nodeid.split("/", 1)[0]
    return 1 + (KIND_ORDER.index(kind) if kind in KIND_ORDER else 0), 0.0


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]):
    result = yield  # pytest's own order (module fixtures set up once); xdist names the groups
    if _loadgroup(config):
        units: dict[str, list[pytest.Item]] = {}
        for item in items:
            units.setdefault(_unit(item), []).append(item)
        rank = {unit: min(_rank(item) for item in members) for unit, members in units.items()}
        order = sorted(units, key=lambda unit: rank[unit])  # stable: file order within a rank
        items[:] = [item for unit in order for item in units[unit]]
    return result
