"""The scheduler component of /health, read from the shared store so every worker agrees.

The rule is :mod:`.scheduler_verdict` (a pure function, with the table of
what available, degraded and unavailable mean in a fleet); what it is judged
from is read by :class:`~.scheduler_observer.SchedulerObserver`. The
heartbeat's age is measured across wall-clock jumps by
:mod:`worker_service.scheduler.heartbeat`; each job is judged by the one
:class:`~worker_service.scheduler.job_health.JobPolicy`.

A hung database must not turn into the engine's "no answer (timed out)":
the fleet's reads run under a deadline of their own, shorter than
``HEALTH_CHECK_TIMEOUT`` (the store's own ``STATE_DATABASE_TIMEOUT`` may be
longer), and a read that misses it counts as "cannot reach".
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Generic, TypeVar

from common.helpers.health import CheckError, ComponentCheck

from ..config import fleet_mode
from ..scheduler.heartbeat import HeartbeatSightings, LeaderMemory
from ..scheduler.job_health import JobPolicy
from ..state import StateReader, StoreUnavailable
from .scheduler_observer import SchedulerObserver
from .scheduler_verdict import SchedulerRules, scheduler_verdict

T = TypeVar("T")
READ_SHARE = 0.8  # of HEALTH_CHECK_TIMEOUT: the fleet's reads must end before the engine's deadline


class SchedulerCheck(ComponentCheck):
    """Available when the leader's scheduler beats, no critical job is unhealthy and no job is quarantined.

    * unavailable: no heartbeat within ``3 × SCHEDULER_HEARTBEAT_INTERVAL``
      (in fleet mode also: no live lease; see :mod:`.scheduler_verdict`);
    * degraded: the wall clock jumped and the jobs are not re-planned yet, the
      scheduler is paused, a reload found this host's jobs file broken (the
      last good job set runs, :mod:`worker_service.scheduler.jobs_source`), or a critical job is
      unhealthy (consecutive failures over the threshold, or overdue past its
      grace); in fleet mode also: the database cannot be reached but another
      host led a moment ago.

    A heartbeat gone silent while the state directory's disk is full says so
    first (``state store: disk full (…); no scheduler heartbeat …``): the store
    still reads, and the leader cannot write.
    """

    backend = "apscheduler"

    def __init__(self, store: StateReader, settings: Mapping[str, Any], sightings: HeartbeatSightings | None = None,
                 wall: Callable[[], float] | None = None, policy: JobPolicy | None = None,
                 leaders: LeaderMemory | None = None, hostname: str | None = None) -> None:
        self._store = store
        self._observer = SchedulerObserver(SchedulerRules.from_settings(settings, policy),
                                           settings.get("WORKER_STATE_DIR") or "", sightings, leaders, wall, hostname)
        self._deadline = bounded_reads(settings)

    def check(self) -> None:
        try:
            verdict = self._deadline.call(lambda: scheduler_verdict(self._observer.read(self._store),
                                                                    self._observer.rules))
        except StoreUnavailable as error:  # the store's reason says it all; no class name in front
            raise self._observer.unreachable(error.reason) from None
        if verdict is not None:
            raise type(verdict)(verdict.reason)  # a copy: callers sharing one bounded read raise their own


def bounded_reads(settings: Mapping[str, Any]) -> ReadDeadline[Any]:
    """The fleet's reads under :data:`READ_SHARE` of ``HEALTH_CHECK_TIMEOUT``; one host's reads unbounded."""
    if not fleet_mode(settings):
        return ReadDeadline(None)
    return ReadDeadline(READ_SHARE * float(settings.get("HEALTH_CHECK_TIMEOUT") or 0.5))


class ReadDeadline(Generic[T]):
    """Runs a read in a helper thread and waits at most ``seconds`` for it; one read in flight at a time.

    While a read hangs (up to the store's own timeout), later calls wait on
    that same read rather than start another, so a hung database holds at
    most one extra thread per reader. ``seconds=None``: the read runs in the
    caller's thread, unbounded.
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._inflight: Future | None = None

    def call(self, read: Callable[[], T]) -> T:
        """``read()``'s value; re-raise what it raised; :class:`StoreUnavailable` if it has not ended in time."""
        if self.seconds is None:
            return read()
        with self._lock:
            future = self._inflight
            if future is None or future.done():
                future = self._inflight = Future()
                threading.Thread(target=_run, args=(read, future), name="scheduler-check-read", daemon=True).start()
        try:
            value, error = future.result(timeout=self.seconds)
        except FutureTimeout:
            raise StoreUnavailable(f"no answer within {self.seconds:g} s") from None
        if isinstance(error, (CheckError, StoreUnavailable)):
            raise type(error)(error.reason)  # a copy: several callers may share one read's outcome
        if error is not None:
            raise error
        return value


def _run(read: Callable[[], T], future: Future) -> None:
    try:
        value = read()
    except Exception as error:  # handed to the caller, who raises it
        future.set_result((None, error))
    else:
        future.set_result((value, None))
