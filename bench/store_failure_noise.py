"""Log lines written while the state store fails under N jobs all due every second (in-process).

A real SchedulerService on a SQLite store whose writes fail (from the first submission, then
heartbeats too) for about 3 s, then work again; every line at INFO and above of the service's
and APScheduler's loggers (APScheduler at WARNING, as in production) is counted.

Usage: .venv/bin/python bench/store_failure_noise.py [JOBS]   (default 1000)
"""

import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.support.servers import wait_until
from tests.test_logs import FlakyStore, captured
from worker_service.scheduler.jobs_file import parse_jobs
from worker_service.scheduler.service import SchedulerService
from worker_service.state import SqliteStateStore

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
jobs = "".join(f'[jobs.j{i}]\nfunc = "tests.support.sample_jobs:noop"\ntrigger = "cron"\nsecond = "*"\n\n' for i in range(n))
tmp = tempfile.mkdtemp()
store = FlakyStore(SqliteStateStore(f"{tmp}/s.sqlite3"))
service = SchedulerService(parse_jobs(jobs), store, "UTC", heartbeat_interval=1.0)
with captured() as log:
    service.start()
    wait_until(lambda: sum(j.success_count for j in store.jobs()) >= n, timeout=60, what="runs")
    before = len(log.records)
    store.down.set()
    wait_until(lambda: "beat" in store.refused, timeout=30, what="down")
    time.sleep(3)  # a failing spell of a few seconds
    store.down.clear()
    wait_until(lambda: service._store_down is None, timeout=30, what="recovered")
    service.shutdown(wait=True)
records = [r for r in log.records[before:] if r.levelno >= logging.INFO]
tb = sum(1 for r in records if r.exc_info or r.exc_text)
for record in records:
    print(" ", record.levelname, record.name, record.getMessage()[:150])
print(f"{n} jobs: {len(records)} lines at INFO and above ({tb} with a traceback) over one failing spell")
