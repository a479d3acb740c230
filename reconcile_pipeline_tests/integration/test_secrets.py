"""Database passwords never reach the Dagster event log: real in-process runs with
``postgres:S3cretPw@`` in the pipeline DB URL (the local server trusts, any password works) and in
the URL of an app DB that does not exist, and a sensor tick on the latter: the password appears
nowhere in the event log (messages, metadata, error infos), the run record or its snapshots, nor
in the tick's skip reason; the URLs are shown masked.
"""

from __future__ import annotations

import uuid

import dagster as dg

from reconcile_pipeline.defs.reconciliation.sensor import reconciliation_sensor
from reconcile_pipeline.defs.resources import AppDatabase, default_resources
from reconcile_pipeline_tests.support.app_db import AppDb
from reconcile_pipeline_tests.support.expected import read_table
from reconcile_pipeline_tests.support.runs import (
    ASSETS,
    add_partitions,
    materialization_metadata,
    reconcile,
)
from reconcile_pipeline_tests.support.secrets import SECRET, leaks, secret_url


def _product_resources(monkeypatch, tmp_path, app_url: str, pipeline_url: str) -> dict:
    """The code location's own resources, configured through the environment as in production."""
    monkeypatch.setenv("RECONCILE_APP_DB_URL", app_url)
    monkeypatch.setenv("RECONCILE_PIPELINE_DB_URL", pipeline_url)
    monkeypatch.setenv("RECONCILE_SESSION_RUNTIME", "none")
    return default_resources()


def test_pipeline_db_password_never_in_the_event_log(instance, monkeypatch, tmp_path, pg_url):
    app = AppDb(f"sqlite:///{tmp_path / 'app.db'}")
    app.add_project_with_workspaces("p", 3)
    app.dispose()
    res = _product_resources(monkeypatch, tmp_path, app.url, secret_url(pg_url))
    add_partitions(instance, ["p"])
    result = reconcile(instance, res)
    assert result.success
    assert leaks(instance, result.run_id) == []
    # The URL is shown, masked.
    table = materialization_metadata(instance, result.run_id)["workspace_snapshot"]
    assert "postgres:***@" in table["pipeline_db"]
    assert len(read_table(pg_url)) == 3


def test_app_db_password_never_in_a_failed_run_or_a_sensor_tick(
    instance, monkeypatch, tmp_path, pg_admin_url
):
    missing = f"rp_missing_{uuid.uuid4().hex[:10]}"
    app_url = secret_url(pg_admin_url.rsplit("/", 1)[0] + f"/{missing}")
    pipeline_url = f"sqlite:///{tmp_path / 'pipeline.db'}"
    res = _product_resources(monkeypatch, tmp_path, app_url, pipeline_url)
    add_partitions(instance, ["p"])
    result = dg.materialize(
        ASSETS,
        instance=instance,
        resources=res,
        partition_key="p",
        raise_on_error=False,
    )
    assert not result.success
    failure = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert failure
    error = failure[0].event_specific_data.error.to_string()
    assert f'database "{missing}" does not exist' in error  # a clear message...
    assert SECRET not in error  # ...without the password
    assert leaks(instance, result.run_id) == []

    tick = reconciliation_sensor(
        dg.build_sensor_context(instance=instance, resources={"app_db": AppDatabase(url=app_url)})
    )
    assert isinstance(tick, dg.SkipReason), tick
    assert "unreadable" in tick.skip_message and SECRET not in tick.skip_message
    assert "postgres:***@" in tick.skip_message
