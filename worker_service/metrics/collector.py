"""The /metrics text, built from the shared store, so every worker exports the same series.

No prometheus_client multiprocess mode is needed: nothing is counted in a
worker's memory. Job counters come from the state store the scheduler's leader
writes, read once per build with the scheduler's heartbeat
(:class:`~worker_service.reporting.reading.Reading`, as /status takes it);
cache and database statuses from the health engine, the scheduler's from that
reading; process figures for the master and every worker, labelled by pid
and role. In fleet mode the scheduler lease (epoch, holder, expiry on the
database's clock) is read with the same snapshot; on one host its families
are left out. Per host: its runs in flight, threads, claims and their wait, and lost
runs (:mod:`.host_series`). A store that cannot be read leaves the job families empty and the
scheduler component unavailable; it never fails the scrape.

The text is cached like /status (:class:`~worker_service.reporting.bounded_cache.BoundedCache`,
``STATUS_CACHE_TTL``): never served older than the TTL, one build per expiry.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any

import psutil
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from common.helpers.health import Status

from ..gunicorn.master import UNDER_GUNICORN
from ..health.report import HealthReport
from ..reporting.alerts_view import AlertsRead
from ..reporting.bounded_cache import BoundedCache
from ..reporting.fleet_view import FleetView
from ..reporting.reading import Reading, reader_for
from ..reporting.uptime import service_uptime
from ..vocabulary import SchedulerState
from .host_series import host_families
from .job_series import PREFIX, JobSeries


class MetricsExporter:
    """Builds the exposition text; reuses it for at most ``STATUS_CACHE_TTL`` seconds."""

    def __init__(self, app: Any) -> None:
        self._reader = reader_for(app)
        self._jobs = JobSeries()
        self._cache = BoundedCache(self._build, app.config["STATUS_CACHE_TTL"])

    def text(self) -> bytes:
        """The Prometheus text format (0.0.4), UTF-8."""
        return self._cache.get()

    def _build(self) -> bytes:
        reading = self._reader.take(deliveries=0)  # the recent deliveries are /status's, not a metric
        families = [*_components(reading.health), *_scheduler(reading), *host_families(reading.work, reading.snapshot.fleet), *_processes(),
                    *_alerts(reading.alerts)]
        uptime = GaugeMetricFamily(f"{PREFIX}_uptime_seconds", "Seconds since the service (gunicorn master) started.")
        uptime.add_metric([], service_uptime())
        families.append(uptime)
        snapshot = reading.snapshot
        return generate_latest(_Families(families)) + self._jobs.render(snapshot.records, snapshot.verdicts).encode()


class _Families:
    """What ``generate_latest`` needs of a registry: ``collect()``."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def _components(report: HealthReport) -> Iterator[Metric]:
    up = GaugeMetricFamily(f"{PREFIX}_component_up", "1 if the component is usable (available or degraded), else 0.",
                           labels=["component", "backend"])
    status = GaugeMetricFamily(f"{PREFIX}_component_status",
                               "1 for the component's current status word, 0 for the others.",
                               labels=["component", "status"])
    latency = GaugeMetricFamily(f"{PREFIX}_component_check_latency_seconds", "Duration of the last check.",
                                labels=["component"])
    age = GaugeMetricFamily(f"{PREFIX}_component_check_age_seconds", "Age of the component's result at this scrape.",
                            labels=["component"])
    for name, result in report.results.items():
        up.add_metric([name, result.backend], 0.0 if result.status is Status.UNAVAILABLE else 1.0)
        for word in Status:
            status.add_metric([name, word.value], 1.0 if result.status is word else 0.0)
        latency.add_metric([name], result.latency or 0.0)
        age.add_metric([name], result.age())
    overall = GaugeMetricFamily(f"{PREFIX}_status", "1 for the service's overall status word, 0 for the others.",
                                labels=["status"])
    for word in Status:
        overall.add_metric([word.value], 1.0 if report.status is word else 0.0)
    yield from (up, status, latency, age, overall)


def _scheduler(reading: Reading) -> Iterator[Metric]:
    running = GaugeMetricFamily(f"{PREFIX}_scheduler_running",
                                "1 while the leader's scheduler beats (the fleet's, whichever host it runs on).")
    leader_info = GaugeMetricFamily(f"{PREFIX}_scheduler_leader_info",
                                    "The process that runs the scheduler (value 1).", labels=["pid", "hostname"])
    age = GaugeMetricFamily(f"{PREFIX}_scheduler_heartbeat_age_seconds", "Seconds since the last heartbeat.")
    view = reading.scheduler
    if view is None:
        running.add_metric([], 0.0)  # the store cannot be read: nothing can be said of a leader
    else:
        running.add_metric([], 1.0 if view.running else 0.0)
        if view.leader is not None and view.state != SchedulerState.STOPPED:
            leader_info.add_metric([str(view.leader.pid), view.leader.hostname or ""], 1.0)
        if view.heartbeat_age is not None:
            age.add_metric([], round(view.heartbeat_age, 3))
    yield from (running, leader_info, age)
    if reading.snapshot.fleet:
        yield from _lease(reading.fleet)


