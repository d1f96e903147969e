"""Assemble the /status report, cached briefly per worker."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from flask import Flask

from common.helpers.health import format_timestamp, format_uptime

from ..health.report import build_health_report
from .analysis import jobs_summary, judge_all, scheduler_status
from .job_fragments import JobFragments
from .schemas import StatusSchema
from .system import SystemSampler
from .uptime import service_started_at

# Dumped per job by JobFragments (memoized), then put in place.
_PER_JOB_FIELDS = ("metrics.scheduled_jobs", "metrics.jobs_analysis.job_health")


class StatusReporter:
    """Builds the /status body; reuses it for ``STATUS_CACHE_TTL`` seconds."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._settings = app.config
        self._sampler = SystemSampler(app.config["STATUS_DISK_PATH"], min_interval=1.0)
        self._schema = StatusSchema(exclude=_PER_JOB_FIELDS)
        self._fragments = JobFragments()
        self._cached: bytes | None = None
        self._cached_at = 0.0
        self._building = False
        self._lock = threading.Lock()
        self._started_at = service_started_at()

    def prime(self) -> None:
        """Take the CPU baselines now, so the first report has figures."""
        self._sampler.prime()

    def encoded(self) -> bytes:
        """The report as JSON bytes, rebuilt at most once per ``STATUS_CACHE_TTL`` by one thread at a time.

        The encoded bytes are what is cached: re-encoding a 1,000-job report on
        every hit cost ~9 ms.

        While one thread rebuilds an expired report, the others get the last one
        instead of building it too (a burst of requests is one build).
        """
        ttl = self._settings["STATUS_CACHE_TTL"]
        with self._lock:
            if self._cached is not None and ttl > 0:
                if time.monotonic() - self._cached_at < ttl or self._building:
                    return self._cached
            self._building = True
        try:
            body = json.dumps(self._build(), separators=(",", ":")).encode()
        finally:
            with self._lock:
                self._building = False
        with self._lock:
            self._cached, self._cached_at = body, time.monotonic()
        return body

    def _build(self) -> dict[str, Any]:
        extensions, settings = self._app.extensions, self._settings
        health = build_health_report(extensions["health"], settings["HEALTH_CRITICAL_COMPONENTS"])
        store = extensions["store"]
        now = time.time()
        records = store.jobs()
        job_health, listing = self._fragments.render(records, judge_all(records, settings, now), now)
        uptime = max(now - self._started_at, 0.0)
        metrics = {
            "service_type": "worker",
            "uptime_seconds": round(uptime, 3),
            "uptime_formatted": format_uptime(uptime),
            "scheduler_status": scheduler_status(store.scheduler(), settings, now),
            "jobs_analysis": jobs_summary(records),
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
        dumped = self._schema.dump(body)
        dumped["metrics"]["jobs_analysis"]["job_health"] = job_health
        dumped["metrics"]["scheduled_jobs"] = listing
        return _in_seed_order(dumped)


_METRICS_ORDER = ("service_type", "uptime_seconds", "uptime_formatted", "scheduler_status", "jobs_analysis",
                  "scheduled_jobs", "system_resources", "dependencies")


def _in_seed_order(body: dict[str, Any]) -> dict[str, Any]:
    """Put ``scheduled_jobs`` back where the seed shows it (JSON readers don't care; people do)."""
    metrics = body["metrics"]
    body["metrics"] = {key: metrics[key] for key in _METRICS_ORDER if key in metrics}
    return body
