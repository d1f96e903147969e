"""A reload hands the scheduler over without a gap: the old leader waits for a ready successor.

On SIGHUP gunicorn forks the new workers and SIGTERMs the old ones at once,
before the new ones have even imported the app. An old leader that let go of
the lock then left the host without a scheduler until a new worker was ready
(1.5–2.7 s with 3–4 workers on 2 cores), and runs due meanwhile ran late or
were folded into one. So each standby marks itself ready (a file named by its
pid in ``<state dir>/standby``) once its job modules are imported and it
blocks on the lock; and a leader stopping while newer workers exist (a
reload, not a stop) keeps scheduling until one of them is marked ready, for
at most a bound below the graceful timeout. At a plain stop there is no newer
worker and nobody here waits (in a fleet, the leader then offers the lease to
another host instead: :mod:`.lease`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

import psutil

STANDBY_DIR = "standby"
POLL = 0.05  # seconds between looks for a ready successor


class StandbyMarks:
    """The ``standby`` folder of the state directory: one file per ready standby worker."""

    def __init__(self, state_dir: str) -> None:
        self.path = os.path.join(state_dir, STANDBY_DIR)

    @contextlib.contextmanager
    def ready(self) -> Iterator[None]:
        """Mark this process a ready standby for as long as the block runs (best effort)."""
        mark = os.path.join(self.path, str(os.getpid()))
        try:
            os.makedirs(self.path, exist_ok=True)
            with open(mark, "w"):
                pass
        except OSError:
            mark = ""
        try:
            yield
        finally:
            if mark:
                with contextlib.suppress(OSError):
                    os.unlink(mark)

    def ready_pids(self) -> set[int]:
        """Pids marked ready whose process is alive."""
        try:
            names = os.listdir(self.path)
        except OSError:
            return set()
        return {int(name) for name in names if name.isdigit() and psutil.pid_exists(int(name))}

    def await_successor(self, timeout: float, workers: int) -> float:
        """During a reload, wait until a newer worker is ready to lead, at most ``timeout`` s.

        A reload is when the master has more children than its ``workers``
        and some were forked after this one; at a plain stop (or a
        ``max_requests`` recycle, where the replacement is forked after this
        worker exits) there are none, and this returns at once. Returns the
        seconds waited.
        """
        newer = newer_siblings(workers)
        if not newer or timeout <= 0:
            return 0.0
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            newer = {pid for pid in newer if psutil.pid_exists(pid)}
            if not newer or newer & self.ready_pids():
                break  # a successor is ready, or the new workers are gone too (a stop during the reload)
            time.sleep(POLL)  # polling the folder; the wait is bounded by ``timeout``
        return time.monotonic() - started

    def withdraw(self) -> None:
        """This process is going away: it is no successor to wait for."""
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self.path, str(os.getpid())))


def newer_siblings(workers: int) -> set[int]:
    """Worker pids forked after this one by the same master, if it has more children than ``workers``."""
    try:
        me = psutil.Process()
        parent = me.parent()
        children = parent.children() if parent is not None else []
        if len(children) <= workers:
            return set()
        born = me.create_time()
        return {child.pid for child in children if child.pid != me.pid and child.create_time() > born}
    except psutil.Error:
        return set()
