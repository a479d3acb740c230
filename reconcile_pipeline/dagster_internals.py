"""The only module of the product that imports Dagster's private modules (``dagster._...``).

Each name says what it is used for and why no public API does it (Dagster 1.13.27, pinned with
its integrations in pyproject.toml). ``reconcile_pipeline_tests/unit/test_dagster_internals.py``
imports every one of them against the pinned version, so an upgrade that moves one fails there
first, with its name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dagster as dg

# pools.py: whether pools are enforced per op (the default) or per run. The instance's pool
# config is public (``instance.event_log_storage.get_pool_config()``), its enum is not exported.
from dagster._core.instance.config import PoolGranularity

# loggers.py: the step key and original message of a log record. Dagster's own console logger
# reads them this way; a custom logger gets plain ``logging.LogRecord`` objects.
from dagster._core.log_manager import get_log_record_metadata, has_log_record_metadata

# retention: which events a trimmed run keeps (asset, asset check and run status events). The
# event types are public (``dg.DagsterEventType``); these groupings of them are not.
from dagster._core.events import (  # isort: skip
    ASSET_CHECK_EVENTS,
    ASSET_EVENTS,
    EVENT_TYPE_TO_PIPELINE_RUN_STATUS,
)

# retention: trimming a run's low-value events. The public instance API deletes whole runs
# (``instance.delete_run``) or wipes an asset; there is no public way to delete part of a run's
# event log, so the purge works on the storages' own tables (Dagster's database tuning guide
# does the same in SQL).
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
from dagster._core.storage.event_log.sqlite.sqlite_event_log import (
    INDEX_SHARD_NAME,
    SqliteEventLogStorage,
)
from dagster._core.storage.runs.schema import RunTagsTable
from dagster._core.storage.runs.sql_run_storage import SqlRunStorage

# run_launcher.py: a run launcher. Dagster documents ``RunLauncher`` as the extension point for
# launching runs (``run_launcher:`` in dagster.yaml loads it as a ConfigurableClass), but does
# not export it, its context and health types, or the machinery that executes a run in a
# subprocess, from the top-level ``dagster`` module; the launcher uses the very functions
# Dagster's code server uses (``start_run_in_subprocess``), so a run behaves the same.
from dagster._core.errors import DagsterLaunchFailedError  # isort: skip
from dagster._core.launcher import (  # isort: skip
    CheckRunHealthResult,
    LaunchRunContext,
    RunLauncher,
    WorkerStatus,
)
from dagster._grpc.impl import (  # isort: skip
    IPCErrorMessage,
    RunInSubprocessComplete,
    StartRunInSubprocessSuccessful,
    start_run_in_subprocess,
)
from dagster._grpc.types import ExecuteExternalJobArgs  # isort: skip
from dagster._serdes import ConfigurableClass, ConfigurableClassData, serialize_value  # isort: skip
from dagster._utils.hosted_user_process import recon_job_from_origin  # isort: skip


def add_partitions_metadata(
    context: dg.AssetExecutionContext,
    by_asset: Mapping[dg.AssetKey, Mapping[str, Mapping[str, Any]]],
) -> None:
    """``context.add_asset_metadata(metadata, asset_key, partition_key)`` for every asset and
    partition given, with the same checks, made once for the step instead of once a call.

    The public method validates each key against the run's range by listing the dynamic
    partitions again (three event-log reads, each a new connection on the embedded instance):
    at 25 projects a run's 125 calls cost about a second. Here the run's keys are read once
    (``context.partition_keys``) and the metadata goes to the step's accumulator, which the
    public method writes to as well (``StepExecutionContext._metadata_accumulator``, reached
    through ``get_step_execution_context``, Dagster's escape hatch for framework code)."""
    not_materialized = [str(key) for key in by_asset if key not in context.assets_def.keys]
    if not_materialized:
        raise dg.DagsterInvariantViolationError(
            f"Attempted to add metadata for asset keys {not_materialized} that are not being "
            "materialized."
        )
    targeted = set(context.partition_keys)
    not_targeted = sorted({p for by in by_asset.values() for p in by} - targeted)
    if not_targeted:
        raise dg.DagsterInvariantViolationError(
            f"Attempted to add metadata for partition keys {not_targeted} that are not being "
            "targeted."
        )
    step = context.get_step_execution_context()
    accumulator = step._metadata_accumulator
    for asset_key, by_partition in by_asset.items():
        for partition_key, metadata in by_partition.items():
            accumulator = accumulator.with_additional_asset_metadata(
                asset_key=asset_key, partition_key=partition_key, metadata=metadata
            )
    step._metadata_accumulator = accumulator


__all__ = [
    "add_partitions_metadata",
    "CheckRunHealthResult",
    "ConfigurableClass",
    "ConfigurableClassData",
    "DagsterLaunchFailedError",
    "ExecuteExternalJobArgs",
    "IPCErrorMessage",
    "LaunchRunContext",
    "RunInSubprocessComplete",
    "RunLauncher",
    "StartRunInSubprocessSuccessful",
    "WorkerStatus",
    "recon_job_from_origin",
    "serialize_value",
    "start_run_in_subprocess",
    "ASSET_CHECK_EVENTS",
    "ASSET_EVENTS",
    "EVENT_TYPE_TO_PIPELINE_RUN_STATUS",
    "INDEX_SHARD_NAME",
    "AssetCheckExecutionsTable",
    "PoolGranularity",
    "RunTagsTable",
    "SqlEventLogStorage",
    "SqlEventLogStorageTable",
    "SqlRunStorage",
    "SqliteEventLogStorage",
    "get_log_record_metadata",
    "has_log_record_metadata",
]
