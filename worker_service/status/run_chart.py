"""Runs per minute by outcome over the last hour: the status page's chart, read from the run history.

One grouped read of the store (:meth:`StateReader.run_counts`), reused for
``STATUS_CACHE_TTL`` seconds per worker, as the report is. Only the kept history counts (``JOB_HISTORY_SIZE``
runs per job): a job that runs more often than that in an hour shows its
newest runs only. The runs carry no host yet, so the chart is the fleet's
whole (per-host charts wait for runs shared across hosts).
"""

from __future__ import annotations

import math
import time
from typing import Any

from common.helpers.health import format_timestamp

from ..reporting.bounded_cache import BoundedCache
from ..state import StateReader

MINUTES = 60


class RunChart:
    """Builds the chart (:class:`~.schemas.RunChartSchema`), cached for ``ttl`` seconds."""

    def __init__(self, store: StateReader, ttl: float) -> None:
        self._store = store
        self._cache = BoundedCache(lambda: self.build(time.time()), ttl)

    def current(self) -> dict[str, Any]:
        """The chart, at most ``ttl`` seconds old; may raise ``StoreUnavailable``."""
        return self._cache.get()

    def build(self, now: float) -> dict[str, Any]:
        """The last :data:`MINUTES` whole minutes up to ``now``'s, each outcome's runs per minute, oldest first."""
        first = math.floor(now / 60) - MINUTES + 1
        counts: dict[str, list[int]] = {}
        for minute, outcome, runs in self._store.run_counts(first * 60.0):
            if first <= minute < first + MINUTES:
                counts.setdefault(outcome, [0] * MINUTES)[minute - first] = runs
        return {"start": format_timestamp(first * 60.0), "minutes": MINUTES, "counts": counts,
                "timestamp": format_timestamp(now)}
