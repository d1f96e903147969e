"""Assemble the /status report, cached briefly per worker.

How current each part is (the bound an operator can rely on):

* the scheduler and the jobs (states, counts, the scheduler component and its
  reason) are read from the store and judged when the report is built, all
  from one :class:`~worker_service.reporting.snapshot.StoreSnapshot`; so is
  the ``fleet`` block (the lease and the last :data:`FLEET_CHANGES` changes
  of leader, in fleet mode), which holds nothing about the reading host;
* cache and database come from the health engine: each result is at most
  ``HEALTH_CACHE_TTL`` + its grace old when the report is built, and says so
  (``metrics.dependencies.<name>.age_seconds``, beside ``checked_at``);
* the report itself is reused for at most ``STATUS_CACHE_TTL`` seconds
  (:class:`~worker_service.health.bounded_cache.BoundedCache`): an expired
  report is rebuilt by one request while the others wait for that build, never
  handed the old one. Its ``timestamp`` is when it was built.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask

from common.helpers.health import format_timestamp, format_uptime

from ..health.bounded_cache import BoundedCache
from ..health.report import build_health_report
from ..reporting.alerts_view import alerts_block
from ..reporting.fleet_view import view_fleet
from ..reporting.scheduler_view import view_scheduler
from ..reporting.snapshot import scheduler_result, take_snapshot
from ..reporting.uptime import service_uptime
from ..scheduler.component_check import fleet_mode
from ..scheduler.job_health import JobPolicy
from .analysis import fleet_status, jobs_summary, scheduler_status
from .job_fragments import JobFragments
from .schemas import StatusSchema
from .system import SystemSampler

FLEET_CHANGES = 10  # changes of leader shown in the fleet block

# Dumped per job by JobFragments (memoized), then put in place.
_PER_JOB_FIELDS = ("metrics.scheduled_jobs", "metrics.jobs_analysis.job_health")


class StatusReporter:
    """Builds the /status body; reuses it for at most ``STATUS_CACHE_TTL`` seconds."""

    def __init__(self, app: Flask) -> None:
        self._app = app
        self._settings = app.config
        self._policy = JobPolicy.from_settings(app.config)
        self._sampler = SystemSampler(app.config["STATUS_DISK_PATH"], min_interval=1.0)
        self._schema = StatusSchema(exclude=_PER_JOB_FIELDS)
        self._fragments = JobFragments()
        # The encoded bytes are what is cached: re-encoding a 1,000-job report on every hit cost ~9 ms.
        self._cache = BoundedCache(lambda: json.dumps(self._build(), separators=(",", ":")).encode(),
                                   app.config["STATUS_CACHE_TTL"])

    def prime(self) -> None:
        """Take the CPU baselines now, so the first report has figures."""
        self._sampler.prime()

    def encoded(self) -> bytes:
        """The report as JSON bytes, never older than ``STATUS_CACHE_TTL``."""
        return self._cache.get()

    def _build(self) -> dict[str, Any]:
        extensions, settings = self._app.extensions, self._settings
        snapshot = take_snapshot(extensions["store"], self._policy, fleet=fleet_mode(settings),
                                 changes=FLEET_CHANGES)
        health = build_health_report(extensions["health"], settings["HEALTH_CRITICAL_COMPONENTS"],
                                     judged={"scheduler": scheduler_result(snapshot, settings, self._policy)})
        now = snapshot.now
        job_health, listing = self._fragments.render(snapshot.records, snapshot.verdicts, now)
        uptime = service_uptime()
        view = None
        if snapshot.error is None:
            view = view_scheduler(snapshot.leader, settings["SCHEDULER_HEARTBEAT_INTERVAL"], snapshot.beat_now)
            scheduler = scheduler_status(view, settings["SCHEDULER_TIMEZONE"])
        else:
            scheduler = {"running": False, "timezone": settings["SCHEDULER_TIMEZONE"], "state": "unknown", "pid": None,
                         "hostname": None, "heartbeat_age_seconds": None, "started_at": None}
        metrics = {
            "service_type": "worker",
            "uptime_seconds": round(uptime, 3),
            "uptime_formatted": format_uptime(uptime),
            "scheduler_status": scheduler,
            "fleet": fleet_status(view_fleet(snapshot, view)),
            "jobs_analysis": jobs_summary(snapshot.records),
            "system_resources": self._sampler.sample(),
            "dependencies": {
                name: {
                    "status": result.status.value,
                    "backend": result.backend,
                    "latency_seconds": None if result.latency is None else round(result.latency, 6),
                    "checked_at": format_timestamp(result.checked_at),
                    "age_seconds": round(result.age(), 3),
                    "reason": result.reason,
                }
                for name, result in health.results.items()
            },
            "alerts": alerts_block(extensions["store"], settings),
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


_METRICS_ORDER = ("service_type", "uptime_seconds", "uptime_formatted", "scheduler_status", "fleet", "jobs_analysis",
                  "scheduled_jobs", "system_resources", "dependencies", "alerts")


def _in_seed_order(body: dict[str, Any]) -> dict[str, Any]:
    """Put ``scheduled_jobs`` back where the seed shows it (JSON readers don't care; people do)."""
    metrics = body["metrics"]
    body["metrics"] = {key: metrics[key] for key in _METRICS_ORDER if key in metrics}
    return body
