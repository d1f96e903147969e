"""Execution-tracking overhead per job run, in-process (goal: <= 0.5 ms per run).

A real SchedulerService (APScheduler BackgroundScheduler, SqliteStateStore in a temp
dir, one no-op interval job an hour apart so it never fires by itself) is started.
Each measured "run" then does what APScheduler does around one execution of the job:

* the submission, ``tracker.submitted`` (what the executor does before handing
  the run to its pool: one IMMEDIATE transaction, INSERT job_running + UPDATE
  jobs' next run time),
* the job's callable as scheduled (``tracker.wrap``'s wrapper around
  ``tests.support.sample_jobs:noop``: ``record_started``, one transaction, then
  ``record_run``, one transaction: INSERT OR IGNORE + UPDATE job_stats + INSERT
  job_runs + DELETE job_running, a trim every 16th),
* ``tracker.done`` (the executor's callback: nothing left to write when the
  wrapper recorded the run).

It is compared with calling ``noop()`` bare. Per-run times are taken one by one, so
the median and p99 are of single runs. With ``--json`` one JSON line is printed.

Usage: .venv/bin/python bench/tracking_cost.py [--runs 5000] [--state-dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # after PYTHONPATH, so a snapshot given there (bench/run.py --ref) wins
    sys.path.append(ROOT)

from tests.support.sample_jobs import noop  # noqa: E402
from worker_service.scheduler.jobs_file import parse_jobs  # noqa: E402
from worker_service.scheduler.service import SchedulerService  # noqa: E402
from worker_service.state.sqlite_store import SqliteStateStore  # noqa: E402

JOBS = """
[jobs.noop]
func = "tests.support.sample_jobs:noop"
trigger = "interval"
hours = 1
"""


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def _fs_type(path: str) -> str:
    try:
        return subprocess.run(["stat", "-f", "-c", "%T", path], capture_output=True, text=True, timeout=5).stdout.strip()
    except Exception:
        return "?"


def measure(runs: int, state_dir: str) -> dict:
    store = SqliteStateStore(os.path.join(state_dir, "worker-state.sqlite3"))
    service = SchedulerService(parse_jobs(JOBS), store, "UTC", heartbeat_interval=3600)
    service.start()
    try:
        job = service.scheduler.get_job("noop")
        wrapped = job.func  # the tracker's timed wrapper, as APScheduler calls it
        tracker = service.tracker
        perf = time.perf_counter
        scheduled = dt.datetime.now(dt.UTC)

        def one_run() -> tuple[float, float, float, float]:
            t0 = perf()
            run_id = tracker.submitted(job, [scheduled])
            t1 = perf()
            with tracker.executing(run_id):
                wrapped()
            t2 = perf()
            tracker.done(run_id)
            return t0, t1, t2, perf()

        bare, tracked, submitted_t, run_t, executed_t = [], [], [], [], []
        for _ in range(200):  # warm up: connections, statement cache, WAL
            one_run()
        for _ in range(runs):
            t0 = perf()
            noop()
            bare.append(perf() - t0)
        for _ in range(runs):
            t0, t1, t2, t3 = one_run()
            tracked.append(t3 - t0)
            submitted_t.append(t1 - t0)
            run_t.append(t2 - t1)
            executed_t.append(t3 - t2)
        stats = store.jobs()[0]
        history = len(store.runs("noop"))
    finally:
        service.shutdown(wait=True)

    bare_median = statistics.median(bare)
    ms = 1000.0
    return {
        "runs": runs,
        "state_fs": _fs_type(state_dir),
        "bare_median_us": bare_median * 1e6,
        "tracked_median_ms": statistics.median(tracked) * ms,
        "tracked_mean_ms": statistics.fmean(tracked) * ms,
        "tracked_p99_ms": _pct(tracked, 0.99) * ms,
        "tracked_max_ms": max(tracked) * ms,
        "overhead_median_ms": (statistics.median(tracked) - bare_median) * ms,
        "overhead_mean_ms": (statistics.fmean(tracked) - statistics.fmean(bare)) * ms,
        "submitted_median_ms": statistics.median(submitted_t) * ms,
        "wrapped_call_median_ms": statistics.median(run_t) * ms,
        "executed_median_ms": statistics.median(executed_t) * ms,
        "executed_p99_ms": _pct(executed_t, 0.99) * ms,
        "success_count_recorded": stats.success_count,
        "history_rows_kept": history,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--state-dir", default=None, help="directory for the SQLite store (default: a new temp dir)")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args()
    state_dir = args.state_dir or tempfile.mkdtemp(prefix="ws-tracking-")
    result = measure(args.runs, state_dir)
    if args.json:
        print(json.dumps(result))
        return
    print(f"runs: {result['runs']} (state store on {result['state_fs']}: {state_dir})")
    print(f"bare noop(): median {result['bare_median_us']:.2f} us")
    print(f"tracked run: median {result['tracked_median_ms']:.3f} ms, mean {result['tracked_mean_ms']:.3f} ms, "
          f"p99 {result['tracked_p99_ms']:.3f} ms, max {result['tracked_max_ms']:.3f} ms")
    print(f"overhead per run: median {result['overhead_median_ms']:.3f} ms, mean {result['overhead_mean_ms']:.3f} ms")
    print(f"  submission record {result['submitted_median_ms']:.3f} ms, wrapped call (started + finished records) "
          f"{result['wrapped_call_median_ms']:.4f} ms, executor's done {result['executed_median_ms']:.3f} ms")


if __name__ == "__main__":
    main()
