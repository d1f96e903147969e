"""Run component checks concurrently, each under a deadline, cached and single-flight.

Why it is built this way:

* Probes arrive often and in bursts (load balancers, Kubernetes, nginx). A
  result is cached for ``cache_ttl`` seconds and concurrent callers share one
  in-flight check per component, so a flood of probes is never a flood of
  Redis or database calls. Past the TTL the last result is still served while
  one refresh runs in the background (stale-while-revalidate), so once a
  component has a result no probe waits on it, even when it hangs: a refresh
  still running after ``timeout`` turns the component unavailable. With
  ``cache_ttl=0`` every caller waits for a fresh (shared) check.
* A dependency that accepts connections and never answers must not hold the
  endpoint: each caller waits at most ``timeout`` seconds from the moment the
  shared check started, then reports the component unavailable. Deadlines are
  thread-based (``Future.result(timeout)``), never SIGALRM, which only works
  in the main thread.
* A check that stays hung is abandoned, not waited on again; at most
  ``max_abandoned`` hung calls per component are left behind before the
  engine stops starting new ones, so threads cannot pile up.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from .check import CheckResult, ComponentCheck
from .status import Status
from .timefmt import utc_now

log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Slot:
    check: ComponentCheck
    cached: CheckResult | None = None
    cached_at: float = 0.0
    inflight: Future | None = None
    inflight_started: float = 0.0
    abandoned: set = dataclasses.field(default_factory=set)
    last_status: Status | None = None


class HealthEngine:
    """A registry of named checks and the policy that runs them.

    :param timeout: seconds a caller waits for one component's answer.
    :param cache_ttl: seconds a result is reused; ``0`` runs a check for every
        caller (still single-flight).
    :param max_abandoned: hung checks per component left running before no new
        attempt is started.
    """

    def __init__(self, timeout: float, cache_ttl: float, max_abandoned: int = 2) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be greater than 0")
        if cache_ttl < 0:
            raise ValueError("cache_ttl must be 0 or more")
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.max_abandoned = max_abandoned
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()

    # -- registry -------------------------------------------------------
    def register(self, name: str, check: ComponentCheck) -> None:
        """Add (or replace) the check for component ``name``."""
        with self._lock:
            self._slots[name] = _Slot(check=check)

    def reset(self) -> None:
        """Forget every check and cached result (for tests and reconfiguration)."""
        with self._lock:
            self._slots.clear()

    @property
    def names(self) -> list[str]:
        """The registered component names, in registration order."""
        return list(self._slots)

    # -- running --------------------------------------------------------
    def run(self, names: Iterable[str] | None = None) -> dict[str, CheckResult]:
        """Return a result for each component, within about ``timeout`` seconds."""
        selected = list(self._slots) if names is None else list(names)
        pending = {name: self._result_or_future(name) for name in selected}
        results: dict[str, CheckResult] = {}
        for name, item in pending.items():
            if isinstance(item, CheckResult):
                results[name] = item
                continue
            future, started = item
            remaining = started + self.timeout - time.monotonic()
            try:
                results[name] = future.result(timeout=max(remaining, 0.0))
            except FutureTimeout:
                results[name] = self._store_timeout(name, future)
        return results

    def _result_or_future(self, name: str) -> CheckResult | tuple[Future, float]:
        with self._lock:
            slot = self._slots[name]
            now = time.monotonic()
            if slot.cached is not None and now - slot.cached_at < self.cache_ttl:
                return slot.cached
            # Past its TTL, a result is still served while a refresh runs in the
            # background (caching on only): no probe waits once a first result exists.
            stale = slot.cached if self.cache_ttl > 0 else None
            if slot.inflight is not None and not slot.inflight.done():
                if now - slot.inflight_started < self.timeout:
                    return stale if stale is not None else (slot.inflight, slot.inflight_started)
                # The refresh is hung past its deadline: that is the news.
                slot.abandoned = {future for future in slot.abandoned if not future.done()}
                if len(slot.abandoned) >= self.max_abandoned:
                    return self._timeout_result(slot, name, "still hung")
                slot.abandoned.add(slot.inflight)
                hung = self._timeout_result(slot, name, "no answer")
                stale = hung if stale is not None else None
            future = self._start(slot.check, name)
            slot.inflight, slot.inflight_started = future, now
        future.add_done_callback(lambda done, name=name: self._store(name, done))
        return stale if stale is not None else (future, now)

    @staticmethod
    def _start(check: ComponentCheck, name: str) -> Future:
        """Run one check in a daemon thread of its own.

        Daemon, so a check stuck on a frozen server never holds up the
        process's exit (a ThreadPoolExecutor's threads are joined at exit, and
        gunicorn would have to SIGKILL the worker). Single-flight and
        ``max_abandoned`` bound how many such threads exist.
        """
        future: Future = Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                future.set_result(check.run(name))  # run() never raises

        threading.Thread(target=run, name=f"health-check-{name}", daemon=True).start()
        return future

    def _store(self, name: str, future: Future) -> None:
        result: CheckResult = future.result()
        with self._lock:
            slot = self._slots.get(name)
            if slot is None or slot.inflight is not future:
                return
            slot.cached, slot.cached_at = result, time.monotonic()
            self._note_transition(slot, result)

    def _store_timeout(self, name: str, future: Future) -> CheckResult:
        with self._lock:
            slot = self._slots[name]
            if future.done():  # it finished while we took the lock
                return future.result()
            if slot.inflight is not future:
                # A newer attempt replaced this one: report the timeout, store nothing over what it found.
                return self._timeout_result(slot, name, "no answer", store=False)
            if slot.cached is not None and slot.cached_at >= slot.inflight_started:
                return slot.cached  # another waiter already recorded this timeout
            return self._timeout_result(slot, name, "no answer")

    def _timeout_result(self, slot: _Slot, name: str, what: str, store: bool = True) -> CheckResult:
        result = CheckResult(
            component=name,
            status=Status.UNAVAILABLE,
            backend=slot.check.backend,
            latency=self.timeout,
            checked_at=utc_now(),
            reason=f"{what} within {self.timeout:g} s (timed out)",
        )
        if not store:
            return result
        slot.cached, slot.cached_at = result, time.monotonic()
        self._note_transition(slot, result)
        return result

    @staticmethod
    def _note_transition(slot: _Slot, result: CheckResult) -> None:
        """Log once per change of state, not once per probe."""
        if result.status is slot.last_status:
            return
        previous, slot.last_status = slot.last_status, result.status
        if result.status is Status.AVAILABLE:
            if previous is not None:
                log.warning("health: %s (%s) is available again", result.component, result.backend)
            return
        log.warning(
            "health: %s (%s) is %s: %s", result.component, result.backend, result.status.value, result.reason
        )
