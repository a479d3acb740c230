"""Dagster's process-wide switches: the code location's defaults, and the Makefile's exports for
the daemon and webserver, say the same."""

import re

from reconcile_pipeline.dagster_env import DAGSTER_ENV_DEFAULTS, apply_dagster_env_defaults
from reconcile_pipeline_tests.support.paths import REPO

MAKEFILE = REPO / "Makefile"


def test_makefile_exports_the_same_settings():
    exported = dict(re.findall(r"^export (DAGSTER_\w+) \?= (\S+)$", MAKEFILE.read_text(), re.M))
    exported.pop("DAGSTER_HOME", None)
    assert exported == DAGSTER_ENV_DEFAULTS


def test_defaults_never_override_the_environment():
    environ = {"DAGSTER_EVENT_BATCH_SIZE": "0"}
    apply_dagster_env_defaults(environ)
    assert environ == {**DAGSTER_ENV_DEFAULTS, "DAGSTER_EVENT_BATCH_SIZE": "0"}
