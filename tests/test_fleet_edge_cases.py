"""Edge cases of a fleet that shares the work, each once a way a run was lost from the records, or a job blocked.

Found by review, each against a real store: a leader's store recovery must not forget the runs its own host
claimed; a settle must not take a run a host claimed after the settle read it; a stopping host's runs are marked
stopping (killed at the graceful timeout, not crashed); on one host a reused pid is not the run's process; a job
without a misfire grace time waits for a host; a lost run of a job pinned to the leader is not retried, and a
retry at a new leader's start leaves the job's next run time alone.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
from apscheduler.triggers.interval import IntervalTrigger

from tests.support import pg
from tests.support.servers import wait_until
from worker_service.host_identity import host_id
from worker_service.scheduler.host_runner import HostRunner
from worker_service.scheduler.jobs_file import JobSpec
from worker_service.scheduler.lease import LeaseTiming
from worker_service.scheduler.service import SchedulerService
from worker_service.state.pg_store import PostgresStateStore
from worker_service.state.records import OrphanedRun
from worker_service.state.sqlite_store import SqliteStateStore

TTL = 5.0


@pytest.fixture
def store():
    with pg.scratch_schema() as name:
        made = PostgresStateStore(pg.FAST_URL, name, 20, timeout=5.0)
        made.migrate()
        yield made
        made.close()


def plan(store, job_id="job", slot=100.0, **options):
    return store.record_submitted(job_id, "leader-session", 1, slot, slot + 60, run_on="any", **options)


def test_a_leaders_store_recovery_keeps_the_runs_its_own_host_claimed(store):
    """SchedulerService._store_recovered calls forget_runs_except(self.session, tracker.live_runs()); in a fleet
    self.session IS the HostRunner's session (leadership.py passes session=self._runner.session)."""
    runner_session = "s-leader-process"
    store.renew_host(runner_session, "host-a", 1, 4, TTL)
    run_id = plan(store, max_instances=1)
    (claimed,) = store.claim_runs(runner_session, "host-a", 1, 5, [], time.time())  # running on the leader's host
    # a store blip, then the leader's recovery, with no leader-placed run of its own live:
    store.forget_runs_except(runner_session, [])
    assert plan(store, slot=160.0, max_instances=1) is None, "max_instances no longer sees the claimed run going on"
    assert store.record_run("job", "success", 110.0, 1.0, run_id=run_id, owner=runner_session), \
        "the claimed run's end is not counted"


def test_a_settle_leaves_a_planned_run_a_host_claimed_after_the_settle_read_it(store):
    store.renew_host("s-a", "host-a", 1, 4, TTL)
    run_id = plan(store)
    claimed = []

    def judge(orphan):  # the judge runs between the orphans SELECT and the per-orphan DELETE
        claimed.extend(store.claim_runs("s-a", "host-a", 1, 5, [], time.time()))  # host a claims it meanwhile
        return False  # the leader's stale snapshot: planned long ago, missed

    store.settle_orphans("leader-session", lost=judge)
    assert [run.run_id for run in claimed] == [run_id]  # host a runs it now...
    assert store.record_run("job", "success", 110.0, 1.0, run_id=run_id, owner="s-a"), \
        "...yet it was recorded missed, its live row is gone, and its end is not counted"


def _blocking_spec(release: threading.Event) -> JobSpec:
    return JobSpec(id="long", name="long", func_ref="x:y", func=lambda: release.wait(30), trigger_kind="interval",
                   trigger=IntervalTrigger(seconds=3600), critical=False, paused=False, misfire_grace_time=60,
                   max_instances=1, coalesce=True, executor="default", args=(), kwargs={})


def test_a_claimed_run_going_on_a_host_at_a_graceful_stop_is_marked_stopping(store):
    """Killed at the graceful timeout, it is then settled 'crashed' (crash hold, quarantine), not 'killed'."""
    release = threading.Event()
    runner = HostRunner(store, [_blocking_spec(release)], 2, LeaseTiming(ttl=TTL, timeout=1.0), "host-a", "s-a",
                        poll=0.05).start()
    try:
        plan(store, "long")
        wait_until(lambda: runner.running() == 1, timeout=5, interval=0.02, what="the run claimed and going")
        runner.stop_claiming()  # what SchedulerLeadership.stop does on a host that does not lead
        (row,) = store.runs_in_flight()
        assert row.stopping, "not marked stopping: a kill at the graceful timeout is recorded as a crash"
    finally:
        release.set()
        runner.leave(runner.drain(5))