def _lease(fleet: FleetView) -> Iterator[Metric]:
    """The fleet's scheduler lease: empty families when it was never taken or the store cannot be read."""
    epoch = GaugeMetricFamily(f"{PREFIX}_scheduler_lease_epoch",
                              "The scheduler lease's epoch (fencing token): it grows at every change of holder (it starts from the database clock in milliseconds).")
    expires = GaugeMetricFamily(f"{PREFIX}_scheduler_lease_expires_in_seconds",
                                "Seconds until the scheduler lease expires, on the database's clock (negative once "
                                "expired).")
    live = GaugeMetricFamily(f"{PREFIX}_scheduler_lease_live", "1 while a host holds a live scheduler lease, else 0.")
    holder = GaugeMetricFamily(f"{PREFIX}_scheduler_lease_holder_info",
                               "The process that holds the live scheduler lease (value 1).", labels=["host", "pid"])
    lease = fleet.lease
    if lease is not None:
        epoch.add_metric([], lease.epoch)
        expires.add_metric([], round(lease.expires_in, 3))
    if fleet.error is None:
        live.add_metric([], 1.0 if fleet.leader is not None else 0.0)
    if fleet.leader is not None:
        holder.add_metric([fleet.leader.host or "", "" if fleet.leader.pid is None else str(fleet.leader.pid)], 1.0)
    yield from (epoch, expires, live, holder)


def _alerts(alerts: AlertsRead) -> Iterator[Metric]:
    """The outbox: notifications ended by channel and outcome, pending ones, the oldest one's age, alerts firing."""
    sent = CounterMetricFamily(f"{PREFIX}_alerts_sent", "Alert notifications ended, by channel (its id, as /status "
                               "shows it) and outcome (sent, failed for good).", labels=["channel", "outcome"])
    pending = GaugeMetricFamily(f"{PREFIX}_alerts_pending", "Alert notifications not yet sent (retries included).")
    oldest = GaugeMetricFamily(f"{PREFIX}_alerts_oldest_pending_age_seconds",
                               "Age of the oldest notification not yet sent (0 when none is).")
    firing = GaugeMetricFamily(f"{PREFIX}_alerts_firing", "Subjects whose alert is firing, by kind.", labels=["kind"])
    summary = alerts.summary  # None when no channel is configured, or the store could not be read (never fails a scrape)
    if summary is not None:
        for (channel, outcome), count in sorted(summary.counts.items()):
            sent.add_metric([channel, outcome], count)
        pending.add_metric([], summary.pending)
        oldest.add_metric([], round(summary.oldest_pending_age or 0.0, 3))
        kinds: dict[str, int] = {}
        for state in alerts.states.values():
            kinds[state.kind] = kinds.get(state.kind, 0) + int(state.firing)
        for kind, count in sorted(kinds.items()):
            firing.add_metric([kind], count)
    yield from (sent, pending, oldest, firing)


def _processes() -> Iterator[Metric]:
    rss = GaugeMetricFamily(f"{PREFIX}_process_resident_memory_bytes", "Resident memory.", labels=["pid", "role"])
    cpu = CounterMetricFamily(f"{PREFIX}_process_cpu_seconds", "User and system CPU time.", labels=["pid", "role"])
    threads = GaugeMetricFamily(f"{PREFIX}_process_threads", "Threads.", labels=["pid", "role"])
    fds = GaugeMetricFamily(f"{PREFIX}_process_open_fds", "Open file descriptors.", labels=["pid", "role"])
    for process, role in _service_processes():
        try:
            with process.oneshot():
                labels = [str(process.pid), role]
                rss.add_metric(labels, process.memory_info().rss)
                times = process.cpu_times()
                cpu.add_metric(labels, times.user + times.system)
                threads.add_metric(labels, process.num_threads())
                fds.add_metric(labels, process.num_fds())
        except psutil.Error:
            continue  # it exited while we looked
    yield from (rss, cpu, threads, fds)


def _service_processes() -> list[tuple[psutil.Process, str]]:
    """The gunicorn master and its workers, or this process alone outside gunicorn."""
    me = psutil.Process()
    if not os.environ.get(UNDER_GUNICORN):
        return [(me, "standalone")]
    master = psutil.Process(os.getppid())
    return [(master, "master")] + [(child, "worker") for child in master.children()]
