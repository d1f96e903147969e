"""GET /metrics: valid Prometheus text (promtool), from the shared store, the same from every worker."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess

import pytest

from tests.support.runs import jobs_file, pid_job
from tests.support.servers import wait_until


def scrape(server, **headers):
    status, response_headers, body = server.get("/metrics", headers={"Connection": "close", **headers})
    return status, response_headers, body


def job_series(text: str) -> dict[str, float]:
    """Series whose value doesn't move between two scrapes a moment apart (job counters, component states)."""
    stable = {}
    for line in text.splitlines():
        if line.startswith(("worker_service_job_runs_total", "worker_service_component_up", "worker_service_job_health")):
            name, value = line.rsplit(" ", 1)
            stable[name] = float(value)
    return stable


@pytest.fixture
def metrics_server(tmp_path, gunicorn):
    runs = tmp_path / "runs.txt"
    path = jobs_file(tmp_path / "jobs.toml", pid_job(runs))
    server = gunicorn(WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="3", SCHEDULER_HEARTBEAT_INTERVAL="1",
                      STATUS_TOKEN="metrics-token-1", JOB_FAILURE_THRESHOLD="3")
    wait_until(lambda: runs.exists() and len(runs.read_text().splitlines()) >= 2, timeout=10, what="two runs")
    return server


def test_metrics_pass_promtool_and_hold_every_promised_family(metrics_server):
    status, headers, body = scrape(metrics_server, Authorization="Bearer metrics-token-1")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    for family in ("worker_service_job_runs_total", "worker_service_job_duration_seconds_count",
                   "worker_service_job_duration_seconds_sum", "worker_service_job_last_success_timestamp_seconds",
                   "worker_service_component_up", "worker_service_scheduler_leader_info",
                   "worker_service_process_resident_memory_bytes"):
        assert re.search(rf"^{family}\{{", body, re.M), family
    assert re.search(r'^worker_service_job_runs_total\{job="tick",outcome="success"\} [1-9]', body, re.M)
    assert len(re.findall(r'role="worker"', body)) >= 3 * 4  # every worker's process metrics
    # One host: its threads (JOB_EXECUTOR_THREADS) and the runs it holds, under its host name; no claims on one host.
    host = re.escape(socket.gethostname())
    assert re.search(rf'^worker_service_host_threads\{{host="{host}"\}} 10\.0$', body, re.M)
    held = float(re.search(rf'^worker_service_host_runs_in_flight\{{host="{host}"\}} (\S+)$', body, re.M).group(1))
    assert held in (0.0, 1.0)  # the tick job, if caught running
    assert "worker_service_claims_total" not in body and "worker_service_runs_lost_total" not in body
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    done = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_metrics_need_the_status_token(metrics_server):
    assert scrape(metrics_server)[0] == 401
    assert scrape(metrics_server, Authorization="Bearer wrong-token-1")[0] == 401


def test_every_worker_exports_the_same_job_and_component_series(metrics_server):
    leaders, views = set(), []
    for _ in range(30):
        _, _, body = scrape(metrics_server, Authorization="Bearer metrics-token-1")
        leaders.add(re.search(r'worker_service_scheduler_leader_info\{hostname="[^"]*",pid="(\d+)"\}', body).group(1))
        views.append(body)
    assert len(leaders) == 1
    # Counters move while we scrape; compare two scrapes taken back to back until one pair agrees.
    def agree():
        a = job_series(scrape(metrics_server, Authorization="Bearer metrics-token-1")[2])
        b = job_series(scrape(metrics_server, Authorization="Bearer metrics-token-1")[2])
        return a == b and a
    assert wait_until(agree, timeout=10, what="two consecutive scrapes from different workers to agree")


def runs_of(text: str, job: str) -> float:
    return float(re.search(rf'^worker_service_job_runs_total\{{job="{job}",outcome="success"\}} (\S+)$', text, re.M).group(1))


def test_metrics_are_reused_for_the_status_ttl_and_never_served_older(make_app):
    import time

    from worker_service.state.records import JobDefinition

    app = make_app(STATUS_CACHE_TTL=0.3)
    store, client = app.extensions["store"], app.test_client()
    now = time.time()
    store.publish_jobs([JobDefinition("a", "A", "interval[0:01:00]", now + 60, 60, 1, "default", False, True, 60.0)])
    store.record_run("a", "success", now, 0.1)
    assert runs_of(client.get("/metrics").get_data(as_text=True), "a") == 1
    store.record_run("a", "success", time.time(), 0.1)
    built = time.monotonic()
    text = client.get("/metrics").get_data(as_text=True)
    if time.monotonic() - built < 0.3:
        assert runs_of(text, "a") == 1  # reused inside the TTL: scrapes in a burst cost one build
    until = built + 0.3 + 0.05
    wait_until(lambda: time.monotonic() >= until, timeout=2, interval=0.01, what="the TTL to pass")
    assert runs_of(client.get("/metrics").get_data(as_text=True), "a") == 2


def test_job_series_are_written_exactly_as_prometheus_client_writes_them():
    from prometheus_client import generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

    from worker_service.metrics.job_series import JobSeries
    from worker_service.scheduler.job_health import JobHealth, JobState
    from worker_service.state.records import JobDefinition, JobRecord

    records = [
        JobRecord(JobDefinition('we"ird\\id\n', "W", "cron", 1700000000.5, None, 1, "default", False, True),
                  success_count=3, error_count=1, duration_sum=0.25, last_success_at=1699999999.125,
                  consecutive_failures=1),
        JobRecord(JobDefinition("plain", "P", "interval", None, 60, 1, "default", True, False)),
    ]
    verdicts = [JobHealth(JobState.WARNING, "x"), JobHealth(JobState.PAUSED, "paused")]
    runs = CounterMetricFamily("worker_service_job_runs", "Job runs by outcome.", labels=["job", "outcome"])
    duration = SummaryMetricFamily("worker_service_job_duration_seconds", "Duration of finished runs.", labels=["job"])
    last = GaugeMetricFamily("worker_service_job_last_success_timestamp_seconds",
                             "Unix time of the job's last successful run.", labels=["job"])
    upcoming = GaugeMetricFamily("worker_service_job_next_run_timestamp_seconds", "Unix time of the next run.",
                                 labels=["job"])
    failing = GaugeMetricFamily("worker_service_job_consecutive_failures", "Failures since the last success.",
                                labels=["job"])
    health = GaugeMetricFamily("worker_service_job_health", "1 for the job's current health state, 0 for the others.",
                               labels=["job", "state", "critical"])
    for record, verdict in zip(records, verdicts, strict=True):
        for outcome, value in (("success", record.success_count), ("error", record.error_count),
                               ("missed", record.missed_count), ("max_instances", record.max_instances_count)):
            runs.add_metric([record.id, outcome], value)
        duration.add_metric([record.id], count_value=record.runs, sum_value=record.duration_sum)
        if record.last_success_at is not None:
            last.add_metric([record.id], record.last_success_at)
        if record.definition.next_run_time is not None:
            upcoming.add_metric([record.id], record.definition.next_run_time)
        failing.add_metric([record.id], record.consecutive_failures)
        for state in JobState:
            health.add_metric([record.id, state.value, str(record.definition.critical).lower()],
                              1.0 if verdict.state is state else 0.0)

    class Families:
        def collect(self):
            return iter([runs, duration, last, upcoming, failing, health])

    series = JobSeries()
    assert series.render(records, verdicts) == generate_latest(Families()).decode()
    assert series.render(records, verdicts) == generate_latest(Families()).decode()  # memoized: the same text
