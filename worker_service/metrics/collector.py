"""A Prometheus collector that reads the shared store, so every worker exports the same series.

No prometheus_client multiprocess mode is needed: nothing is counted in a
worker's memory. Job counters come from the state store the scheduler's leader
writes; component statuses from the health engine; process figures for the
master and every worker, labelled by pid and role.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from common.helpers.health import Status

from ..health.report import build_health_report
from ..scheduler.job_health import JobState, judge
from ..status.analysis import scheduler_status
from ..status.uptime import service_started_at

PREFIX = "worker_service"


class ServiceCollector(Collector):
    """Collects job, component, scheduler and process metrics on each scrape."""

    def __init__(self, app: Any) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        settings, extensions = self._app.config, self._app.extensions
        now = time.time()
        yield from self._components(build_health_report(extensions["health"], settings["HEALTH_CRITICAL_COMPONENTS"]))
        yield from self._scheduler(extensions["store"].scheduler(), settings, now)
        yield from self._jobs(extensions["store"].jobs(), settings, now)
        yield from self._processes()
        uptime = GaugeMetricFamily(f"{PREFIX}_uptime_seconds", "Seconds since the service (gunicorn master) started.")
        uptime.add_metric([], max(now - service_started_at(), 0.0))
        yield uptime

    def _components(self, report: Any) -> Iterator[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}_component_up", "1 if the component is usable (available or degraded), else 0.",
                               labels=["component", "backend"])
        status = GaugeMetricFamily(f"{PREFIX}_component_status",
                                   "1 for the component's current status word, 0 for the others.",
                                   labels=["component", "status"])
        latency = GaugeMetricFamily(f"{PREFIX}_component_check_latency_seconds", "Duration of the last check.",
                                    labels=["component"])
        for name, result in report.results.items():
            up.add_metric([name, result.backend], 0.0 if result.status is Status.UNAVAILABLE else 1.0)
            for word in Status:
                status.add_metric([name, word.value], 1.0 if result.status is word else 0.0)
            latency.add_metric([name], result.latency or 0.0)
        overall = GaugeMetricFamily(f"{PREFIX}_status", "1 for the service's overall status word, 0 for the others.",
                                    labels=["status"])
        for word in Status:
            overall.add_metric([word.value], 1.0 if report.status is word else 0.0)
        yield from (up, status, latency, overall)

    def _scheduler(self, leader: Any, settings: Any, now: float) -> Iterator[Metric]:
        state = scheduler_status(leader, settings, now)
        running = GaugeMetricFamily(f"{PREFIX}_scheduler_running", "1 while a scheduler beats on this host.")
        running.add_metric([], 1.0 if state["running"] else 0.0)
        leader_info = GaugeMetricFamily(f"{PREFIX}_scheduler_leader_info",
                                        "The process that runs the scheduler (value 1).", labels=["pid", "hostname"])
        if state["pid"] is not None and state["state"] != "stopped":
            leader_info.add_metric([str(state["pid"]), state["hostname"] or ""], 1.0)
        age = GaugeMetricFamily(f"{PREFIX}_scheduler_heartbeat_age_seconds", "Seconds since the last heartbeat.")
        if state["heartbeat_age_seconds"] is not None:
            age.add_metric([], state["heartbeat_age_seconds"])
        yield from (running, leader_info, age)

    def _jobs(self, records: list, settings: Any, now: float) -> Iterator[Metric]:
        runs = CounterMetricFamily(f"{PREFIX}_job_runs", "Job runs by outcome.", labels=["job", "outcome"])
        duration = SummaryMetricFamily(f"{PREFIX}_job_duration_seconds", "Duration of finished runs.", labels=["job"])
        last_success = GaugeMetricFamily(f"{PREFIX}_job_last_success_timestamp_seconds",
                                         "Unix time of the job's last successful run.", labels=["job"])
        next_run = GaugeMetricFamily(f"{PREFIX}_job_next_run_timestamp_seconds", "Unix time of the next run.",
                                     labels=["job"])
        failures = GaugeMetricFamily(f"{PREFIX}_job_consecutive_failures", "Failures since the last success.",
                                     labels=["job"])
        health = GaugeMetricFamily(f"{PREFIX}_job_health", "1 for the job's current health state, 0 for the others.",
                                   labels=["job", "state", "critical"])
        for record in records:
            job = record.id
            for outcome, value in (("success", record.success_count), ("error", record.error_count),
                                   ("missed", record.missed_count), ("max_instances", record.max_instances_count)):
                runs.add_metric([job, outcome], value)
            duration.add_metric([job], count_value=record.runs, sum_value=record.duration_sum)
            if record.last_success_at is not None:
                last_success.add_metric([job], record.last_success_at)
            if record.definition.next_run_time is not None:
                next_run.add_metric([job], record.definition.next_run_time)
            failures.add_metric([job], record.consecutive_failures)
            verdict = judge(record, now, settings["JOB_FAILURE_THRESHOLD"], settings["JOB_OVERDUE_GRACE"])
            critical = "true" if record.definition.critical else "false"
            for state in JobState:
                health.add_metric([job, state.value, critical], 1.0 if verdict.state is state else 0.0)
        yield from (runs, duration, last_success, next_run, failures, health)

    def _processes(self) -> Iterator[Metric]:
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
    from ..scheduler import UNDER_GUNICORN

    me = psutil.Process()
    if not os.environ.get(UNDER_GUNICORN):
        return [(me, "standalone")]
    master = psutil.Process(os.getppid())
    return [(master, "master")] + [(child, "worker") for child in master.children()]
