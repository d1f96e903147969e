"""Test-only hook: shift this process's wall clock by an offset read from a file.

Put this directory first on ``PYTHONPATH`` and set
``WORKER_SERVICE_TEST_CLOCK_OFFSET_FILE`` to a file holding a number of seconds
(a missing or empty file means 0). Then ``time.time``, ``time.time_ns`` and
``datetime.now()`` in APScheduler's modules read the real wall clock plus that
offset. The file is re-read at most every ``REREAD_EVERY`` seconds of the
monotonic clock, so a test changes the offset of a running process by
rewriting it. The monotonic clock is left alone, as a real clock jump would.

Why not libfaketime: it does not work with Python 3.11's ``time.sleep``.
Nothing here runs unless the variable is set.
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
import time

OFFSET_FILE_VARIABLE = "WORKER_SERVICE_TEST_CLOCK_OFFSET_FILE"
REREAD_EVERY = 0.05
# The APScheduler modules that read the wall clock through ``datetime.now``.
PATCHED_MODULES = ("apscheduler.schedulers.base", "apscheduler.executors.base", "apscheduler.triggers.interval",
                   "apscheduler.triggers.date")

_real_time = time.time
_real_time_ns = time.time_ns
_RealDatetime = _dt.datetime


class _Offset:
    """The offset in seconds, re-read from its file when the cached value is older than REREAD_EVERY."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._value = 0.0
        self._read_at = float("-inf")

    def seconds(self) -> float:
        now = time.monotonic()
        with self._lock:
            if now - self._read_at >= REREAD_EVERY:
                self._read_at = now
                try:
                    with open(self._path) as handle:
                        text = handle.read().strip()
                    self._value = float(text) if text else 0.0
                except (OSError, ValueError):
                    pass  # keep the last good value while the test rewrites the file
            return self._value


class _ShiftedMeta(type):
    def __instancecheck__(cls, instance: object) -> bool:
        return isinstance(instance, _RealDatetime)

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, _RealDatetime)


def _install(path: str) -> None:
    offset = _Offset(path)

    def shifted_time() -> float:
        return _real_time() + offset.seconds()

    def shifted_time_ns() -> int:
        return _real_time_ns() + int(offset.seconds() * 1e9)

    class ShiftedDatetime(_RealDatetime, metaclass=_ShiftedMeta):
        """``datetime`` whose ``now()`` follows the shifted wall clock; everything else is the real class."""

        @classmethod
        def now(cls, tz: _dt.tzinfo | None = None) -> _dt.datetime:
            return _RealDatetime.fromtimestamp(shifted_time(), tz)

        @classmethod
        def utcnow(cls) -> _dt.datetime:
            return _RealDatetime.fromtimestamp(shifted_time(), _dt.UTC).replace(tzinfo=None)

        @classmethod
        def today(cls) -> _dt.datetime:
            return _RealDatetime.fromtimestamp(shifted_time())

    time.time = shifted_time
    time.time_ns = shifted_time_ns
    import importlib

    for name in PATCHED_MODULES:
        module = importlib.import_module(name)
        module.datetime = ShiftedDatetime


if os.environ.get(OFFSET_FILE_VARIABLE):
    _install(os.environ[OFFSET_FILE_VARIABLE])
