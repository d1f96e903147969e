"""Read the lines test jobs append: '<pid> <epoch>'."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.support.servers import wait_until


def _lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split() for line in path.read_text().splitlines() if len(line.split()) in (2, 3)]


def read_runs(path: Path) -> list[tuple[int, float]]:
    """``(pid, time)`` of each run."""
    return [(int(parts[0]), float(parts[1])) for parts in _lines(path)]


def read_scheduled(path: Path, every_run: bool = True) -> list[tuple[int, float, float]]:
    """``(pid, time, slot)`` of each scheduled run (lines with the slot the scheduler ran it for).

    With ``every_run``, a run written without its slot (not run by the scheduler's tracking) fails the test: the
    slot checks would otherwise pass by not seeing it. One read of the file, so no run is half seen.
    """
    lines = _lines(path)
    if every_run:
        assert all(len(parts) == 3 for parts in lines), f"a run without its slot in {path}"
    return [(int(parts[0]), float(parts[1]), float(parts[2])) for parts in lines if len(parts) == 3]


def kill_the_leader_once_a_child_lingers(runs: Path, children: Path, timeout: float) -> float:
    """Once a run's child is written to ``children``, SIGKILL the worker that ran it; seconds until another runs."""
    wait_until(lambda: children.exists() and children.read_text().strip(), timeout=10, what="a child")
    leader = read_runs(runs)[-1][0]
    os.kill(leader, signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: read_runs(runs)[-1][0] != leader, timeout=timeout, what="a new leader")
    return time.monotonic() - killed


def kill_children(children: Path) -> None:
    """SIGKILL every process whose pid a job wrote to ``children`` (those still alive)."""
    for pid in children.read_text().split() if children.exists() else []:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def jobs_file(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def pid_job(runs_file: Path, seconds: int = 1, critical: bool = True) -> str:
    return f"""
[jobs.tick]
name = "Tick"
func = "tests.support.sample_jobs:append_pid"
trigger = "interval"
seconds = {seconds}
critical = {str(critical).lower()}
misfire_grace_time = 5
kwargs = {{ path = "{runs_file}" }}
"""


def duplicate_slots(runs: list[tuple[int, float, float]], interval: float = 1.0) -> list[tuple[float, float]]:
    """Pairs of consecutive scheduled slots closer than ``interval``: one slot run twice, or a schedule that shifted.

    ``runs`` come from :func:`read_scheduled`: each carries the slot the
    scheduler ran it for, so a run late after a handover (0.97 s late) is
    never taken for an early run of the next slot, as guessing slots from
    run times did. Two runs of one slot have the same slot; a leader that
    recomputed the schedule instead of resuming the published next run time
    shows as two slots less than an interval apart.
    """
    slots = sorted(slot for _, _, slot in runs)
    return [(a, b) for a, b in zip(slots, slots[1:], strict=False) if b - a < interval - 0.005]
