"""The leader's monitor on a real SQLite store, one look at a time: recoveries, repeats, rules and their thresholds."""

from __future__ import annotations

import json
import time
from pathlib import Path

from worker_service.alerts import AlertSettings, build_channels
from worker_service.alerts.monitor import AlertMonitor, judge_with
from worker_service.alerts.rules import JobAlerting, lease_observation
from worker_service.scheduler.job_health import judge
from worker_service.state import SqliteStateStore
from worker_service.state.records import JobDefinition, LeaseRecord

HOOK = "http://127.0.0.1:9/hook"


def store_with(tmp_path: Path, *job_ids: str) -> SqliteStateStore:
    store = SqliteStateStore(str(tmp_path / "state.sqlite3"))
    store.publish_jobs([JobDefinition(id=job_id, name=job_id, trigger="interval[0:01:00]",
                                      next_run_time=time.time() + 60, misfire_grace_time=30, max_instances=1,
                                      executor="default", paused=False, critical=False, interval_seconds=60.0,
                                      max_runtime=60.0) for job_id in job_ids])
    return store


def monitor(store: SqliteStateStore, options: dict | None = None, **settings) -> AlertMonitor:
    chosen = AlertSettings(webhook_urls=(HOOK,), disk_percent=0, memory_percent=0, failure_threshold=2,
                           **settings)
    return AlertMonitor(chosen, store, build_channels(chosen), judge_with(judge, 60.0), options or {}, "test-host")


def sent(store: SqliteStateStore, key: str) -> list[dict]:
    return [json.loads(d.payload) for d in reversed(store.deliveries(100)) if d.key == key]


def run(store: SqliteStateStore, job_id: str, outcome: str) -> None:
    store.record_run(job_id, outcome, time.time(), 0.01, "RuntimeError" if outcome == "error" else None)


def test_a_job_resolves_only_after_its_recoveries_and_a_repeat_comes_while_it_fires(tmp_path):
    store = store_with(tmp_path, "a")
    watcher = monitor(store, {"a": JobAlerting(after_recoveries=2)}, repeat=0.2, error_rate_percent=0)
    run(store, "a", "error")
    run(store, "a", "error")
    assert watcher.look(time.time()) == 1 and [p["status"] for p in sent(store, "job:a")] == ["firing"]
    assert watcher.look(time.time()) == 0  # no change, no repeat yet
    time.sleep(0.25)
    assert watcher.look(time.time()) == 1
    assert [p["repeat"] for p in sent(store, "job:a")] == [False, True]
    run(store, "a", "success")
    assert watcher.look(time.time()) == 0  # one good run of the two asked for
    run(store, "a", "success")
    assert watcher.look(time.time()) == 1
    assert [p["status"] for p in sent(store, "job:a")] == ["firing", "firing", "resolved"]


def test_alert_false_and_alert_after_failures_are_per_job(tmp_path):
    store = store_with(tmp_path, "quiet", "patient")
    watcher = monitor(store, {"quiet": JobAlerting(alert=False), "patient": JobAlerting(after_failures=4)},
                      error_rate_percent=0)
    for _ in range(3):
        run(store, "quiet", "error")
        run(store, "patient", "error")
    assert watcher.look(time.time()) == 0  # quiet never alerts; patient is at 3 of its 4
    run(store, "patient", "error")
    assert watcher.look(time.time()) == 1 and sent(store, "job:patient")[0]["reason"].startswith("4 consecutive")
    assert sent(store, "job:quiet") == []


def test_the_error_rate_rule_warns_of_intermittent_failures_before_the_job_is_unhealthy(tmp_path):
    store = store_with(tmp_path, "shaky")
    watcher = monitor(store)
    for outcome in ("success", "error", "success", "error", "success", "error"):
        run(store, "shaky", outcome)  # never two failures in a row: never unhealthy at a threshold of 2
    assert watcher.look(time.time()) == 1
    [warning] = sent(store, "metric:error_rate:shaky")
    assert warning["rule"] == "error_rate" and warning["reason"].startswith("3 of its last 6 runs failed (50 %")
    assert sent(store, "job:shaky") == []
    for _ in range(4):
        run(store, "shaky", "success")
    assert watcher.look(time.time()) == 1 and sent(store, "metric:error_rate:shaky")[-1]["status"] == "resolved"


