"""Alert latency and cost: from the run that made a job unhealthy to the webhook the receiver accepted.

A real gunicorn (2 workers, SQLite state) runs one job every 0.5 s that fails while a flag file exists, noting the
time it raised; ``JOB_FAILURE_THRESHOLD=1``, so that run makes the job ``unhealthy``. A local HTTP receiver
(tests/support/alert_receiver.py) notes when each webhook arrived. Each episode: set the flag, wait for the
``firing`` webhook, clear it, wait for the ``resolved``. Latency = arrival of ``firing`` - the failing run's raise
(one host's clock). ALERT_INTERVAL stays at its default (1 s): the leader also looks right after every run.

Then, in-process, what alerting adds: the leader's look after a run (read jobs and alert states, judge, nothing
changed) at 10, 100 and 1,000 jobs on SQLite; the run itself only sets an event in an APScheduler listener.

Usage: .venv/bin/python bench/alert_latency.py [--episodes 20]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.alert_receiver import AlertReceiver  # noqa: E402
from tests.support.runs import jobs_file  # noqa: E402
from tests.support.servers import Gunicorn, base_env  # noqa: E402


def latency(episodes: int) -> list[float]:
    receiver = AlertReceiver()
    work = Path(tempfile.mkdtemp(prefix="alert-latency-"))
    flag, notes = work / "flag", work / "notes"
    path = jobs_file(work / "jobs.toml", f'''
[jobs.flip]
func = "tests.support.sample_jobs:fail_while_noting"
trigger = "interval"
seconds = 0.5
args = ["{flag}", "{notes}"]
''')
    env = base_env(work / "state", WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="2", JOB_FAILURE_THRESHOLD="1",
                   ALERT_WEBHOOK_URLS=f"{receiver.url}/hook", ALERT_DISK_PERCENT="0", ALERT_MEMORY_PERCENT="0",
                   ALERT_ERROR_RATE_PERCENT="0", PYTHONPATH=str(ROOT))
    service = Gunicorn(env, work).start()
    figures = []
    try:
        for episode in range(1, episodes + 1):
            flagged = time.time()
            flag.write_text("x")
            [firing] = receiver.wait_for(episode, 20, "/hook", status="firing")[-1:]
            [(_, headers, _, _)] = receiver.requests("/hook", id=firing["id"])
            arrived = float(headers["x-received-at"])
            flag.unlink()
            failed_at = [float(line) for line in notes.read_text().split()]
            # the first failure after the flag was set is the run that changed the state
            first = min(t for t in failed_at if t >= flagged)
            figures.append(arrived - first)
            receiver.wait_for(episode, 20, "/hook", status="resolved")
    finally:
        service.stop()
        receiver.close()
    return figures


def look_cost(jobs: int, rounds: int = 50) -> float:
    """Median seconds of one look of the leader's monitor with ``jobs`` jobs and nothing changing."""
    from worker_service.alerts import AlertSettings, build_channels
    from worker_service.alerts.monitor import AlertMonitor, judge_with
    from worker_service.scheduler.job_health import judge
    from worker_service.state import SqliteStateStore
    from worker_service.state.records import JobDefinition

    store = SqliteStateStore(str(Path(tempfile.mkdtemp()) / "state.sqlite3"))
    store.publish_jobs([JobDefinition(id=f"job{n}", name=f"job{n}", trigger="interval[0:01:00]",
                                      next_run_time=time.time() + 60, misfire_grace_time=30, max_instances=1,
                                      executor="default", paused=False, critical=False, interval_seconds=60.0,
                                      max_runtime=60.0) for n in range(jobs)])
    for n in range(jobs):
        store.record_run(f"job{n}", "success", time.time(), 0.01)
    settings = AlertSettings(webhook_urls=("http://127.0.0.1:9/hook",), disk_percent=0, memory_percent=0)
    monitor = AlertMonitor(settings, store, build_channels(settings), judge_with(judge, 60.0), {}, "bench")
    monitor.look(time.time())  # warm: the runs' windows are read once
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        monitor.look(time.time())
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=20)
    args = parser.parse_args()
    figures = latency(args.episodes)
    print(f"# alert latency ({platform.node()}, {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M')} UTC)")
    print(f"failing run -> accepted webhook over {len(figures)} episodes: median {statistics.median(figures):.3f} s,"
          f" worst {max(figures):.3f} s, best {min(figures):.3f} s")
    for jobs in (10, 100, 1000):
        print(f"one look of the leader's monitor, {jobs:>5} jobs, nothing changing: {look_cost(jobs) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
