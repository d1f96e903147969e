"""/status built from the shared store in-process: reused per-job pieces stay true as jobs run and time passes."""

from __future__ import annotations

import dataclasses
import time

import pytest

from common.helpers.health import format_timestamp
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
    answered = time.time()
    assert first["jobs_analysis"]["job_health"]["a"]["status"] == "healthy"
    ago = first["jobs_analysis"]["job_health"]["a"]["last_execution"]["time_ago_seconds"]
    # From the run's end, in seconds: at least its 5 s, at most what had passed when /status answered (to the ms).
    assert 5 <= ago <= answered - (now - 5) + 0.001, (ago, answered - (now - 5))

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
    job = after["scheduled_jobs"][0]
    assert (job["avg_execution_time"], job["p95_execution_time"]) == (round(0.7 / 3, 6), 0.3)  # from the stats row
    assert after["jobs_analysis"]["p95_execution_times"] == {"a": 0.3}


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


def failures(store, job_id, count):
    for _ in range(count):
        store.record_run(job_id, "error", time.time(), 0.01, "RuntimeError", "boom")


def test_the_scheduler_reason_and_the_job_rows_come_from_one_read_of_the_store(make_app):
    # The health engine may reuse its scheduler result for a minute; /status must not.
    app = make_app(STATUS_CACHE_TTL=0, HEALTH_CACHE_TTL=60, JOB_FAILURE_THRESHOLD=2)
    store, client = app.extensions["store"], app.test_client()
    publish(store, time.time())
    failures(store, "a", 3)
    assert "3 consecutive failures" in client.get("/status").json["metrics"]["dependencies"]["scheduler"]["reason"]
    failures(store, "a", 2)
    body = client.get("/status").json
    scheduler = body["metrics"]["dependencies"]["scheduler"]
    health = body["metrics"]["jobs_analysis"]["job_health"]["a"]
    assert (health["consecutive_failures"], body["metrics"]["scheduled_jobs"][0]["error_count"]) == (5, 5)
    assert "a: 5 consecutive failures" in scheduler["reason"], scheduler
    assert scheduler["age_seconds"] < 0.5

    from worker_service.cli.status_table import render

    table = render(body, colour=False)
    assert "5 consecutive failures" in table and "5/5" in table and "3 consecutive" not in table


def test_every_dependency_carries_its_age_beside_checked_at(make_app):
    app = make_app(STATUS_CACHE_TTL=0, HEALTH_CACHE_TTL=2)
    publish(app.extensions["store"], time.time())
    dependencies = app.test_client().get("/status").json["metrics"]["dependencies"]
    assert set(dependencies) == {"cache", "database", "scheduler"}
    for name, detail in dependencies.items():
        assert {"status", "backend", "latency_seconds", "checked_at", "reason", "age_seconds"} <= set(detail), name
        assert 0 <= detail["age_seconds"] <= 2 + 2 * app.config["HEALTH_CHECK_TIMEOUT"], (name, detail)


