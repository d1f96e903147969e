"""Assemble the /status report, cached briefly per worker.

How current each part is (the bound an operator can rely on):

* the scheduler and the jobs (states, counts, the scheduler component and its
  reason) are read from the store and judged when the report is built, all
  from one :class:`~worker_service.reporting.reading.Reading`, as /metrics's; so is
  the ``fleet`` block (the lease and the last :data:`FLEET_CHANGES` changes
  of leader, in fleet mode), which holds nothing about the reading host;
* cache and database come from the health engine: each result is at most
  ``HEALTH_CACHE_TTL`` + its grace old when the report is built, and says so
  (``metrics.dependencies.<name>.age_seconds``, beside ``checked_at``);
* the report itself is reused for at most ``STATUS_CACHE_TTL`` seconds
  (:class:`~worker_service.reporting.bounded_cache.BoundedCache`): an expired
  report is rebuilt by one request while the others wait for that build, never
  handed the old one. Its ``timestamp`` is when it was built.

The status page reads through the same reporter without the whole report: its
overview (:meth:`StatusReporter.overview`, the report less its per-job parts)
and its pages of jobs share one snapshot (:meth:`StatusReporter.page_snapshot`),
each reused for at most ``STATUS_CACHE_TTL`` as the report is.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from flask import Flask

from common.helpers.health import format_timestamp, format_uptime

from ..reporting.alerts_view import alerts_block
from ..reporting.bounded_cache import BoundedCache
from ..reporting.reading import Reading, reader_for
from ..reporting.snapshot import StoreSnapshot
from ..reporting.uptime import service_uptime
from ..vocabulary import SchedulerState
from .analysis import fleet_status, hosts_status, jobs_summary, running_status, scheduler_status
from .job_fragments import JobFragments
from .schemas import StatusSchema
from .system import SystemSampler

FLEET_CHANGES = 10  # changes of leader shown in the fleet block
RUNNING_SHOWN = 20  # runs in flight in the page's overview (its "Running now" list); /status has every one

# Dumped per job by JobFragments (memoized), then put in place.
_PER_JOB_FIELDS = ("metrics.scheduled_jobs", "metrics.jobs_analysis.job_health")
# Left out of the page's overview too: maps with an entry per job.
_PER_JOB_MAPS = ("metrics.jobs_analysis.avg_execution_times", "metrics.jobs_analysis.p95_execution_times",
                 "metrics.jobs_analysis.error_rates")


class StatusReporter:
    """Builds the /status body; reuses it for at most ``STATUS_CACHE_TTL`` seconds."""

    def __init__(self, app: Flask) -> None:
        self._settings = app.config
        self._reader = reader_for(app)
        self._sampler = SystemSampler(app.config["STATUS_DISK_PATH"], min_interval=1.0)
        self._schema = StatusSchema(exclude=_PER_JOB_FIELDS)
        self._fragments = JobFragments()
        # The encoded bytes are what is cached: re-encoding a 1,000-job report on every hit cost ~9 ms.
        self._cache = BoundedCache(lambda: json.dumps(self._build(), separators=(",", ":")).encode(),
                                   app.config["STATUS_CACHE_TTL"])
        # The status page's reads: one snapshot serves its overview and its job pages for STATUS_CACHE_TTL,
        # and its overview never serializes a job (at 5,000 jobs the whole report is 4.5 MB).
        self._overview_schema = StatusSchema(exclude=_PER_JOB_FIELDS + _PER_JOB_MAPS)
        self._snapshots = BoundedCache(self._take_snapshot, app.config["STATUS_CACHE_TTL"])
        self._overview = BoundedCache(lambda: json.dumps(self._build_overview(), separators=(",", ":")).encode(),
                                      app.config["STATUS_CACHE_TTL"])

    def prime(self) -> None:
        """Take the CPU baselines now, so the first report has figures."""
        self._sampler.prime()

    def encoded(self) -> bytes:
        """The report as JSON bytes, never older than ``STATUS_CACHE_TTL``."""
        return self._cache.get()

    def page_snapshot(self) -> StoreSnapshot:
        """The store's jobs judged at one ``now``, reused for at most ``STATUS_CACHE_TTL`` (the page's job pages)."""
        return self._snapshots.get()

    def overview(self) -> bytes:
        """GET /status/overview: the report without its per-job parts, plus how many jobs are in each state."""
        return self._overview.get()

    def _take_snapshot(self) -> StoreSnapshot:
        return self._reader.snapshot(changes=FLEET_CHANGES)

    def _build_overview(self) -> dict[str, Any]:
        snapshot = self.page_snapshot()
        body = self._schema_body(self._reader.take(snapshot=snapshot), self._overview_schema)
        analysis = body["metrics"]["jobs_analysis"]
        analysis["states"] = dict(sorted(Counter(verdict.state.value for verdict in snapshot.verdicts).items()))
        body["running_total"] = len(body["running"])
        body["running"] = body["running"][:RUNNING_SHOWN]
        return _in_seed_order(body)

    def _build(self) -> dict[str, Any]:
        reading = self._reader.take(changes=FLEET_CHANGES)
        snapshot = reading.snapshot
        dumped = self._schema_body(reading, self._schema)
        job_health, listing = self._fragments.render(snapshot.records, snapshot.verdicts, snapshot.now)
        dumped["metrics"]["jobs_analysis"]["job_health"] = job_health
        dumped["metrics"]["scheduled_jobs"] = listing
        return _in_seed_order(dumped)

    def _schema_body(self, reading: Reading, schema: StatusSchema) -> dict[str, Any]:
        """The report of ``reading``, dumped by ``schema`` (which leaves out the per-job parts)."""
        settings, health = self._settings, reading.health
        uptime = service_uptime()
        if reading.scheduler is not None:
            scheduler = scheduler_status(reading.scheduler, settings["SCHEDULER_TIMEZONE"])
        else:
            scheduler = {"running": False, "timezone": settings["SCHEDULER_TIMEZONE"], "state": SchedulerState.UNKNOWN, "pid": None,
                         "hostname": None, "heartbeat_age_seconds": None, "started_at": None}
        metrics = {
            "service_type": "worker",
            "uptime_seconds": round(uptime, 3),
            "uptime_formatted": format_uptime(uptime),
            "scheduler_status": scheduler,
            "fleet": fleet_status(reading.fleet),
            "jobs_analysis": jobs_summary(reading.snapshot.records),
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
            "alerts": alerts_block(reading.alerts),
        }
        body = {
            "status": health.status.value,
            "components": health.components(),
            "metrics": metrics,
            "timestamp": format_timestamp(health.timestamp),
            "service": settings["SERVICE_NAME"],
            "hosts": hosts_status(reading.work),
            "running": running_status(reading.work),
        }
        return schema.dump(body)


_METRICS_ORDER = ("service_type", "uptime_seconds", "uptime_formatted", "scheduler_status", "fleet", "jobs_analysis",
                  "scheduled_jobs", "system_resources", "dependencies", "alerts")


def _in_seed_order(body: dict[str, Any]) -> dict[str, Any]:
    """Put ``scheduled_jobs`` back where the seed shows it (JSON readers don't care; people do)."""
    metrics = body["metrics"]
    body["metrics"] = {key: metrics[key] for key in _METRICS_ORDER if key in metrics}
    return body
