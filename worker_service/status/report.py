"""Assemble the /status report, cached briefly per worker."""

from __future__ import annotations

import threading
import time
from typing import Any

from flask import Flask

from common.helpers.health import format_timestamp, format_uptime

from ..health.report import build_health_report
from .analysis import analyse_jobs, scheduler_status
from .schemas import StatusSchema
from .system import SystemSampler
from .uptime import service_started_at


class StatusReporter:
    """Builds the /status body; reuses it for ``STATUS_CACHE_TTL`` seconds."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._settings = app.config
        self._sampler = SystemSampler(app.config["STATUS_DISK_PATH"], min_interval=1.0)
        self._schema = StatusSchema()
        self._cached: dict[str, Any] | None = None
        self._cached_at = 0.0
        self._lock = threading.Lock()
        self._started_at = service_started_at()

    def prime(self) -> None:
        """Take the CPU baselines now, so the first report has figures."""
        self._sampler.prime()

    def body(self) -> dict[str, Any]:
        ttl = self._settings["STATUS_CACHE_TTL"]
        with self._lock:
            if self._cached is not None and time.monotonic() - self._cached_at < ttl:
                return self._cached
        body = self._build()
        with self._lock:
            self._cached, self._cached_at = body, time.monotonic()
        return body

    def _build(self) -> dict[str, Any]:
        extensions, settings = self._app.extensions, self._settings
        health = build_health_report(extensions["health"], settings["HEALTH_CRITICAL_COMPONENTS"])
        store = extensions["store"]
        now = time.time()
        analysis, listing = analyse_jobs(store.jobs(), settings, now)
        uptime = max(now - self._started_at, 0.0)
        metrics = {
            "service_type": "worker",
            "uptime_seconds": round(uptime, 3),
            "uptime_formatted": format_uptime(uptime),
            "scheduler_status": scheduler_status(store.scheduler(), settings, now),
            "jobs_analysis": analysis,
            "scheduled_jobs": listing,
            "system_resources": self._sampler.sample(),
            "dependencies": {
                name: {
                    "status": result.status.value,
                    "backend": result.backend,
                    "latency_seconds": None if result.latency is None else round(result.latency, 6),
                    "checked_at": format_timestamp(result.checked_at),
                    "reason": result.reason,
                }
                for name, result in health.results.items()
            },
        }
        body = {
            "status": health.status.value,
            "components": health.components(),
            "metrics": metrics,
            "timestamp": format_timestamp(health.timestamp),
            "service": settings["SERVICE_NAME"],
        }
        return self._schema.dump(body)
