"""The demo app: an app DB in any schema generation plus real git repositories and worktrees.

The builder lives in :mod:`reconcile_pipeline.demo.build` (``reconcile-pipeline demo``); this
module only names the files it writes, so that the code location can find them cheaply.
"""

DEMO_DIR_NAME = "demo_app"  # under DAGSTER_HOME
APP_DB_NAME = "app.db"
SESSION_RUNTIME_NAME = "session_runtime.json"
MARKER = ".reconcile_demo"  # only directories carrying it are deleted by force=True
