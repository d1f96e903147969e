"""What the servers measured by the benchmark hold: generated jobs files and a run history seeded before start."""

from __future__ import annotations

import time
from pathlib import Path


def write_jobs_file(path: Path, count: int) -> list[str]:
    """``count`` interval jobs on tests.support.sample_jobs:noop, 1 to 24 hours apart (they never fire here)."""
    lines, ids = [], []
    for i in range(count):
        job_id = f"job_{i:04d}"
        ids.append(job_id)
        lines += [f"[jobs.{job_id}]", f'name = "Job {i}"', 'func = "tests.support.sample_jobs:noop"',
                  'trigger = "interval"', f"hours = {1 + i % 24}", f"critical = {'true' if i % 10 == 0 else 'false'}",
                  ""]
    path.write_text("\n".join(lines))
    return ids


def builtin_job_ids() -> list[str]:
    import tomllib

    from worker_service.config import BUILTIN_JOBS_FILE

    with open(BUILTIN_JOBS_FILE, "rb") as handle:
        return list(tomllib.load(handle)["jobs"])


def seed_stats(state_dir: Path, ids: list[str]) -> None:
    """Give every job a run history before the service starts (as bench/status_cost.py does): one success
    30 s ago, and an error 20 s ago for every 5th job, so /status has the fields it shows in production."""
    from worker_service.state.setup import STATE_FILE
    from worker_service.state.sqlite_store import SqliteStateStore

    store = SqliteStateStore(str(state_dir / STATE_FILE))
    now = time.time()
    for i, job_id in enumerate(ids):
        store.record_run(job_id, "success", now - 30, 0.01 * (i % 7))
        if i % 5 == 0:
            store.record_run(job_id, "error", now - 20, 0.02, "RuntimeError", "boom")
