"""Integration tests: real Dagster, in this process.

Belongs here: runs of the asset chain with ``dg.materialize`` / ``execute_in_process`` on a real
instance (``instance``: SQLite storage; ``memory_instance``: in memory; ``pg_instance``:
PostgreSQL storage), against real app and pipeline DBs on SQLite and PostgreSQL; sensor ticks
through ``dg.build_sensor_context``; instance storage (pools, retention) called directly; faults
injected at a stage boundary (``support.runs.before_git`` / ``before_reconcile``); store writers in
``multiprocessing`` processes. Nothing here starts the pipeline's own processes: that is ``e2e/``.

Fixtures are in the root ``conftest.py``, helpers in ``support/``.
"""
