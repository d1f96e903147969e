"""What fleet mode costs: the PostgreSQL state store against the SQLite one, in-process.

(a) Tracking: the three writes one job run makes (``record_submitted``,
``record_started``, ``record_run`` with its run id), timed run by run, on
SQLite (a temp dir), on PostgreSQL directly (unfenced, and fenced as the
leader writes it), and through PgBouncer in transaction mode (fenced).
(b) Reading: ``jobs()`` at N published jobs with stats and history (what
``/status``, ``/metrics`` and the health check read), and ``/status`` built
in-process with the cache off, on each store.

PostgreSQL runs with its own defaults (``synchronous_commit`` on: each write
waits for its WAL flush, as in production). Needs PostgreSQL on
127.0.0.1:5432 (db test, user postgres, trust) and ``pgbouncer`` for the
PgBouncer rows (skipped if it is missing). Every schema it makes is dropped.

Usage: .venv/bin/python bench/pg_store_cost.py [--runs 2000] [--jobs 1000] [--repeats 40] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.append(ROOT)

from status_cost import seed  # noqa: E402  (bench/ is the script's own directory)

from tests.support import pg  # noqa: E402
from tests.support.pgbouncer import PgBouncer, available  # noqa: E402
from worker_service.state import PostgresLease, PostgresStateStore, SqliteStateStore  # noqa: E402
from worker_service.state.records import JobDefinition  # noqa: E402


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def tracking(store: Any, runs: int) -> dict[str, float]:
    """Median, p99 and mean (ms) of one run's three writes."""
    store.publish_jobs([JobDefinition("noop", "Noop", "interval[1:00:00]", None, 30.0, 1, "default", False, False,
                                      3600.0)])
    store.beat(os.getpid(), "bench", "running", "UTC", time.time(), "bench-session")
    perf = time.perf_counter

    def one_run() -> float:
        started = perf()
        run_id = store.record_submitted("noop", "bench-session", os.getpid(), time.time(), time.time() + 3600)
        store.record_started(run_id, time.time())
        store.record_run("noop", "success", time.time(), 0.0001, run_id=run_id)
        return perf() - started

    for _ in range(100):  # warm up: connections, caches, WAL
        one_run()
    samples = [one_run() for _ in range(runs)]
    return {"median_ms": statistics.median(samples) * 1000, "p99_ms": _pct(samples, 0.99) * 1000,
            "mean_ms": statistics.fmean(samples) * 1000}


def timed(call: Callable[[], Any], repeats: int) -> dict[str, float]:
    call()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return {"median_ms": statistics.median(samples) * 1000, "p95_ms": _pct(samples, 0.95) * 1000}


def status_cost(overrides: dict[str, str], store_seed: Callable[[Any], None], repeats: int) -> dict[str, float]:
    """``GET /status`` in-process, cache off, on the store the overrides choose."""
    from worker_service import create_app, resources

    resources.reset()
    app = create_app({"WORKER_STATE_DIR": tempfile.mkdtemp(prefix="ws-pg-cost-"), "STATUS_CACHE_TTL": "0",
                      "HEALTH_CRITICAL_COMPONENTS": "cache,database", **overrides})
    store_seed(app.extensions["store"])
    client = app.test_client()

    def get() -> None:
        assert client.get("/status").status_code == 200

    try:
        return timed(get, repeats)
    finally:
        resources.reset()


def measure(runs: int, jobs: int, repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {"runs": runs, "jobs": jobs, "tracking": {}, "jobs_read": {}, "status": {}}
    schemas: list[str] = []
    bouncer = PgBouncer(Path(tempfile.mkdtemp(prefix="ws-pgbouncer-")), pool_mode="transaction") if available() else None

    def postgres(url: str) -> PostgresStateStore:
        schemas.append(pg.new_schema_name())
        store = PostgresStateStore(url, schemas[-1], timeout=5.0)
        store.migrate()
        return store

    def fenced(store: PostgresStateStore) -> Any:
        grant = PostgresLease(store, 60.0).acquire("bench", os.getpid(), "bench-session")
        return store.fenced(grant.epoch, grant.session)  # as the leader writes: epoch and holder checked

    try:
        if bouncer is not None:
            bouncer.start()
        sqlite = SqliteStateStore(os.path.join(tempfile.mkdtemp(prefix="ws-sqlite-cost-"), "state.sqlite3"))
        results["tracking"]["SQLite"] = tracking(sqlite, runs)
        results["tracking"]["PostgreSQL, unfenced"] = tracking(postgres(pg.DATABASE_URL), runs)
        results["tracking"]["PostgreSQL, fenced (the leader)"] = tracking(fenced(postgres(pg.DATABASE_URL)), runs)
        if bouncer is not None:
            results["tracking"]["PgBouncer (transaction), fenced"] = tracking(fenced(postgres(bouncer.url())), runs)

        sqlite = SqliteStateStore(os.path.join(tempfile.mkdtemp(prefix="ws-sqlite-jobs-"), "state.sqlite3"))
        seed(sqlite, jobs, "s")
        results["jobs_read"]["SQLite"] = timed(sqlite.jobs, repeats)
        direct = postgres(pg.DATABASE_URL)
        seed(direct, jobs, "s")
        results["jobs_read"]["PostgreSQL"] = timed(direct.jobs, repeats)
        if bouncer is not None:
            through = PostgresStateStore(bouncer.url(), direct.schema, timeout=5.0)
            results["jobs_read"]["PgBouncer (transaction)"] = timed(through.jobs, repeats)

        results["status"]["SQLite"] = status_cost({}, lambda store: seed(store, jobs, "s"), repeats)
        schemas.append(pg.new_schema_name())
        results["status"]["PostgreSQL"] = status_cost(
            {"STATE_DATABASE_URL": pg.DATABASE_URL, "STATE_DATABASE_SCHEMA": schemas[-1]},
            lambda store: seed(store, jobs, "s"), repeats)
    finally:
        if bouncer is not None:
            bouncer.stop()
        for schema in schemas:
            pg.drop_schema(schema)
    return results


def report(results: dict[str, Any]) -> str:
    lines = [f"(a) one run's three writes, {results['runs']} runs", "",
             "| store | median ms | p99 ms | mean ms | × SQLite (median) |", "|---|---:|---:|---:|---:|"]
    base = results["tracking"]["SQLite"]["median_ms"]
    for name, row in results["tracking"].items():
        lines.append(f"| {name} | {row['median_ms']:.3f} | {row['p99_ms']:.3f} | {row['mean_ms']:.3f} |"
                     f" {row['median_ms'] / base:.1f} |")
    for title, key in ((f"(b) `jobs()` at {results['jobs']} jobs", "jobs_read"),
                       (f"(b) `/status` at {results['jobs']} jobs, in-process, cache off", "status")):
        lines += ["", title, "", "| store | median ms | p95 ms | × SQLite (median) |", "|---|---:|---:|---:|"]
        base = results[key]["SQLite"]["median_ms"]
        for name, row in results[key].items():
            lines.append(f"| {name} | {row['median_ms']:.2f} | {row['p95_ms']:.2f} | {row['median_ms'] / base:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    results = measure(args.runs, args.jobs, args.repeats)
    print(json.dumps(results) if args.json else report(results))


if __name__ == "__main__":
    main()
