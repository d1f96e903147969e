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
    ``phase + k * interval``, and the phase is read off the on-time runs
    (those within a tenth of an interval of the median offset, taking the
    earliest of them, since a run is never early). A run late after a
    handover still belongs to its own slot, so only a slot run twice is
    reported.
    """
    if len(runs) < 2:
        return []
    offsets = sorted(at % interval for _, at in runs)
    median = offsets[len(offsets) // 2]
    centred = [((at - median + interval / 2) % interval) - interval / 2 for _, at in runs]
    on_time = sorted(value for value in centred if abs(value) < interval / 10)
    phase = median + on_time[len(on_time) // 5]
    slots: dict[int, list[float]] = {}
    for _, at in runs:
        slots.setdefault(int((at - phase + 0.005) // interval), []).append(at)
    return [(slot, times) for slot, times in sorted(slots.items()) if len(times) > 1]
