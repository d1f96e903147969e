"""/status built from the shared store in-process: reused per-job pieces stay true as jobs run and time passes."""

from __future__ import annotations

import time

from tests.support.servers import wait_until
from worker_service.state.records import JobDefinition


def publish(store, now):
    store.publish_jobs([JobDefinition("a", "A", "interval[0:01:00]", now + 60, 60, 1, "default", False, True, 60.0)])
    store.beat(1, "host", "running", "UTC", now)


def test_job_entries_follow_new_runs_and_the_clock(make_app):
    app = make_app(STATUS_CACHE_TTL=0, JOB_FAILURE_THRESHOLD=2)
    store, client = app.extensions["store"], app.test_client()
    now = time.time()
    publish(store, now)
    store.record_run("a", "success", now - 5, 0.1)
    first = client.get("/status").json["metrics"]
    assert first["jobs_analysis"]["job_health"]["a"]["status"] == "healthy"
    ago = first["jobs_analysis"]["job_health"]["a"]["last_execution"]["time_ago_seconds"]
    assert 5 <= ago < 6

    later = wait_until(lambda: (m := client.get("/status").json["metrics"])["jobs_analysis"]["job_health"]["a"]
                       ["last_execution"]["time_ago_seconds"] > ago + 0.05 and m, timeout=2, what="the clock to move")
    assert later["scheduled_jobs"][0]["success_count"] == 1

    for _ in range(2):
        store.record_run("a", "error", time.time(), 0.3, "ValueError", "bad row")
    after = client.get("/status").json["metrics"]
    health = after["jobs_analysis"]["job_health"]["a"]
    assert (health["status"], health["error_count"], health["consecutive_failures"]) == ("unhealthy", 2, 2)
    assert after["scheduled_jobs"][0]["last_error"]["type"] == "ValueError"
    assert after["jobs_analysis"]["error_rates"] == {"a": round(200 / 3, 2)}
    assert after["scheduled_jobs"][0]["max_execution_time"] == 0.3


def test_an_overdue_job_is_unhealthy_and_a_pending_one_is_pending(make_app):
    app = make_app(STATUS_CACHE_TTL=0, JOB_OVERDUE_GRACE=10)
    store = app.extensions["store"]
    now = time.time()
    store.publish_jobs([
        JobDefinition("late", "Late", "interval[0:01:00]", now - 30, 1, 1, "default", False, True, 60.0),
        JobDefinition("new", "New", "interval[0:01:00]", now + 30, 1, 1, "default", False, False, 60.0),
    ])
    store.beat(1, "host", "running", "UTC", now)
    body = app.test_client().get("/status").json
    health = body["metrics"]["jobs_analysis"]["job_health"]
    assert health["late"]["status"] == "unhealthy" and "overdue" in health["late"]["reason"]
    assert health["new"]["status"] == "pending"
    assert body["components"]["scheduler"] == "degraded"
