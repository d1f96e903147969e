"""What /health costs per format (in-process, checks cached as under steady probing): median per request and ratio to the floor.

The floor is bench/floor_app.py (a bare Flask view returning a constant body
of the same size) through the same Flask test client, so the ratio shows the
work of each format above what any Flask answer costs.

Usage: .venv/bin/python bench/health_json_cost.py [requests per format, default 3000]
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import tempfile
import time
from pathlib import Path

from worker_service import create_app, resources

FORMATS = [
    ("plain GET /health", "/health", {}),
    ("health+json", "/health", {"Accept": "application/health+json"}),
    ("?verbose", "/health?verbose", {}),
    ("/health/cache", "/health/cache", {}),
]


def floor_client():
    """A test client of bench/floor_app.py."""
    spec = importlib.util.spec_from_file_location("floor_app", Path(__file__).with_name("floor_app.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app.test_client()


def timed(client, path: str, headers: dict[str, str]) -> float:
    """Wall time of one request that must answer 200."""
    started = time.perf_counter()
    response = client.get(path, headers=headers)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, (path, response.status_code)
    return elapsed


def main(repeats: int) -> None:
    resources.reset()
    # Checks reused, as under probes every few seconds (each format reads the same cached results).
    app = create_app({"WORKER_STATE_DIR": tempfile.mkdtemp(prefix="ws-health-json-cost-"),
                      "HEALTH_CRITICAL_COMPONENTS": "cache,database", "HEALTH_CACHE_TTL": "3600"})
    cases = [("floor (bare Flask, same body size)", floor_client(), "/health", {})]
    cases += [(label, app.test_client(), path, headers) for label, path, headers in FORMATS]
    samples: list[list[float]] = [[] for _ in cases]
    for round_ in range(repeats + 50):  # interleaved, so drift (CPU frequency, GC) hits every format alike
        for index, (_, client, path, headers) in enumerate(cases):
            elapsed = timed(client, path, headers)
            if round_ >= 50:  # warm-up
                samples[index].append(elapsed)
    floor = statistics.median(samples[0])
    print("| answer | median µs | ratio to the floor |\n|---|---:|---:|")
    for (label, *_), times in zip(cases, samples, strict=True):
        median = statistics.median(times)
        print(f"| {label} | {median * 1e6:.1f} | {median / floor:.2f} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
