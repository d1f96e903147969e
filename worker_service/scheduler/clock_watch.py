"""Notice wall-clock jumps by comparing the wall clock with the monotonic clock.

Between two calls both clocks should advance by the same amount. When the
wall clock moved by more than ``JUMP_THRESHOLD`` seconds more (or less) than
the monotonic clock, someone stepped it: an operator, an NTP step, a VM
restored from a snapshot, or a host resumed from suspend (Linux's monotonic
clock does not count suspend). NTP slewing changes the rate by at most
0.05 %, microseconds per call, so it never counts as a jump.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Seconds of disagreement that count as a jump: far above slewing and read
# jitter, far below any schedule that matters (jobs run every second at best).
JUMP_THRESHOLD = 2.0
# Both clocks are read between two monotonic reads; a pair read further apart
# than this (the thread lost the CPU) is read again, so it cannot fake a jump.
MAX_READ_SPREAD = JUMP_THRESHOLD / 4
READ_ATTEMPTS = 3


class ClockWatch:
    """Called repeatedly, returns the size of a wall-clock jump since the last call, once.

    :param threshold: seconds of disagreement between the clocks that count as a jump.
    :param wall: the wall clock (default ``time.time``, looked up at each call).
    :param monotonic: the monotonic clock (default ``time.monotonic``).
    """

    def __init__(self, threshold: float = JUMP_THRESHOLD, wall: Callable[[], float] | None = None,
                 monotonic: Callable[[], float] | None = None) -> None:
        self.threshold = threshold
        self._wall = wall or (lambda: time.time())
        self._monotonic = monotonic or (lambda: time.monotonic())
        self._lock = threading.Lock()
        self._baseline: tuple[float, float] | None = None

    def check(self) -> float | None:
        """Seconds the wall clock jumped (negative: back) since the last call, or ``None``.

        The first call only takes a baseline. After a jump the baseline moves
        with it, so each jump is reported exactly once.
        """
        wall, mono = self._read()
        with self._lock:
            baseline, self._baseline = self._baseline, (wall, mono)
        if baseline is None:
            return None
        jump = (wall - baseline[0]) - (mono - baseline[1])
        return jump if abs(jump) > self.threshold else None

    def _read(self) -> tuple[float, float]:
        for _ in range(READ_ATTEMPTS):
            before = self._monotonic()
            wall = self._wall()
            after = self._monotonic()
            if after - before <= MAX_READ_SPREAD:
                break
        return wall, (before + after) / 2
