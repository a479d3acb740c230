"""A password to put into database URLs, and every place of a run's records where it must not
show up."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa
from dagster._serdes import serialize_value

SECRET = "S3cretPw"


def secret_url(url: str) -> str:
    """``url`` with the password SECRET (the local server trusts: any password works)."""
    return sa.make_url(url).set(password=SECRET).render_as_string(hide_password=False)


def leaks(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """Every place of the run's records where the secret shows: event log entries (messages,
    metadata, error infos), the run record (config, tags), the job and plan snapshots."""
    found = []
    for entry in instance.all_logs(run_id):
        text = serialize_value(entry)
        if SECRET in text:
            found.append(
                f"event {entry.dagster_event_type}: {text[text.index(SECRET) - 80 :][:160]}"
            )
    run = instance.get_run_by_id(run_id)
    if SECRET in serialize_value(run):
        found.append("run record")
    if run.job_snapshot_id and SECRET in serialize_value(
        instance.get_job_snapshot(run.job_snapshot_id)
    ):
        found.append("job snapshot")
    if run.execution_plan_snapshot_id and SECRET in serialize_value(
        instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    ):
        found.append("execution plan snapshot")
    return found
