"""Run component checks concurrently, each under a deadline, cached and single-flight, with bounded staleness.

Why it is built this way:

* Probes arrive often and in bursts (load balancers, Kubernetes, nginx). A
  result is reused for ``cache_ttl`` seconds and concurrent callers share one
  in-flight check per component, so a flood of probes is never a flood of
  Redis or database calls.
* **Bounded staleness.** A result younger than ``cache_ttl`` is served as is.
  Between ``cache_ttl`` and ``cache_ttl + stale_grace`` it is still served
  while one refresh runs in the background (stale-while-revalidate), so steady
  probing never waits on a dependency, even a hung one. A result older than
  that is never served: the caller waits for a fresh check (shared with the
  other callers), within the deadline below. So every answer reflects a check
  that finished at most ``cache_ttl + stale_grace`` seconds before it was
  asked for, however long nobody asked (cron and Nagios probe every few
  minutes: each probe must tell the state *now*, not the previous probe's).
  ``stale_grace`` defaults to ``2 × timeout``: time for one refresh and its
  confirmation (next point) to run while the last result is still served.
  With ``cache_ttl=0`` every caller waits for a fresh (shared) check.
* **A single missed deadline of a usable component is confirmed.** A check
  that misses its deadline may only have lacked CPU (a loaded host, a busy
  worker), not found its dependency hung. When the component's last result
  was available or degraded, a timeout is therefore not reported at once: one
  confirmation attempt starts immediately with a fresh deadline, and only if
  it fails or misses too does the component turn unavailable; if it answers,
  its answer is the result. A check that fails outright (refused, error) is
  reported at once, and a component already unavailable is not retried. A
  real hang thus shows one ``timeout`` later, and a caller waits at most
  ``2 × timeout`` (only when a usable component just hung). With a refresher
  (below), a component's very first check is confirmed the same way: it runs
  while the process boots, when CPU is scarcest.
* A dependency that accepts connections and never answers must not hold the
  endpoint: each attempt gets ``timeout`` seconds from its start. Deadlines
  are thread-based (``Future.result(timeout)``), never SIGALRM, which only
  works in the main thread.
* A check that stays hung is abandoned, not waited on again; at most
  ``max_abandoned`` hung calls per component are left behind before the
  engine stops starting new ones (and reports "still hung"), so threads
  cannot pile up.
* **Refreshed in the background** (:class:`~common.helpers.health.refresher.Refresher`,
  one daemon thread per process): every ``cache_ttl`` it starts one check per
  component that has none running, and it enforces each attempt's deadline
  itself. Callers then only read memory: a result is served until
  ``cache_ttl + stale_grace`` as above, but a caller never starts a refresh
  and never waits for one, even after a quiet spell or with a dependency hung
  (an attempt past its deadline is answered "timed out" from memory). Only a
  process too starved to run its refresher on time, or one whose first
  results are not in yet, falls back to the rules above.

Each :class:`~common.helpers.health.check.CheckResult` carries the monotonic
time it was observed; :meth:`~common.helpers.health.check.CheckResult.age`
gives its age.
"""

from __future__ import annotations

import dataclasses
import logging
import os
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
    confirming: bool = False  # the in-flight attempt confirms a missed deadline
    abandoned: set = dataclasses.field(default_factory=set)
    last_status: Status | None = None


