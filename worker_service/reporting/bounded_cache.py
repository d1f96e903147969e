"""A value rebuilt at most once per TTL, never served older than the TTL: what /status and /metrics cache.

While a value is younger than ``ttl`` every caller gets it. Once it is older,
the next caller rebuilds it and the callers that arrive meanwhile wait for
that one build and share it (single-flight): a burst of requests is one build,
and nobody is handed a value older than ``ttl`` (after a quiet spell the last
one may be minutes old). The age is counted from when the build *started*,
since that is when its data were read. With ``ttl <= 0`` every caller builds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class BoundedCache(Generic[T]):
    """Holds the last value ``build()`` returned; see the module docstring for the rule."""

    def __init__(self, build: Callable[[], T], ttl: float) -> None:
        self._build = build
        self.ttl = ttl
        self._value: T | None = None
        self._built_at = 0.0
        self._building = False
        self._changed = threading.Condition()

    def get(self) -> T:
        """The value, rebuilt first if it is older than the TTL (or shared from a build in progress)."""
        if self.ttl <= 0:
            return self._build()
        with self._changed:
            while True:
                if self._value is not None and time.monotonic() - self._built_at < self.ttl:
                    return self._value
                if not self._building:
                    self._building = True
                    break
                self._changed.wait(timeout=1.0)  # the builder notifies; the timeout only re-checks
        started = time.monotonic()
        value: T | None = None
        try:
            value = self._build()
            return value
        finally:
            with self._changed:
                self._building = False
                if value is not None:
                    self._value, self._built_at = value, started
                self._changed.notify_all()
