"""One JobPolicy judges every job, so /health, /status and /metrics give a job the same verdict."""

from __future__ import annotations

import time

import pytest

from worker_service.scheduler.job_health import JobPolicy, JobState, judge
from worker_service.state.records import JobDefinition, JobRecord, SchedulerRecord

NOW = 1_700_000_000.0


def definition(next_run: float | None) -> JobDefinition:
    return JobDefinition(id="a", name="A", trigger="interval[0:01:00]", next_run_time=next_run, misfire_grace_time=60,
                         max_instances=1, executor="default", paused=False, critical=True)


def record(failures: int = 0, next_run: float | None = NOW + 60) -> JobRecord:
    return JobRecord(definition(next_run), success_count=1, error_count=failures, consecutive_failures=failures,
                     last_outcome="error" if failures else "success", last_error_type="RuntimeError")


def test_the_policy_takes_its_threshold_and_grace_from_the_settings_and_judges_as_the_pure_function():
    policy = JobPolicy.from_settings({"JOB_FAILURE_THRESHOLD": 2, "JOB_OVERDUE_GRACE": 30.0, "OTHER": 1})
    assert policy == JobPolicy(failure_threshold=2, overdue_grace=30.0)
    for job in (record(), record(failures=1), record(failures=2), record(next_run=NOW - 31)):
        assert policy.judge(job, NOW) == judge(job, NOW, 2, 30.0)
    assert [v.state for v in policy.judge_all([record(failures=2), record(next_run=NOW - 29)], NOW)] == [
        JobState.UNHEALTHY, JobState.HEALTHY]


@pytest.mark.parametrize(("state", "heartbeat_at", "age", "fresh"), [
    ("running", NOW, 3.0, True),        # 3 intervals of 1 s: still fresh
    ("running", NOW, 3.01, False),      # a fourth missed: gone
    ("paused", NOW, 0.0, True),         # paused still beats
    ("stopped", NOW, 0.0, False),       # marked stopped: never fresh
    ("running", 0.0, 0.0, False),       # never written
])
def test_a_heartbeat_is_fresh_within_three_intervals_unless_stopped_or_never_written(state, heartbeat_at, age, fresh):
    leader = SchedulerRecord(pid=1, hostname="h", state=state, timezone="UTC", started_at=0.0,
                             heartbeat_at=heartbeat_at)
    assert leader.is_fresh(heartbeat_interval=1.0, age=age) is fresh


def test_health_status_and_metrics_agree_on_a_job_at_the_configured_threshold(make_app):
    app = make_app(STATUS_CACHE_TTL=0, HEALTH_CACHE_TTL=0, JOB_FAILURE_THRESHOLD=2)
    store, client = app.extensions["store"], app.test_client()
    now = time.time()
    store.publish_jobs([definition(now + 60)])
    store.beat(1, "host", "running", "UTC", now)
    for _ in range(2):
        store.record_run("a", "error", time.time(), 0.01, "RuntimeError", "boom")
    scheduler = app.extensions["health"].run(["scheduler"])["scheduler"]
    assert "a: 2 consecutive failures" in scheduler.reason
    assert client.get("/status").json["metrics"]["jobs_analysis"]["job_health"]["a"]["status"] == "unhealthy"
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'worker_service_job_health{critical="true",job="a",state="unhealthy"} 1.0' in metrics
