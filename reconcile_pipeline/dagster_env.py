"""Dagster's process-wide switches for runs over many partitions, read from the environment.

Every process that loads the code location applies them as defaults (run workers and their step
processes, ``dagster asset materialize``, ``reconcile-pipeline reconcile``). The daemon and the
webserver create runs too, without importing this code, so they need them in their own
environment: the Makefile exports them, docs/DEPLOYMENT.md lists them. A value already set wins.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

from reconcile_pipeline.settings import SETTINGS

# - DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS: one ASSET_MATERIALIZATION_PLANNED event per
#   asset and run, carrying the run's partition subset, instead of one per asset and project (a
#   tick over 125 projects wrote 625 of them before its first step). Dagster's stated trade-off:
#   the projects of a failed run are not marked failed; the run and its step are, and the next
#   tick retries every project.
# - DAGSTER_EVENT_BATCH_SIZE: a range run's per-partition materializations reach the event log
#   storage as one batch (dagster-postgres writes it with one INSERT).
DAGSTER_ENV_DEFAULTS = {
    name: SETTINGS[name].default
    for name in ("DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS", "DAGSTER_EVENT_BATCH_SIZE")
}


def apply_dagster_env_defaults(environ: MutableMapping[str, str] = os.environ) -> None:
    for name, value in DAGSTER_ENV_DEFAULTS.items():
        environ.setdefault(name, value)
