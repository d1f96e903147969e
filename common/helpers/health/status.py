"""Status words and how component statuses combine into one overall status."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping


class Status(enum.StrEnum):
    """A component's or a service's health, from best to worst."""

    AVAILABLE = "available"
    DEGRADED = "degraded"
    UNAVAILABLE = "unavailable"

    @property
    def severity(self) -> int:
        """0 for available, 1 for degraded, 2 for unavailable."""
        return _SEVERITY[self]

    @property
    def http_status(self) -> int:
        """The HTTP code a health endpoint answers with: 503 only when unavailable."""
        return 503 if self is Status.UNAVAILABLE else 200


_SEVERITY = {Status.AVAILABLE: 0, Status.DEGRADED: 1, Status.UNAVAILABLE: 2}


def worst(statuses: Iterable[Status]) -> Status:
    """Return the worst of ``statuses`` (available when there are none)."""
    return max(statuses, key=lambda status: status.severity, default=Status.AVAILABLE)


def aggregate(components: Mapping[str, Status], critical: Iterable[str]) -> Status:
    """Combine component statuses into the service's status.

    The service is as bad as its worst critical component. A non-critical
    component that is not available only makes the service ``degraded``.
    """
    critical = set(critical)
    overall = worst(status for name, status in components.items() if name in critical)
    optional = worst(status for name, status in components.items() if name not in critical)
    if optional is not Status.AVAILABLE and overall is Status.AVAILABLE:
        return Status.DEGRADED
    return overall
