"""The component-check interface and the runner that turns a check into a result."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable

from .errors import CheckError, ServiceDegraded
from .redaction import redact
from .status import Status
from .timefmt import utc_now

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """What one run of a check found.

    ``latency`` is in seconds; ``reason`` is short, redacted and ``None`` when
    the component is available. ``checked_at`` is the wall-clock time the
    check ended (for people); ``observed_at`` the same moment on this
    process's monotonic clock, from which :meth:`age` is measured, so a
    wall-clock jump never makes a result look fresher or older than it is.
    """

    component: str
    status: Status
    backend: str
    latency: float | None
    checked_at: dt.datetime
    reason: str | None = None
    observed_at: float = dataclasses.field(default_factory=time.monotonic, compare=False)

    def age(self, now: float | None = None) -> float:
        """Seconds since the check ended (``now`` is a ``time.monotonic()`` reading; default: now)."""
        return max((time.monotonic() if now is None else now) - self.observed_at, 0.0)


class ComponentCheck:
    """One dependency's check. Subclasses set ``backend`` and implement :meth:`check`.

    :meth:`check` returns when the component is available and raises
    :class:`~common.helpers.health.errors.ServiceUnavailable` or
    :class:`~common.helpers.health.errors.ServiceDegraded` otherwise. It must
    bound its own I/O with timeouts; the engine also puts a deadline on it.
    """

    backend: str = "unknown"

    def check(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def run(self, component: str) -> CheckResult:
        """Run :meth:`check`, time it, and map what it raised to a status."""
        started = time.perf_counter()
        status, reason = Status.AVAILABLE, None
        try:
            self.check()
        except ServiceDegraded as error:
            status, reason = Status.DEGRADED, error.reason
        except CheckError as error:
            status, reason = Status.UNAVAILABLE, error.reason
        except Exception as error:  # a check must never crash the endpoint
            status, reason = Status.UNAVAILABLE, f"{type(error).__name__}: {error}"
        latency = time.perf_counter() - started
        return CheckResult(
            component=component,
            status=status,
            backend=self.backend,
            latency=latency,
            checked_at=utc_now(),
            reason=redact(reason)[:300] if reason else None,
        )


class CallableCheck(ComponentCheck):
    """Adapt a plain function that raises the typed errors into a check."""

    def __init__(self, function: Callable[[], None], backend: str) -> None:
        self._function = function
        self.backend = backend

    def check(self) -> None:
        self._function()
