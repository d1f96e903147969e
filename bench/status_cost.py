"""How /status's cost grows with the number of jobs (in-process, cache off): median and p95 per request.

Usage: .venv/bin/python bench/status_cost.py [10 100 1000]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time

from worker_service import create_app, resources
from worker_service.state.records import JobDefinition


def seed(store, count: int, session: str = "") -> None:
    """``count`` published jobs, each with a run or two recorded, and a heartbeat (of ``session``)."""
    now = time.time()
    store.publish_jobs([
        JobDefinition(f"job_{i}", f"Job {i}", "interval[0:01:00]", now + 60, 60, 1, "default", i % 10 == 0,
                      i % 3 == 0, 60.0)
        for i in range(count)
    ])
    for i in range(count):
        store.record_run(f"job_{i}", "success", now - 30, 0.01 * (i % 7))
        if i % 5 == 0:
            store.record_run(f"job_{i}", "error", now - 20, 0.02, "RuntimeError", "boom")
    store.beat(1, "host", "running", "UTC", now, session)


def measure(count: int, repeats: int = 60) -> tuple[float, float]:
    resources.reset()
    app = create_app({"WORKER_STATE_DIR": tempfile.mkdtemp(prefix="ws-status-cost-"), "STATUS_CACHE_TTL": "0",
                      "HEALTH_CRITICAL_COMPONENTS": "cache,database"})
    seed(app.extensions["store"], count)
    client = app.test_client()
    client.get("/status")
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get("/status")
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


if __name__ == "__main__":
    counts = [int(arg) for arg in sys.argv[1:]] or [3, 10, 100, 1000]
    print("| jobs | median ms | p95 ms |\n|---:|---:|---:|")
    for count in counts:
        median, p95 = measure(count, repeats=60 if count < 1000 else 30)
        print(f"| {count} | {median * 1000:.2f} | {p95 * 1000:.2f} |")
