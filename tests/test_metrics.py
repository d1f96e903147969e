"""GET /metrics: valid Prometheus text (promtool), from the shared store, the same from every worker."""

from __future__ import annotations

import re
import shutil
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