def test_a_crash_short_of_quarantine_warns(tmp_path):
    store = store_with(tmp_path, "poison")
    watcher = monitor(store, crash_limit=3, error_rate_percent=0)
    store.record_run("poison", "crashed", time.time(), None)
    assert watcher.look(time.time()) == 0
    store.record_run("poison", "crashed", time.time(), None)
    watcher.look(time.time())
    [warning] = sent(store, "metric:crashes:poison")
    assert warning["status"] == "firing" and "quarantined at 3" in warning["reason"]


def test_a_new_leaders_monitor_sends_nothing_already_recorded(tmp_path):
    store = store_with(tmp_path, "a")
    run(store, "a", "error")
    run(store, "a", "error")
    assert monitor(store, error_rate_percent=0).look(time.time()) == 1
    successor = monitor(SqliteStateStore(str(tmp_path / "state.sqlite3")), error_rate_percent=0)
    assert successor.look(time.time()) == 0 and len(sent(store, "job:a")) == 1  # the store says it fires already


def test_the_lease_rule_fires_under_a_third_of_the_ttl_to_spare():
    settings = AlertSettings(webhook_urls=(HOOK,), fleet=True, lease_ttl=9.0)

    def lease(expires_in: float) -> LeaseRecord:
        return LeaseRecord(epoch=1, holder_host="h", holder_pid=1, holder_session="s", acquired_at=0.0,
                           renewed_at=0.0, expires_at=0.0, expires_in=expires_in)

    assert not lease_observation(settings, lease(6.5)).firing  # just before a renewal, on time
    assert lease_observation(settings, lease(2.9)).firing  # a renewal late by a whole period
    assert lease_observation(settings, None) is None
    assert lease_observation(AlertSettings(webhook_urls=(HOOK,)), lease(1.0)) is None  # one host: no lease


def test_alert_on_warning_fires_at_the_first_failure(tmp_path):
    store = store_with(tmp_path, "a")
    watcher = monitor(store, alert_on="warning", error_rate_percent=0)
    run(store, "a", "error")
    assert watcher.look(time.time()) == 1
    [firing] = sent(store, "job:a")
    assert firing["state"] == "warning" and firing["status"] == "firing"


def test_pausing_a_firing_job_resolves_it_at_once(tmp_path):
    store = store_with(tmp_path, "a")
    watcher = monitor(store, {"a": JobAlerting(after_recoveries=3)}, error_rate_percent=0)
    run(store, "a", "error")
    run(store, "a", "error")
    assert watcher.look(time.time()) == 1
    store.update_next_run("a", None, True)  # an operator paused it: it stops paging
    assert watcher.look(time.time()) == 1
    assert [(p["status"], p["state"]) for p in sent(store, "job:a")] == [("firing", "unhealthy"), ("resolved", "paused")]


def test_a_firing_job_removed_from_the_jobs_file_or_silenced_resolves(tmp_path):
    store = store_with(tmp_path, "gone", "hushed", "kept")
    watcher = monitor(store, error_rate_percent=0)
    for job_id in ("gone", "hushed", "kept"):
        run(store, job_id, "error")
        run(store, job_id, "error")
    assert watcher.look(time.time()) == 3
    store.publish_jobs([record.definition for record in store.jobs() if record.definition.id != "gone"])
    silenced = monitor(store, {"hushed": JobAlerting(alert=False)}, error_rate_percent=0)  # the reload's new options
    assert silenced.look(time.time()) == 2
    [_, gone] = sent(store, "job:gone")
    [_, hushed] = sent(store, "job:hushed")
    assert (gone["status"], gone["state"], gone["reason"]) == ("resolved", "removed",
                                                               "the job is no longer in the jobs file")
    assert (hushed["status"], hushed["state"]) == ("resolved", "not alerting")
    assert [p["status"] for p in sent(store, "job:kept")] == ["firing"]
    assert silenced.look(time.time()) == 0  # resolved once
