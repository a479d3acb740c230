"""Unit tests: the pure core and small pieces, one behaviour at a time.

Belongs here: a test that runs no Dagster job and starts none of the pipeline's processes (no
CLI, daemon, webserver, run worker or ``execute_job`` subprocess). Real collaborators are welcome
where the piece needs one: SQLite files, a throwaway PostgreSQL database (``pg_url``, ``db_url``),
real git repositories (``support.gitrepos``), a local HTTP server in a thread, a fresh interpreter
that only imports a module, ruff over the source. Definitions may be loaded and inspected, not
run. A store written by several processes at once is ``integration/``.

Fixtures are in the root ``conftest.py``, helpers in ``support/``.
"""
