"""Job functions for the job-control tests (``tests.support.control_jobs:<name>``), keyed so tests don't mix.

Each notes the run it is part of (:func:`~worker_service.scheduler.tracking.current_run`)
and the thread it ran in; :func:`held` also waits until the test releases it,
so a test can keep a job running for as long as it needs, without a sleep.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import defaultdict

from worker_service.scheduler.tracking import CurrentRun, current_run

_lock = threading.Lock()
_seen: dict[str, list[Seen]] = defaultdict(list)
_gates: dict[str, threading.Event] = defaultdict(threading.Event)
_running: dict[str, int] = defaultdict(int)
_peak: dict[str, int] = defaultdict(int)


@dataclasses.dataclass(frozen=True)
class Seen:
    """One run as the job's code saw it."""

    run: CurrentRun | None
    thread: str


def note(key: str) -> None:
    """Note the run this call is part of."""
    with _lock:
        _seen[key].append(Seen(current_run(), threading.current_thread().name))


def held(key: str, timeout: float = 10.0) -> None:
    """Note the run, then wait until :func:`release` (at most ``timeout``), counting how many ran at once."""
    with _lock:
        _seen[key].append(Seen(current_run(), threading.current_thread().name))
        _running[key] += 1
        _peak[key] = max(_peak[key], _running[key])
        gate = _gates[key]
    try:
        gate.wait(timeout)
    finally:
        with _lock:
            _running[key] -= 1


def release(key: str) -> None:
    """Let every held run of ``key`` finish, and the ones to come run through."""
    with _lock:
        gate = _gates[key]
    gate.set()


def seen(key: str) -> list[Seen]:
    """The runs of ``key`` so far, in the order they started."""
    with _lock:
        return list(_seen[key])


def running(key: str) -> int:
    """How many runs of ``key`` are in the job's code now."""
    with _lock:
        return _running[key]


def peak(key: str) -> int:
    """The most runs of ``key`` that were in the job's code at once."""
    with _lock:
        return _peak[key]
