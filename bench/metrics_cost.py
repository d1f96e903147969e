"""What one /metrics scrape costs as the number of jobs grows (in-process): median and p95 per request.

Two figures per job count:

* ``uncached``: ``STATUS_CACHE_TTL=0``, every scrape builds the text (what a
  scrape costs when Prometheus scrapes less often than the TTL, as it does);
* ``cached``: the default ``STATUS_CACHE_TTL`` (1 s), scrapes back to back.

Between two scrapes a tenth of the jobs run (a new record each), as they would
between two Prometheus scrapes, so per-job pieces cannot all be reused.

Usage: .venv/bin/python bench/metrics_cost.py [10 100 1000]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

from status_cost import seed  # the same 1,000 jobs as /status's figures (bench/ is the script's directory)

from worker_service import create_app, resources


def measure(count: int, ttl: str, repeats: int) -> tuple[float, float, int]:
    resources.reset()
    app = create_app({"WORKER_STATE_DIR": tempfile.mkdtemp(prefix="ws-metrics-cost-"), "STATUS_CACHE_TTL": ttl,
                      "HEALTH_CRITICAL_COMPONENTS": "cache,database"})
    store = app.extensions["store"]
    seed(store, count)
    client = app.test_client()
    size = len(client.get("/metrics").data)
    samples = []
    for round_ in range(repeats):
        for i in range(round_ % 10, count, 10):  # a tenth of the jobs ran since the last scrape
            store.record_run(f"job_{i}", "success", time.time(), 0.01)
        started = time.perf_counter()
        response = client.get("/metrics")
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200
    samples.sort()
    return statistics.median(samples), samples[max(int(len(samples) * 0.95) - 1, 0)], size


if __name__ == "__main__":
    counts = [int(arg) for arg in sys.argv[1:]] or [3, 10, 100, 1000]
    print("| jobs | body KB | uncached median ms | uncached p95 ms | cached median ms | cached p95 ms |")
    print("|---:|---:|---:|---:|---:|---:|")
    for count in counts:
        repeats = 60 if count < 1000 else 30
        median, p95, size = measure(count, "0", repeats)
        cached_median, cached_p95, _ = measure(count, "1.0", repeats)
        print(f"| {count} | {size / 1024:.0f} | {median * 1000:.2f} | {p95 * 1000:.2f} | {cached_median * 1000:.2f}"
              f" | {cached_p95 * 1000:.2f} |")
