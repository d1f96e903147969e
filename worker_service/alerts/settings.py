"""The alert settings, picked out of the service's settings once."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..config import CRASH_LIMIT_DEFAULT, LEASE_TTL_DEFAULT, fleet_mode


@dataclasses.dataclass(frozen=True)
class AlertSettings:
    """``ALERT_*`` and the few other settings the alert rules read."""

    webhook_urls: tuple[str, ...] = ()
    webhook_secret: str | None = None
    apprise_urls: tuple[str, ...] = ()
    alert_on: str = "unhealthy"
    repeat: float = 0.0
    timeout: float = 5.0
    retry_for: float = 1200.0
    hold: float = 60.0
    interval: float = 1.0
    disk_percent: float = 90.0
    memory_percent: float = 90.0
    duration_percent: float = 80.0
    error_rate_percent: float = 50.0
    public_url: str | None = None
    disk_path: str = "."
    service: str = "worker-service"
    failure_threshold: int = 3
    overdue_grace: float = 60.0
    crash_limit: int = CRASH_LIMIT_DEFAULT
    fleet: bool = False  # STATE_DATABASE_URL: a lease to watch
    lease_ttl: float = 10.0

    @property
    def enabled(self) -> bool:
        """Whether any channel is configured: without one, nothing is looked at or recorded."""
        return bool(self.webhook_urls or self.apprise_urls)

    @property
    def firing_states(self) -> frozenset[str]:
        """The job states that fire: ``unhealthy``, and with ``ALERT_ON=warning`` also ``warning``."""
        return frozenset({"unhealthy", "warning"} if self.alert_on == "warning" else {"unhealthy"})

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> AlertSettings:
        """The alert settings of validated ``settings``."""
        return cls(
            webhook_urls=tuple(settings.get("ALERT_WEBHOOK_URLS") or ()),
            webhook_secret=settings.get("ALERT_WEBHOOK_SECRET"),
            apprise_urls=tuple(settings.get("ALERT_APPRISE_URLS") or ()),
            alert_on=settings.get("ALERT_ON", "unhealthy"), repeat=float(settings.get("ALERT_REPEAT", 0.0)),
            timeout=float(settings.get("ALERT_TIMEOUT", 5.0)), retry_for=float(settings.get("ALERT_RETRY_FOR", 1200.0)),
            hold=float(settings.get("ALERT_HOLD", 60.0)), interval=float(settings.get("ALERT_INTERVAL", 1.0)),
            disk_percent=float(settings.get("ALERT_DISK_PERCENT", 90.0)),
            memory_percent=float(settings.get("ALERT_MEMORY_PERCENT", 90.0)),
            duration_percent=float(settings.get("ALERT_DURATION_PERCENT", 80.0)),
            error_rate_percent=float(settings.get("ALERT_ERROR_RATE_PERCENT", 50.0)),
            public_url=settings.get("ALERT_PUBLIC_URL"), disk_path=settings.get("STATUS_DISK_PATH") or ".",
            service=settings.get("SERVICE_NAME", "worker-service"),
            failure_threshold=int(settings.get("JOB_FAILURE_THRESHOLD", 3)),
            overdue_grace=float(settings.get("JOB_OVERDUE_GRACE", 60.0)),
            crash_limit=int(settings.get("JOB_CRASH_LIMIT", CRASH_LIMIT_DEFAULT)),
            fleet=fleet_mode(settings), lease_ttl=float(settings.get("SCHEDULER_LEASE_TTL", LEASE_TTL_DEFAULT)),
        )
