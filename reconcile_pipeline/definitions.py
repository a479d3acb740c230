"""The code location (``dg dev``, ``dg check defs``, ``workspace.yaml``): every definition under
``defs/`` (dg's layout), with the policy that holds for all of them applied here, once: the
executor, the console logger and ``workspace_snapshot``'s freshness."""

from __future__ import annotations

import datetime as dt
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import dagster as dg

from reconcile_pipeline import settings
from reconcile_pipeline.dagster_env import apply_dagster_env_defaults
from reconcile_pipeline.defs.reconciliation.git import compute_git_shard
from reconcile_pipeline.defs.reconciliation.keys import WORKSPACE_SNAPSHOT
from reconcile_pipeline.executors import build_executor
from reconcile_pipeline.loggers import console_logger

apply_dagster_env_defaults()
settings.check_all()  # a bad setting fails the load here, with its name


def freshness_policy(env: Mapping[str, str] = os.environ) -> dg.FreshnessPolicy:
    """workspace_snapshot is stale when no run materialized it for RECONCILE_FRESHNESS_* minutes
    (the daemon evaluates it even when no run happens: a tick that never comes is noticed)."""
    warn = settings.value("RECONCILE_FRESHNESS_WARN_MINUTES", env)
    fail = settings.value("RECONCILE_FRESHNESS_FAIL_MINUTES", env)
    if warn >= fail:
        raise settings.SettingError(
            f"RECONCILE_FRESHNESS_WARN_MINUTES ({warn:g}) must be less than "
            f"RECONCILE_FRESHNESS_FAIL_MINUTES ({fail:g})"
        )
    return dg.FreshnessPolicy.time_window(
        fail_window=dt.timedelta(minutes=fail), warn_window=dt.timedelta(minutes=warn)
    )


def _with_freshness(spec: dg.AssetSpec) -> dg.AssetSpec:
    if spec.key != WORKSPACE_SNAPSHOT:
        return spec
    return spec.replace_attributes(freshness_policy=freshness_policy())


# Definitions.map_asset_specs is marked preview; it is the documented way to apply a policy.
warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*asset_specs.*")
defs = dg.Definitions.merge(
    dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
    dg.Definitions(
        # RECONCILE_EXECUTOR: multiprocess (in process per run for a small fleet), celery, k8s.
        executor=build_executor(compute_git_shard.name),
        loggers={"console": console_logger},
    ),
).map_asset_specs(func=_with_freshness)


def reconcile_job_def() -> dg.JobDefinition:
    """reconcile_job with the code location's resources and executor, for runs started from
    Python (``dg.reconstructable(reconcile_job_def)``: the command line, the tests)."""
    return defs.resolve_job_def("reconcile_job")
