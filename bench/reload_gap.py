"""How much a reload (SIGHUP) delays scheduled runs: the longest gap between runs of a 1 s and a 0.5 s job.

Each try starts a real gunicorn (our gunicorn.conf.py, WORKERS workers) on a fresh state directory with the two
jobs, waits for three runs, sends SIGHUP to the master and watches five more seconds of runs. A gap of one
interval means the reload kept the schedule; more means runs were late or folded into one. Slots run twice
are counted too (they must be 0). With ``--broken`` the jobs file is broken (``[jobs.broken`` appended) just before
the SIGHUP: the new workers must keep the last good job set running.

Usage: .venv/bin/python bench/reload_gap.py [TRIES] [WORKERS] [--broken]     (default 5 tries, 4 workers)
"""

from __future__ import annotations

import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.runs import duplicate_slots, read_runs, read_scheduled  # noqa: E402
from tests.support.servers import Gunicorn, base_env, wait_until  # noqa: E402

JOBS = """
[jobs.one]
func = "tests.support.sample_jobs:append_pid"
trigger = "interval"
seconds = 1
kwargs = {{ path = "{one}" }}

[jobs.half]
func = "tests.support.sample_jobs:append_pid"
trigger = "interval"
seconds = 0.5
kwargs = {{ path = "{half}" }}
"""


def one_try(workers: int, broken: bool = False) -> dict[str, tuple[float, int]]:
    """``{job: (longest gap in seconds, slots run twice)}`` around one SIGHUP."""
    with tempfile.TemporaryDirectory(prefix="reload-gap-") as work:
        work_dir = Path(work)
        state, one, half = work_dir / "state", work_dir / "one.txt", work_dir / "half.txt"
        state.mkdir()
        (work_dir / "jobs.toml").write_text(JOBS.format(one=one, half=half))
        server = Gunicorn(base_env(state, WORKER_JOBS_FILE=str(work_dir / "jobs.toml"), WEB_CONCURRENCY=str(workers),
                                   SCHEDULER_HEARTBEAT_INTERVAL="1"), work_dir).start()
        try:
            wait_until(lambda: len(read_runs(one)) >= 3, timeout=15, what="the first runs")
            if broken:
                with open(work_dir / "jobs.toml", "a") as handle:
                    handle.write("\n[jobs.broken\n")
            reloaded = time.time()
            server.signal(signal.SIGHUP)
            wait_until(lambda: len([at for _, at in read_runs(one) if at > reloaded]) >= 5, timeout=30,
                       what="runs after the reload")
        finally:
            server.stop()
        result = {}
        for name, path, interval in (("1 s job", one, 1.0), ("0.5 s job", half, 0.5)):
            runs = read_runs(path)
            times = [at for _, at in runs]
            result[name] = (max(b - a for a, b in zip(times, times[1:], strict=False)),
                            len(duplicate_slots(read_scheduled(path), interval)))
        return result


def main() -> None:
    broken = "--broken" in sys.argv
    numbers = [arg for arg in sys.argv[1:] if arg != "--broken"]
    tries = int(numbers[0]) if numbers else 5
    workers = int(numbers[1]) if len(numbers) > 1 else 4
    results = [one_try(workers, broken) for _ in range(tries)]
    print(f"SIGHUP{' with a broken jobs file' if broken else ''} with {workers} workers, {tries} tries")
    print("| job | longest gap, median | worst | slots run twice |")
    print("|---|---:|---:|---:|")
    for name in results[0]:
        gaps = [r[name][0] for r in results]
        print(f"| {name} | {statistics.median(gaps):.2f} s | {max(gaps):.2f} s | {sum(r[name][1] for r in results)} |")


if __name__ == "__main__":
    main()
