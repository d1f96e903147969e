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
func = "tests.support.sample_jobs:append_pid"
trigger = "interval"
seconds = {seconds}
critical = {str(critical).lower()}
misfire_grace_time = 5
kwargs = {{ path = "{runs_file}" }}
"""


def duplicate_slots(runs: list[tuple[int, float]], interval: float = 1.0) -> list[tuple[int, list[float]]]:
    """Slots of an interval job that ran more than once: ``[(slot, [times...])]``.

    Each run belongs to the latest slot at or before it. Slots are
    ``phase + k * interval``; since a run is never early, the phase is the
    run offset that leaves the runs least late in total (a late run after a
    pause or a handover, or a few runs of which half are late, cannot move it
    the way a median could). A run late after a handover still belongs to its
    own slot, so only a slot run twice is reported.
    """
    if len(runs) < 2:
        return []
    offsets = [at % interval for _, at in runs]
    phase = min(offsets, key=lambda candidate: sum((offset - candidate) % interval for offset in offsets))
    slots: dict[int, list[float]] = {}
    for _, at in runs:
        slots.setdefault(int((at - phase + 0.005) // interval), []).append(at)
    return [(slot, times) for slot, times in sorted(slots.items()) if len(times) > 1]
