"""The demo app: an app DB in any schema generation plus real git repositories and worktrees.

The builder lives in :mod:`reconcile_pipeline.demo.build` (``reconcile-pipeline demo``); the
names of the files it writes are in :mod:`reconcile_pipeline.paths`, where the embedded default
finds them.
"""

from reconcile_pipeline.paths import APP_DB_NAME, DEMO_DIR_NAME, SESSION_RUNTIME_NAME

MARKER = ".reconcile_demo"  # only directories carrying it are deleted by force=True

__all__ = ["APP_DB_NAME", "DEMO_DIR_NAME", "MARKER", "SESSION_RUNTIME_NAME"]