class HealthEngine:
    """A registry of named checks and the policy that runs them.

    :param timeout: seconds one attempt of a check may take.
    :param cache_ttl: seconds a result is served as current; ``0`` runs a
        check for every caller (still single-flight).
    :param stale_grace: seconds past ``cache_ttl`` during which the last result
        is still served while a refresh runs; past that a caller waits for a
        fresh check. ``None``: ``2 × timeout``.
    :param max_abandoned: hung checks per component left running before no new
        attempt is started.
    :raises ValueError: for a timeout not above 0 or a negative TTL or grace.
    """

    def __init__(self, timeout: float, cache_ttl: float, max_abandoned: int = 2,
                 stale_grace: float | None = None) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be greater than 0")
        if cache_ttl < 0:
            raise ValueError("cache_ttl must be 0 or more")
        if stale_grace is not None and stale_grace < 0:
            raise ValueError("stale_grace must be 0 or more")
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.stale_grace = 2 * timeout if stale_grace is None else stale_grace
        self.max_abandoned = max_abandoned
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._background_pid: int | None = None  # the process whose refresher keeps the results fresh
        self.stored = threading.Event()  # set whenever an attempt's result is stored (wakes the refresher)

    @property
    def max_age(self) -> float:
        """The oldest a served result can be, in seconds: ``cache_ttl + stale_grace`` (0 with caching off)."""
        return self.cache_ttl + self.stale_grace if self.cache_ttl > 0 else 0.0

    @property
    def max_wait(self) -> float:
        """The longest a caller waits, in seconds: one attempt and its confirmation."""
        return 2 * self.timeout

    # -- registry -------------------------------------------------------
    def register(self, name: str, check: ComponentCheck) -> None:
        """Add (or replace) the check for component ``name``."""
        with self._lock:
            self._slots[name] = _Slot(check=check)

    @property
    def names(self) -> list[str]:
        """The registered component names, in registration order."""
        return list(self._slots)

    # -- background refresh (driven by a Refresher) ---------------------
    @property
    def refreshed_in_background(self) -> bool:
        """Whether a refresher of this process keeps the results fresh (never true in a forked child)."""
        return self._background_pid == os.getpid()

    def set_refreshed_in_background(self, on: bool) -> None:
        """Say a refresher of this process runs (``True``) or stopped (``False``)."""
        self._background_pid = os.getpid() if on else None

    def refresh(self, now: float | None = None) -> None:
        """Start one check of every component that has none running (a refresher's round; returns at once).

        A component already unavailable whose last attempt was abandoned while
        hung and still runs gets no second one: it is reported "still hung"
        instead (a fresh observation that it still does not answer), so rounds
        do not pile checks onto a hung dependency. (After a missed deadline
        that a retry then contradicted, the component is usable, and the next
        round checks it even if the first attempt still hangs.)
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            for name, slot in self._slots.items():
                self._settle(slot)
                if slot.inflight is None:
                    hung = slot.cached is not None and slot.cached.status is Status.UNAVAILABLE
                    self._start(slot, name, now, confirming=False, limit=1 if hung else None)

    def enforce_deadlines(self, now: float | None = None) -> float | None:
        """Handle every attempt past its deadline (confirm or report it); the next pending deadline, if any."""
        now = time.monotonic() if now is None else now
        upcoming: list[float] = []
        with self._lock:
            for name, slot in self._slots.items():
                self._settle(slot)
                if slot.inflight is not None and now - slot.inflight_started >= self.timeout:
                    self._missed(slot, name, slot.inflight, now)
                if slot.inflight is not None:
                    upcoming.append(slot.inflight_started + self.timeout)
        return min(upcoming, default=None)

    def results_since(self, moment: float) -> bool:
        """Whether every component has a result stored at or after ``moment`` (a monotonic reading)."""
        with self._lock:
            for slot in self._slots.values():
                self._settle(slot)
            return all(slot.cached is not None and slot.cached_at >= moment for slot in self._slots.values())

    # -- running --------------------------------------------------------
    def run(self, names: Iterable[str] | None = None) -> dict[str, CheckResult]:
        """Return a result for each component, within at most :attr:`max_wait` seconds."""
        if names is None and (fresh := self._all_fresh()) is not None:
            return fresh
        selected = list(self._slots) if names is None else list(names)
        pending = {name: self._serve(name) for name in selected}
        return {name: item if isinstance(item, CheckResult) else self._await(name, item)
                for name, item in pending.items()}

    def _all_fresh(self) -> dict[str, CheckResult] | None:
        """Every result, when each is younger than ``cache_ttl``: a probe's usual case, under one lock."""
        results: dict[str, CheckResult] = {}
        with self._lock:
            for name, slot in self._slots.items():
                fresh = self._fresh(slot)
                if fresh is None:
                    return None
                results[name] = fresh
        return results

    def _fresh(self, slot: _Slot) -> CheckResult | None:
        """The slot's result if it is younger than ``cache_ttl`` (lock held; an ended attempt settled first).

        The age is read after settling, so that a result stored just now is
        not younger than 0 (with caching off, ``cache_ttl`` 0, nothing is fresh).
        """
        self._settle(slot)
        if slot.cached is not None and time.monotonic() - slot.cached_at < self.cache_ttl:
            return slot.cached
        return None

    def _serve(self, name: str) -> CheckResult | Future:
        """A result to serve now, or the attempt to wait for."""
        with self._lock:
            slot = self._slots[name]
            fresh = self._fresh(slot)
            if fresh is not None:
                return fresh
            now = time.monotonic()
            age = now - slot.cached_at if slot.cached is not None else None
            servable = slot.cached if age is not None and self.cache_ttl > 0 and age < self.max_age else None
            if slot.inflight is not None:  # still running (settled above otherwise)
                if now - slot.inflight_started >= self.timeout:
                    outcome = self._missed(slot, name, slot.inflight, now)
                    if isinstance(outcome, CheckResult):
                        return outcome
                return servable if servable is not None else slot.inflight
            if servable is not None and self.refreshed_in_background:
                return servable  # the refresher starts the next check on its timer, never a caller
            attempt = self._start(slot, name, now, confirming=False)
            if isinstance(attempt, CheckResult):
                return attempt
            return servable if servable is not None else attempt

    def _await(self, name: str, future: Future) -> CheckResult:
        """Wait for ``future`` until its deadline; on a miss, for its confirmation if one starts."""
        while True:
            with self._lock:
                slot = self._slots[name]
                started = slot.inflight_started if slot.inflight is future else time.monotonic() - self.timeout
            try:
                return future.result(timeout=max(started + self.timeout - time.monotonic(), 0.0))
            except FutureTimeout:
                pass
            with self._lock:
                slot = self._slots[name]
                if future.done():  # it finished while we took the lock
                    self._settle(slot)
                    return future.result()
                if slot.inflight is not future:
                    # A newer attempt replaced this one (a confirmation, or a later refresh that stored its result).
                    if slot.cached is not None and slot.cached_at >= started:
                        return slot.cached
                    if slot.confirming and slot.inflight is not None and not slot.inflight.done():
                        future = slot.inflight
                        continue
                    return self._timeout_result(slot, name, "no answer", store=False)
                outcome = self._missed(slot, name, future, time.monotonic())
                if isinstance(outcome, CheckResult):
                    return outcome
                future = outcome

    def _missed(self, slot: _Slot, name: str, future: Future, now: float) -> CheckResult | Future:
        """``future`` (the slot's in-flight attempt) missed its deadline: confirm the miss, or report it.

        Called with the lock held. Returns the confirmation attempt to wait
        for, or the (stored) unavailable result.
        """
        slot.abandoned.add(future)
        usable = slot.cached is not None and slot.cached.status is not Status.UNAVAILABLE
        # A refresher's first check runs while a new worker boots, when CPU is scarcest: its miss is confirmed too.
        booting = slot.cached is None and self.refreshed_in_background
        if (usable or booting) and not slot.confirming:
            return self._start(slot, name, now, confirming=True)
        return self._timeout_result(slot, name, "no answer")

    def _start(self, slot: _Slot, name: str, now: float, confirming: bool,
               limit: int | None = None) -> CheckResult | Future:
        """Start an attempt (lock held); with ``limit`` (default ``max_abandoned``) hung ones left, report "still hung"."""
        slot.abandoned = {future for future in slot.abandoned if not future.done()}
        if len(slot.abandoned) >= (self.max_abandoned if limit is None else limit):
            slot.inflight, slot.confirming = None, False
            return self._timeout_result(slot, name, "still hung")
        future = self._spawn(slot.check, name)
        slot.inflight, slot.inflight_started, slot.confirming = future, now, confirming
        return future

    def _spawn(self, check: ComponentCheck, name: str) -> Future:
        """Run one check in a daemon thread of its own; its result is stored when it ends.

        The callback is attached before the thread starts: attached later, to
        a future already done, it would run at once in this thread, which
        holds the (non-reentrant) lock.

        Daemon, so a check stuck on a frozen server never holds up the
        process's exit (a ThreadPoolExecutor's threads are joined at exit, and
        gunicorn would have to SIGKILL the worker). Single-flight and
        ``max_abandoned`` bound how many such threads exist.
        """
        future: Future = Future()
        future.add_done_callback(lambda done: self._store(name, done))

        def run() -> None:
            if future.set_running_or_notify_cancel():
                future.set_result(check.run(name))  # run() never raises

        threading.Thread(target=run, name=f"health-check-{name}", daemon=True).start()
        return future

    def _store(self, name: str, future: Future) -> None:
        with self._lock:
            slot = self._slots.get(name)
            if slot is not None and slot.inflight is future:
                self._settle(slot)
            # otherwise it was abandoned: a newer attempt (or a reported timeout) stands
        self.stored.set()

    def _settle(self, slot: _Slot) -> None:
        """Store the in-flight attempt's result if it has ended (lock held).

        Also called before serving: a future is done a moment before its
        callback runs, and a caller in between must see its result.
        """
        if slot.inflight is None or not slot.inflight.done():
            return
        result: CheckResult = slot.inflight.result()
        slot.cached, slot.cached_at, slot.inflight, slot.confirming = result, time.monotonic(), None, False
        self._note_transition(slot, result)

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
        slot.cached, slot.cached_at, slot.confirming = result, time.monotonic(), False
        if slot.inflight is not None and not slot.inflight.done():
            slot.inflight = None  # reported: the hung attempt is left behind (counted in ``abandoned``)
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