def test_on_one_host_a_run_of_a_process_of_another_boot_is_settled_even_if_its_pid_is_in_use(tmp_path: Path):
    """A container restart (same SQLite volume, deterministic pids): the old worker's pid is now a live process."""
    sqlite = SqliteStateStore(str(tmp_path / "state.db"), 20)
    previous_boot = "myhost#0badc0de-4026531836.0123456789ab"  # another boot / pid namespace: cannot be alive
    assert sqlite.record_submitted("job", "old-session", os.getpid(), 100.0, 160.0, host=previous_boot,
                                   max_instances=1) is not None
    service = SchedulerService([], sqlite, "UTC", heartbeat_interval=5.0)  # one host: no fleet, no runner
    sqlite.settle_orphans("new-session", lost=service._judge)
    assert sqlite.record_submitted("job", "new-session", os.getpid(), 160.0, 220.0, host=host_id(),
                                   max_instances=1) is not None, "the job is held back by a row no process holds"


def test_a_planned_run_of_a_job_without_misfire_grace_waits_for_a_host(store):
    """misfire_grace_time = None means 'run however late' (APScheduler); the leader settles it missed after ~TTL."""
    spec = _blocking_spec(threading.Event())
    spec = JobSpec(**{**spec.__dict__, "misfire_grace_time": None})
    service = _service_stub(store, [spec])
    orphan = OrphanedRun("long", 0, time.time() - TTL - 2, None, False, None, session="")
    assert service._judge_planned(orphan) is None, "a no-limit job's waiting run is settled missed"
    ages_ago = OrphanedRun("long", 0, time.time() - 7200, None, False, None, session="", held_since=time.time() - 7200)
    assert service._judge_planned(ages_ago) is False  # no live host took it for two hours: missed


def _service_stub(store, specs, host="host-a"):
    """A fleet's scheduler service, not started (as at a new leader's start, before its jobs are added)."""
    from types import SimpleNamespace

    runner = SimpleNamespace(wake=lambda: None, forget_later=lambda run_id: None)
    service = SchedulerService(specs, store, "UTC", heartbeat_interval=1.0, fleet=True, runner=runner,
                               sweep_every=TTL / 3)
    service._live_hosts = [host]
    return service


def test_a_lost_run_of_a_job_pinned_to_the_leader_is_not_retried(store):
    spec = JobSpec(**{**_blocking_spec(threading.Event()).__dict__, "id": "lead", "run_on": "leader",
                      "retry_lost": True})
    service = _service_stub(store, [spec])
    service._retry(OrphanedRun("lead", 21, 100.0, 100.0, False, "host-b", lost=True, run_id=7, session="s-b"))
    runner = HostRunner(store, [spec], 2, LeaseTiming(ttl=TTL, timeout=1.0), "host-a", "s-a", poll=0.05)
    store.renew_host("s-a", "host-a", 1, 2, TTL)
    runner._deadline = float("inf")
    runner._claim_once()
    assert store.runs_in_flight() == []  # nothing planned: its next slot runs on the leader as usual
    assert store.record_submitted("lead", "leader-session", 1, 200.0, 260.0, host="host-a",
                                  max_instances=1) is not None


def test_a_retry_leaves_the_jobs_published_next_run_time_alone(store):
    from worker_service.state.records import JobDefinition
    spec = JobSpec(**{**_blocking_spec(threading.Event()).__dict__, "retry_lost": True})
    store.publish_jobs([JobDefinition("long", "long", str(spec.trigger), 5000.0, 60, 1, "default", False, False)])
    service = _service_stub(store, [spec])
    service._retry(OrphanedRun("long", 21, 100.0, 100.0, False, "host-b", lost=True, run_id=7, session="s-b"))
    assert store.definition("long").next_run_time == 5000.0, \
        "the retry wrote next_run_time NULL: _resume_time then re-anchors the interval job from now"