def test_requests_that_arrive_during_a_rebuild_wait_for_it_instead_of_getting_the_old_report(make_app):
    import threading

    app = make_app(STATUS_CACHE_TTL=0.3)
    store = app.extensions["store"]
    now = time.time()
    store.publish_jobs([JobDefinition(f"j{i}", f"J{i}", "interval[0:01:00]", now + 60, 60, 1, "default", False, False,
                                      60.0) for i in range(300)])  # a build that takes a while
    store.beat(1, "host", "running", "UTC", now)
    store.record_run("j0", "success", now, 0.1)
    assert app.test_client().get("/status").json["metrics"]["scheduled_jobs"][0]["success_count"] == 1
    store.record_run("j0", "success", time.time(), 0.1)
    quiet_until = time.monotonic() + 0.3 + 0.05  # a quiet spell longer than STATUS_CACHE_TTL
    wait_until(lambda: time.monotonic() >= quiet_until, timeout=2, interval=0.01, what="the quiet spell")
    start, counts = threading.Barrier(4), []

    def request():
        client = app.test_client()
        start.wait()
        counts.append(client.get("/status").json["metrics"]["scheduled_jobs"][0]["success_count"])

    threads = [threading.Thread(target=request) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert counts == [2, 2, 2, 2]


def drop_tables(app, *tables):
    """A real fault of the state store: its tables vanish under the running app (reads raise)."""
    import sqlite3

    connection = sqlite3.connect(app.extensions["store"].path, timeout=5)
    for table in tables:
        connection.execute(f"DROP TABLE {table}")
    connection.commit()
    connection.close()


def test_status_answers_200_with_the_scheduler_unavailable_when_the_store_cannot_be_read(make_app):
    app = make_app(STATUS_CACHE_TTL=0, HEALTH_CACHE_TTL=0)
    publish(app.extensions["store"], time.time())
    client = app.test_client()
    assert client.get("/status").status_code == 200
    drop_tables(app, "jobs", "scheduler")
    started = time.monotonic()
    response = client.get("/status")
    assert response.status_code == 200 and time.monotonic() - started < 2
    body = response.json
    scheduler = body["metrics"]["dependencies"]["scheduler"]
    assert body["components"]["scheduler"] == "unavailable" and body["status"] == "unavailable"
    assert scheduler["reason"].startswith("state store: ") and "no such table" in scheduler["reason"], scheduler
    assert body["metrics"]["scheduler_status"]["state"] == "unknown"
    from worker_service.status.schemas import StatusSchema

    assert StatusSchema().validate(body) == {}


def test_metrics_answer_200_with_the_scheduler_unavailable_when_the_store_cannot_be_read(make_app):
    app = make_app(STATUS_CACHE_TTL=0, HEALTH_CACHE_TTL=0)
    publish(app.extensions["store"], time.time())
    client = app.test_client()
    assert client.get("/metrics").status_code == 200
    drop_tables(app, "jobs", "scheduler")
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    text = metrics.get_data(as_text=True)
    assert 'worker_service_component_status{component="scheduler",status="unavailable"} 1.0' in text
    assert "worker_service_scheduler_running 0.0" in text


def test_uptime_comes_from_the_monotonic_clock_when_the_master_recorded_it(make_app, monkeypatch):
    from worker_service.reporting.uptime import service_uptime

    # The wall clock says the master started 5,000 s ago (it jumped); the monotonic clock says 100 s.
    monkeypatch.setenv("WORKER_SERVICE_STARTED_AT", str(time.time() - 5000))
    monkeypatch.setenv("WORKER_SERVICE_STARTED_MONOTONIC", str(time.monotonic() - 100))
    assert 100 <= service_uptime() < 101
    app = make_app(STATUS_CACHE_TTL=0)
    assert 100 <= app.test_client().get("/status").json["metrics"]["uptime_seconds"] < 102
    monkeypatch.delenv("WORKER_SERVICE_STARTED_MONOTONIC")
    assert 5000 <= service_uptime() < 5001  # without it: the wall clock, as before


def test_the_snapshot_holds_the_heartbeat_jobs_and_quarantines_and_forwards_nothing_to_the_store(make_app):
    from worker_service.reporting.snapshot import take_snapshot
    from worker_service.scheduler.job_health import JobPolicy

    app = make_app()
    store = app.extensions["store"]
    publish(store, time.time())
    snapshot = take_snapshot(store, JobPolicy.from_settings(app.config))
    failures(store, "a", 1)  # after the snapshot: it does not see this run
    assert snapshot.leader.pid == 1 and snapshot.records[0].error_count == 0
    assert snapshot.critical == snapshot.records and snapshot.quarantined == ()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.records = ()  # type: ignore[misc]
    assert not hasattr(snapshot, "definition")  # a read it does not hold is no read at all


def test_a_failed_quarantine_read_costs_only_the_scheduler_verdict_not_the_job_rows(make_app, monkeypatch):
    from worker_service.state import StoreUnavailable

    app = make_app(STATUS_CACHE_TTL=0, HEALTH_CACHE_TTL=0)
    store = app.extensions["store"]
    publish(store, time.time())

    def locked() -> list[str]:
        raise StoreUnavailable("state store: database is locked")

    monkeypatch.setattr(store, "quarantined_jobs", locked)
    body = app.test_client().get("/status").json
    assert list(body["metrics"]["jobs_analysis"]["job_health"]) == ["a"]  # the jobs are still shown
    scheduler = body["metrics"]["dependencies"]["scheduler"]
    assert body["components"]["scheduler"] == "unavailable" and scheduler["reason"].endswith("database is locked")
    store.beat(1, "host", "paused", "UTC", time.time())  # who leads decides first: a paused leader is the answer
    body = app.test_client().get("/status").json
    assert body["components"]["scheduler"] == "degraded" and "paused" in body["metrics"]["dependencies"]["scheduler"]["reason"]


def test_on_one_host_hosts_is_made_from_the_heartbeat_and_running_lists_the_runs_of_its_session(make_app):
    app = make_app(STATUS_CACHE_TTL=0, JOB_EXECUTOR_THREADS=4)
    store, client = app.extensions["store"], app.test_client()
    now = time.time()
    store.publish_jobs([JobDefinition("a", "A", "interval[0:01:00]", now + 60, 60, 2, "default", False, True, 60.0)])
    assert client.get("/status").json["hosts"] == []  # no scheduler ever beat here: nobody to show

    store.beat(7, "host-one", "running", "UTC", now - 30, session="leader")
    run = store.record_submitted("a", "leader", 7, now - 2, now + 60, host="host-one#m1.i1")
    store.record_started(run, now - 1.5)
    gone = store.record_submitted("a", "gone", 99, now - 3, now + 60, host="host-one#m1.i0")  # an earlier leader's
    store.record_started(gone, now - 3)
    body = client.get("/status").json
    [host] = body["hosts"]
    assert host == {"host": "host-one", "id": "host-one", "pid": 7, "threads": 4, "claimed": 1, "free": 3,
                    "state": "active", "heartbeat_age_seconds": host["heartbeat_age_seconds"], "claims": None,
                    "claim_wait_avg_seconds": None, "claim_wait_max_seconds": None, "lost_runs": None}
    assert 0 <= host["heartbeat_age_seconds"] < 2
    # The orphan of the process that is gone is left out, as the job's running count leaves it out.
    assert body["running"] == [{"job_id": "a", "run_id": run, "host": "host-one", "pid": 7, "state": "running",
                                "scheduled_at": format_timestamp(now - 2), "started_at": format_timestamp(now - 1.5),
                                "trigger": "scheduled"}]
    assert body["metrics"]["scheduled_jobs"][0]["running"]["instances"] == 1

    text = client.get("/metrics").get_data(as_text=True)
    assert 'worker_service_host_runs_in_flight{host="host-one"} 1.0' in text
    assert 'worker_service_host_threads{host="host-one"} 4.0' in text
    assert "worker_service_claims_total" not in text and "worker_service_runs_lost_total" not in text  # fleet only

    from worker_service.cli.status_table import render

    table = render(body, colour=False).splitlines()
    assert table[table.index("HOST      PID  STATE   CLAIMED/THREADS  HEARTBEAT") + 1].startswith(
        "host-one  7    active  1/4              ")
    running = table.index(next(line for line in table if line.startswith("RUNNING")))
    assert table[running + 1].split()[:6] == ["a", str(run), "running", "host-one", "pid", "7"]

    store.mark_stopping("leader")  # a stop: the leader lets its run finish
    store.beat(7, "host-one", "stopping", "UTC", now - 30, session="leader")
    body = client.get("/status").json
    assert (body["hosts"][0]["state"], body["hosts"][0]["free"]) == ("stopping", 0)
    assert [r["state"] for r in body["running"]] == ["stopping"]


def test_a_failed_read_of_the_runs_in_flight_costs_only_hosts_and_running_not_the_jobs(make_app, monkeypatch):
    from worker_service.state import StoreUnavailable

    app = make_app(STATUS_CACHE_TTL=0, HEALTH_CACHE_TTL=0)
    store = app.extensions["store"]
    publish(store, time.time())

    def locked() -> list:
        raise StoreUnavailable("state store: database is locked")

    monkeypatch.setattr(store, "runs_in_flight", locked)
    body = app.test_client().get("/status").json
    assert list(body["metrics"]["jobs_analysis"]["job_health"]) == ["a"] and body["components"]["scheduler"] == "available"
    assert (body["hosts"], body["running"]) == ([], [])
