"""Keep a :class:`~common.helpers.health.engine.HealthEngine`'s results fresh from a timer, off the request path.

Why: with results refreshed only when a caller asks, the first caller after a
quiet spell longer than ``cache_ttl + stale_grace`` waits for a fresh check,
and with a dependency hung that is a whole check timeout. Here one daemon
thread per process starts a check of every component once per ``cache_ttl``
(none for a component whose check is still in flight, nor for an unavailable
one whose abandoned check still hangs: see
:meth:`~common.helpers.health.engine.HealthEngine.refresh`) and enforces each
attempt's deadline itself, so a result is always in memory, never older than
``cache_ttl + stale_grace``, and a caller never waits for it.

The cost is fixed and small: one check per component per ``cache_ttl`` per
process, probed or not.

Start it in the process that serves the callers, after any fork (a thread
does not survive a fork; a forked child sees its engine as not refreshed in
the background and falls back to refreshing on demand). ``on_first_round``
is called once, in the refresher's thread, when every component has its
first result: a worker's readiness.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .engine import HealthEngine

log = logging.getLogger(__name__)

IDLE_WAKE = 60.0  # seconds: the longest the thread sleeps without a reason (a stop or a store wakes it at once)


class Refresher:
    """One daemon thread refreshing ``engine`` every ``engine.cache_ttl`` seconds until :meth:`stop`."""

    def __init__(self, engine: HealthEngine, on_first_round: Callable[[], None] | None = None) -> None:
        self.engine = engine
        self._on_first_round = on_first_round
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.first_round = threading.Event()  # every component has had its first result since start()

    @property
    def running(self) -> bool:
        """Whether the thread runs in this process."""
        return self._thread is not None and self._thread.is_alive() and self.engine.refreshed_in_background

    def start(self) -> bool:
        """Start the thread; ``False`` (nothing started) when caching is off (``cache_ttl`` 0) or it already runs."""
        if self.engine.cache_ttl <= 0:
            return False
        with self._lock:
            if self.running:
                return False
            self._stopping.clear()
            self.engine.set_refreshed_in_background(True)
            self._thread = threading.Thread(target=self._run, name="health-refresher", daemon=True)
            self._thread.start()
        return True

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the thread (a check it started may still end later; its result is stored as usual)."""
        with self._lock:
            thread = self._thread
            self._stopping.set()
            self.engine.stored.set()  # wake it now
            self.engine.set_refreshed_in_background(False)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # never silently: the engine falls back to refreshing on demand
            log.exception("health: the background refresher stopped")
            self.engine.set_refreshed_in_background(False)
            self._report_first_round()

    def _loop(self) -> None:
        engine, ttl = self.engine, self.engine.cache_ttl
        first_round = time.monotonic()
        next_round = first_round
        reported = False
        while not self._stopping.is_set():
            engine.stored.clear()  # before looking: a result stored from here on wakes the wait below
            now = time.monotonic()
            if now >= next_round:
                engine.refresh(now)
                # One round per TTL from the first, but no burst of rounds to catch up after a stall.
                next_round = max(next_round + ttl, now + ttl / 2)
            deadline = engine.enforce_deadlines()
            if not reported and engine.results_since(first_round):
                reported = True
                self._report_first_round()
            wake = min(next_round, deadline if deadline is not None else next_round, time.monotonic() + IDLE_WAKE)
            if reported:
                self._stopping.wait(max(wake - time.monotonic(), 0.0))
            else:  # a stored result may complete the first round: wake for it, not only for the next deadline
                engine.stored.wait(max(wake - time.monotonic(), 0.0))

    def _report_first_round(self) -> None:
        callback, self._on_first_round = self._on_first_round, None
        try:
            if callback is not None:
                callback()
        except Exception:
            log.exception("health: the first-round callback raised")
        finally:
            self.first_round.set()
