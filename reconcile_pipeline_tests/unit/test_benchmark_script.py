"""scripts/benchmark.py's own arithmetic (the script end to end is ``e2e/test_benchmark_smoke.py``)."""

import importlib.util

from reconcile_pipeline_tests.support.paths import REPO


def test_median_run_keeps_every_wall_time():
    spec = importlib.util.spec_from_file_location("benchmark", REPO / "scripts" / "benchmark.py")
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)
    runs = [{"wall_s": w, "cpu_s": w * 2} for w in (3.0, 1.0, 2.0, 9.0)]
    median = benchmark._median(runs)
    assert (median["wall_s"], median["cpu_s"]) == (2.0, 4.0)  # the lower middle, whole run
    assert median["wall_s_runs"] == [3.0, 1.0, 2.0, 9.0]
    assert benchmark._median(runs[:3])["wall_s"] == 2.0
