"""Read the lines test jobs append: '<pid> <epoch>'."""

from __future__ import annotations

from pathlib import Path


def read_runs(path: Path) -> list[tuple[int, float]]:
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            runs.append((int(parts[0]), float(parts[1])))
    return runs


def jobs_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def pid_job(runs_file: Path, seconds: int = 1, critical: bool = True) -> str:
    return f"""
[jobs.tick]
name = "Tick"
func = "tests.support.test_jobs:append_pid"
trigger = "interval"
seconds = {seconds}
critical = {str(critical).lower()}
misfire_grace_time = 5
kwargs = {{ path = "{runs_file}" }}
"""
