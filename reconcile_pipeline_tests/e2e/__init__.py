"""End-to-end tests: the pipeline's real processes, as operators run them.

Belongs here: ``dagster-daemon`` and ``dagster-webserver`` subprocesses, the ``reconcile-pipeline``
and ``dagster`` CLIs, runs in a fresh process with the code location's executor
(``support.runs.execute``), celery workers, headless Chromium, the benchmark script, the soak,
killed runs, a simulated day of retention, the freshness policy evaluated by the daemon. Most are
marked ``slow`` (``make test-fast`` skips those).

A test here that must not share a worker with another (one module-scoped stack for several
tests, a private PostgreSQL cluster) says so with ``pytest.mark.xdist_group``; see the root
``conftest.py`` for how ``make test`` orders and spreads the tests.
"""
