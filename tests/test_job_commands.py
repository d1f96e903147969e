"""Operators' commands applied by the leader, in-process: a real SchedulerService on a real SQLite store.

Commands are queued with ``submit_command`` (as any worker's endpoint does)
and read back with ``command``; every wait is bounded polling.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.support import control_jobs
from tests.support.servers import wait_until
from worker_service.control import submission
from worker_service.scheduler import commands
from worker_service.scheduler.jobs_file import parse_jobs
from worker_service.scheduler.service import SchedulerService
from worker_service.scheduler.tracking import current_run
from worker_service.state import SqliteStateStore, StoreUnavailable
from worker_service.state.records import Command

HOUR = 3600  # an interval that never comes during a test: only run-nows run the job


@pytest.fixture
def key() -> Iterator[str]:
    """A name for this test's runs in tests.support.control_jobs; its held runs are let go at the end."""
    name = uuid.uuid4().hex
    yield name
    control_jobs.release(name)


@pytest.fixture
def store(tmp_path) -> SqliteStateStore:
    return SqliteStateStore(str(tmp_path / "state.sqlite3"), history_size=20)


@pytest.fixture
def lead(store) -> Iterator[Callable[..., SchedulerService]]:
    """Start a leader on the test's store with a jobs file's text: ``lead(toml, store=...)``; all stop at the end."""
    services: list[SchedulerService] = []

    def start(toml: str, on: SqliteStateStore | None = None) -> SchedulerService:
        service = SchedulerService(parse_jobs(toml), on or store, "UTC", heartbeat_interval=0.2)
        service.start()
        services.append(service)
        return service

    yield start
    for service in services:
        service.shutdown(wait=True)


def job(key: str, func: str = "held", seconds: int = HOUR, **options: object) -> str:
    lines = "".join(f"{name} = {str(value).lower() if isinstance(value, bool) else value}\n"
                    for name, value in options.items())
    return f"""
[jobs.sync]
name = "Sync accounts"
func = "tests.support.control_jobs:{func}"
trigger = "interval"
seconds = {seconds}
kwargs = {{ key = "{key}" }}
{lines}"""


def finished(store: SqliteStateStore, command_id: int, timeout: float = 5.0) -> Command:
    return wait_until(lambda: (c := store.command(command_id)) and c.state != "pending" and c, timeout=timeout,
                      what=f"command {command_id} to be applied")


def ask(store: SqliteStateStore, action: str, by: str = "alice", job_id: str = "sync") -> Command:
    return finished(store, store.submit_command(job_id, action, by).id)


# -- run now -------------------------------------------------------------------------
def test_run_now_runs_in_the_executor_as_a_manual_run_and_leaves_the_schedule_alone(store, lead, key):
    service = lead(job(key, func="note"))
    planned = service.scheduler.get_job("sync").next_run_time
    published = store.definition("sync").next_run_time

    command = ask(store, "run")
    assert (command.state, command.status, command.outcome) == ("done", 200, f"started (run {command.run_id})")
    assert command.run_id is not None and command.applied_by.endswith(f"/{os.getpid()}")
    (seen,) = wait_until(lambda: control_jobs.seen(key), timeout=5, what="the run")
    assert seen.run.job_id == "sync" and seen.run.run_id == command.run_id
    assert (seen.run.trigger, seen.run.requested_by, seen.run.command_id) == ("manual", "alice", command.id)
    assert seen.thread not in ("scheduler-commands", threading.current_thread().name)  # the executor's pool
    (run,) = wait_until(lambda: store.runs("sync"), timeout=5, what="the run's history row")
    assert (run.outcome, run.trigger, run.requested_by, run.command_id) == ("success", "manual", "alice", command.id)
    assert run.started_at is not None and run.started_at <= run.at
    assert service.scheduler.get_job("sync").next_run_time == planned  # not re-anchored
    assert store.definition("sync").next_run_time == published
    assert current_run() is None  # outside a job's code


def test_run_now_is_409_while_the_job_runs_at_max_instances_and_runs_again_once_it_finished(store, lead, key):
    lead(job(key))
    first = ask(store, "run")
    wait_until(lambda: control_jobs.running(key) == 1, timeout=5, what="the first run to be in the job's code")
    refused = ask(store, "run", by="bob")
    assert (refused.state, refused.status, refused.outcome, refused.run_id) == (
        "failed", 409, "already running at max_instances (1)", None)

    control_jobs.release(key)
    wait_until(lambda: [r.command_id for r in store.runs("sync")] == [first.id], timeout=5, what="the first run")
    again = ask(store, "run", by="bob")
    assert again.status == 200
    wait_until(lambda: len(store.runs("sync")) == 2, timeout=5, what="the second run")
    assert [r.requested_by for r in store.runs("sync")] == ["bob", "alice"]
    assert store.jobs()[0].max_instances_count == 0  # a refused run-now is no skipped scheduled run


def test_a_failed_manual_run_keeps_its_redacted_error_in_the_history(store, lead):
    lead("""
[jobs.sync]
name = "Sync accounts"
func = "tests.support.sample_jobs:always_fail"
trigger = "interval"
seconds = 3600
""")
    command = ask(store, "run", by="carol")
    (run,) = wait_until(lambda: store.runs("sync"), timeout=5, what="the failed run")
    assert (run.outcome, run.error_type, run.trigger, run.command_id) == ("error", "RuntimeError", "manual", command.id)
    assert run.error_message.startswith("upstream refused") and "canary-job-secret" not in run.error_message


def test_a_paused_job_runs_now_and_stays_paused(store, lead, key):
    service = lead(job(key, func="note", paused=True))
    assert ask(store, "run").status == 200
    wait_until(lambda: store.runs("sync"), timeout=5, what="the run")
    assert service.scheduler.get_job("sync").next_run_time is None
    assert store.definition("sync").paused is True


def test_many_workers_asking_at_once_get_one_run_per_200_and_never_more_than_max_instances_at_once(
        store, lead, key, tmp_path):
    lead(job(key, max_instances=2))
    workers = [SqliteStateStore(str(tmp_path / "state.sqlite3")) for _ in range(4)]  # one connection per worker
    start = threading.Barrier(len(workers))
    ids: list[int] = []

    def operator(worker: SqliteStateStore, n: int) -> None:
        start.wait(timeout=5)
        for _ in range(2):
            ids.append(worker.submit_command("sync", "run", f"operator-{n}").id)

    threads = [threading.Thread(target=operator, args=(worker, n)) for n, worker in enumerate(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    commands = [finished(store, command_id) for command_id in ids]
    statuses = sorted(c.status for c in commands)
    assert statuses == [200, 200] + [409] * 6  # every run is held: two run, the rest are refused
    # 200 means submitted to the executor; wait until both are in the job's code before letting them go.
    wait_until(lambda: control_jobs.running(key) == 2, timeout=5, what="both runs in the job's code")
    control_jobs.release(key)
    wait_until(lambda: len(store.runs("sync")) == 2, timeout=5, what="the two runs")
    assert control_jobs.peak(key) == 2 and len(control_jobs.seen(key)) == 2
    assert sorted(r.command_id for r in store.runs("sync")) == sorted(c.id for c in commands if c.status == 200)


# -- pause and resume -----------------------------------------------------------------
def test_pause_and_resume_are_published_at_once_and_outlive_the_leader(store, lead, key):
    first = lead(job(key, func="note"))
    paused = ask(store, "pause", by="alice")
    assert (paused.status, paused.outcome) == (200, "paused")
    assert first.scheduler.get_job("sync").next_run_time is None
    wait_until(lambda: store.definition("sync").paused, timeout=1, what="the pause to be published")
    assert store.definition("sync").next_run_time is None
    assert ask(store, "pause", by="bob").outcome == "already paused"
    assert (store.operator_pauses()["sync"].paused, store.operator_pauses()["sync"].by) == (True, "alice")
    first.shutdown(wait=True)

    second = lead(job(key, func="note"))  # the jobs file says paused = false: the operator's pause wins
    assert second.scheduler.get_job("sync").next_run_time is None and store.definition("sync").paused is True
    resumed = ask(store, "resume", by="carol")
    assert resumed.status == 200 and resumed.outcome.startswith("resumed: next run at ")
    assert second.scheduler.get_job("sync").next_run_time is not None
    wait_until(lambda: store.definition("sync").paused is False, timeout=1, what="the resume to be published")
    assert ask(store, "resume").outcome == "already running"
    second.shutdown(wait=True)

    third = lead(job(key, func="note", paused=True))  # the file says paused = true: the operator's resume wins
    assert third.scheduler.get_job("sync").next_run_time is not None
    assert store.operator_pauses()["sync"].by == "carol"


def test_a_quarantined_job_can_be_paused_but_neither_run_nor_resumed(store, lead, key):
    spec = parse_jobs(job(key, func="note"))[0]
    store.set_crash_hold("sync", None, quarantine_key=spec.fingerprint)
    lead(job(key, func="note"))
    for action in ("run", "resume"):
        refused = ask(store, action)
        assert (refused.status, refused.outcome.split(":")[0]) == (409, "quarantined")
    assert ask(store, "pause").outcome == "already paused (and quarantined)"
    assert control_jobs.seen(key) == [] and store.runs("sync") == []


# -- what is never applied, and what is applied only once ----------------------------------
def test_an_unknown_job_is_404_and_an_unknown_action_400(store, lead, key):
    lead(job(key, func="note"))
    assert (ask(store, "run", job_id="nope").status, ask(store, "run", job_id="nope").outcome) == (404, "no such job")
    assert ask(store, "stop").status == 400


def test_a_command_no_scheduler_took_within_30_s_expires_and_never_runs(store, lead, key):
    stale = store.submit_command("sync", "run", "alice").id
    fresh = store.submit_command("sync", "run", "bob").id
    with sqlite3.connect(store.path) as db:  # asked 31 s ago, by the store's clock
        db.execute("UPDATE job_commands SET requested_at = requested_at - 31 WHERE id = ?", (stale,))
    lead(job(key, func="note"))
    expired = finished(store, stale)
    assert (expired.state, expired.status, expired.outcome) == ("failed", 503,
                                                                "expired: no scheduler took it within 30 s")
    assert finished(store, fresh).status == 200
    wait_until(lambda: store.runs("sync"), timeout=5, what="the fresh run")
    assert [s.run.requested_by for s in control_jobs.seen(key)] == ["bob"]


class SkewedClock:
    """The ``time`` module of a host whose wall clock is ``offset`` seconds off (its monotonic clock and sleep are real)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def time(self) -> float:
        return time.time() + self.offset

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


def test_a_command_asked_on_a_host_whose_clock_is_70_s_behind_the_leaders_is_applied_not_expired(
        store, lead, key, monkeypatch):
    """The store stamps a command and measures its age: neither the receiving host's clock nor the leader's counts."""
    monkeypatch.setattr(submission, "time", SkewedClock(-70.0))  # the worker that takes the POST
    monkeypatch.setattr(commands, "time", SkewedClock(+5.0))  # the leader's host, a little ahead of the store's
    lead(job(key, func="note"))
    control = submission.JobControl(store, {"SCHEDULER_HEARTBEAT_INTERVAL": 0.2, "JOB_FAILURE_THRESHOLD": 3,
                                            "JOB_OVERDUE_GRACE": 60}, waiters=1, draining=lambda: False)
    command = control.submit("sync", "run", "alice", wait=5.0)
    assert (command.state, command.status, command.outcome) == ("done", 200, f"started (run {command.run_id})")
    assert abs(command.requested_at - time.time()) < 5.0  # the store's clock, not the receiving host's
    wait_until(lambda: control_jobs.seen(key), timeout=5, what="the run")


class FinishFailsOnce(SqliteStateStore):
    """The real store, whose first ``finish_command`` fails as a locked file would."""

    failures = 1

    def finish_command(self, *args, **kwargs) -> None:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("state store: locked by another process for over 2 s")
        super().finish_command(*args, **kwargs)


def test_a_command_whose_finish_fails_is_applied_and_logged_once_and_finished_later(tmp_path, lead, key, caplog):
    flaky = FinishFailsOnce(str(tmp_path / "flaky.sqlite3"))
    caplog.set_level(logging.INFO, logger="worker_service.scheduler.commands")
    lead(job(key, func="note"), on=flaky)
    command = ask(flaky, "run")
    assert (command.status, flaky.failures) == (200, 0)
    wait_until(lambda: flaky.runs("sync"), timeout=5, what="the run")
    assert len(control_jobs.seen(key)) == 1 and len(flaky.runs("sync")) == 1
    applied = [r for r in caplog.records if "asked by alice" in r.getMessage()]
    assert len(applied) == 1 and f"(command {command.id}): 200 started" in applied[0].getMessage()


def test_a_new_leader_finishes_a_run_now_an_earlier_leader_started_without_running_it_again(store, lead, key):
    command_id = store.submit_command("sync", "run", "alice").id
    run_id = store.record_submitted("sync", "dead-leader", 99, time.time(), None, trigger="manual",
                                    requested_by="alice", command_id=command_id)
    store.record_started(run_id, time.time())  # its worker died here, before the command was finished
    lead(job(key, func="note"))
    command = finished(store, command_id)
    assert (command.status, command.outcome) == (200, "already started by an earlier scheduler (crashed)")
    assert control_jobs.seen(key) == []


def test_a_command_is_applied_within_a_poll_of_being_asked(store, lead, key):
    lead(job(key, func="note"))
    took = []
    for n in range(10):
        asked = time.monotonic()
        ask(store, "pause" if n % 2 == 0 else "resume")
        took.append(time.monotonic() - asked)
    assert max(took) < 1.0 and statistics.median(took) < 0.5
