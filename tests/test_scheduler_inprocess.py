"""The scheduler service and state store in-process: one-off jobs, bounded history, a failed start."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from tests.support.servers import wait_until
from worker_service.scheduler.election import FileLockElection
from worker_service.scheduler.job_health import JobState, judge
from worker_service.scheduler.jobs_file import parse_jobs
from worker_service.scheduler.service import SchedulerService
from worker_service.state import SqliteStateStore, StoreUnavailable


@pytest.fixture
def store(tmp_path):
    return SqliteStateStore(str(tmp_path / "state.sqlite3"), history_size=5)


def one_off(runs_file, at: dt.datetime) -> str:
    return f"""
[jobs.once]
name = "Once"
func = "tests.support.sample_jobs:append_pid"
trigger = "date"
run_date = "{at.isoformat()}"
critical = true
misfire_grace_time = 30
kwargs = {{ path = "{runs_file}" }}
"""


def test_a_one_off_job_is_finished_not_overdue_and_never_runs_again_after_a_restart(tmp_path, store):
    runs = tmp_path / "runs.txt"
    specs = parse_jobs(one_off(runs, dt.datetime.now(dt.UTC) + dt.timedelta(seconds=0.5)))
    first = SchedulerService(specs, store, "UTC", heartbeat_interval=0.2)
    first.start()
    try:
        wait_until(lambda: runs.exists() and store.jobs()[0].success_count == 1, timeout=5, what="the one run")
        wait_until(lambda: store.definition("once").next_run_time is None, timeout=3, what="it to be published done")
    finally:
        first.shutdown(wait=True)
    record = store.jobs()[0]
    assert judge(record, time.time() + 3600, failure_threshold=3, overdue_grace=1).state is JobState.HEALTHY

    second = SchedulerService(parse_jobs(one_off(runs, specs[0].trigger.run_date)), store, "UTC", 0.2)
    second.start()
    try:
        assert second.scheduler.get_job("once") is None
        assert [d.id for d in second.definitions()] == ["once"]  # still listed, as finished
    finally:
        second.shutdown(wait=True)
    assert len(runs.read_text().splitlines()) == 1


def test_history_is_bounded_for_every_job(store):
    for _ in range(100):
        for job in ("a", "b", "c"):
            store.record_run(job, "success", time.time(), 0.01)
    for job in ("a", "b", "c"):
        assert len(store.runs(job, limit=1000)) <= 5 + 16
    rows = store._connection().raw.execute("SELECT job_id, count(*) FROM job_runs GROUP BY job_id").fetchall()
    assert all(count <= 5 + 16 for _, count in rows)


class FailingOnce:
    """A store whose first publish fails, as an unwritable disk would."""

    def __init__(self, store):
        self._store, self.failures = store, 1

    def publish_jobs(self, definitions):
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        return self._store.publish_jobs(definitions)

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_a_scheduler_that_fails_to_start_is_shut_down_and_retried(tmp_path, store, monkeypatch):
    from worker_service.scheduler import leadership

    monkeypatch.setattr(leadership, "RETRY_FIRST", 0.2)
    runs = tmp_path / "runs.txt"
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f'[jobs.t]\nfunc = "tests.support.sample_jobs:append_pid"\ntrigger = "interval"\nseconds = 1\n'
                    f'kwargs = {{ path = "{runs}" }}\n')
    settings = {"WORKER_STATE_DIR": str(tmp_path), "WORKER_JOBS_FILE": str(jobs), "SCHEDULER_TIMEZONE": "UTC",
                "SCHEDULER_HEARTBEAT_INTERVAL": 0.5}
    flaky = FailingOnce(store)
    lead = leadership.SchedulerLeadership(settings, flaky, FileLockElection(str(tmp_path / "scheduler.lock")))
    lead.stand_by()
    try:
        wait_until(lambda: lead.is_leader, timeout=5, what="the second attempt to lead")
        assert flaky.failures == 0
        wait_until(lambda: runs.exists(), timeout=5, what="a run")
    finally:
        lead.stop(wait=True)


def test_the_scheduler_keeps_beating_as_stopping_while_a_running_job_finishes(tmp_path, store):
    import threading

    from common.helpers.health import Status
    from worker_service.health.scheduler_check import SchedulerCheck

    # Stale after 3 intervals (0.9 s): one beat late by up to 0.6 s on a loaded machine still reads fresh.
    interval = 0.3
    window = 4 * interval  # longer than the 3 intervals a heartbeat that stopped at shutdown would take to go stale
    marks = tmp_path / "marks.txt"
    specs = parse_jobs(f'[jobs.long]\nfunc = "tests.support.sample_jobs:slow"\ntrigger = "interval"\nseconds = 1\n'
                       f'kwargs = {{ seconds = 3, path = "{marks}" }}\n')
    service = SchedulerService(specs, store, "UTC", heartbeat_interval=interval)
    check = SchedulerCheck(store, {"SCHEDULER_HEARTBEAT_INTERVAL": interval, "JOB_FAILURE_THRESHOLD": 3,
                                   "JOB_OVERDUE_GRACE": 60})
    service.start()
    wait_until(lambda: marks.exists() and "start" in marks.read_text(), timeout=5, what="a run in progress")
    stopper = threading.Thread(target=service.shutdown, args=(True,))
    stopper.start()
    # The job still runs for over 2 seconds: more than the window, itself more than 3 heartbeat intervals.
    wait_until(lambda: store.scheduler().state == "stopping", timeout=2, what="the stopping heartbeat")
    time_of_stopping = time.monotonic()
    while stopper.is_alive() and time.monotonic() - time_of_stopping < window:
        assert check.run("scheduler").status is Status.AVAILABLE
        time.sleep(0.05)  # sampling the component while the job finishes, not waiting for it
    sampled_for = time.monotonic() - time_of_stopping
    # A job that ended first would leave a heartbeat that stopped at shutdown no time to go stale: no proof.
    assert sampled_for >= window, f"the job ended {sampled_for:.2f} s into the sampling: nothing was proven"
    stopper.join(timeout=5)
    assert "end" in marks.read_text()
    result = check.run("scheduler")
    assert result.status is Status.UNAVAILABLE and "stopped" in result.reason


def _record(store, job_id):
    return next(r for r in store.jobs() if r.id == job_id)


def test_a_critical_job_running_past_its_max_runtime_is_unhealthy_and_degrades_the_scheduler(tmp_path, store):
    from common.helpers.health import Status
    from worker_service.health.scheduler_check import SchedulerCheck

    marks = tmp_path / "marks.txt"
    specs = parse_jobs(f'[jobs.hung]\nfunc = "tests.support.sample_jobs:slow"\ntrigger = "interval"\nseconds = 0.3\n'
                       f'critical = true\nmax_runtime = 0.5\nkwargs = {{ seconds = 3, path = "{marks}" }}\n')
    service = SchedulerService(specs, store, "UTC", heartbeat_interval=0.2)
    settings = {"SCHEDULER_HEARTBEAT_INTERVAL": 0.2, "JOB_FAILURE_THRESHOLD": 3, "JOB_OVERDUE_GRACE": 60}
    service.start()
    try:
        wait_until(lambda: _record(store, "hung").running_count == 1, timeout=5, what="the run shown as running")
        record = _record(store, "hung")
        assert record.definition.max_runtime == 0.5 and record.running_since <= time.time()
        verdict = wait_until(lambda: (v := judge(_record(store, "hung"), time.time(), 3, 60)).state
                             is JobState.UNHEALTHY and v, timeout=5, what="running too long")
        assert verdict.reason.startswith("running too long: for ") and verdict.reason.endswith("over max_runtime 0.5 s")
        result = SchedulerCheck(store, settings).run("scheduler")
        assert result.status is Status.DEGRADED and "running too long" in result.reason
        # The skipped runs while it hangs are named as what they are.
        wait_until(lambda: _record(store, "hung").max_instances_count >= 1, timeout=5, what="a max_instances skip")
        assert _record(store, "hung").last_problem == "max_instances"
    finally:
        service.shutdown(wait=False)


def test_the_default_max_runtime_comes_from_the_trigger():
    specs = parse_jobs('[jobs.a]\nfunc = "tests.support.sample_jobs:noop"\ntrigger = "interval"\nminutes = 30\n'
                       '[jobs.b]\nfunc = "tests.support.sample_jobs:noop"\ntrigger = "interval"\nseconds = 5\n'
                       '[jobs.c]\nfunc = "tests.support.sample_jobs:noop"\ntrigger = "cron"\nhour = "*/2"\nminute = 0\n'
                       '[jobs.d]\nfunc = "tests.support.sample_jobs:noop"\ntrigger = "date"\nrun_date = "2030-01-01"\n'
                       '[jobs.e]\nfunc = "tests.support.sample_jobs:noop"\ntrigger = "interval"\nseconds = 5\n'
                       'max_runtime = 2.5\n')
    assert [spec.effective_max_runtime for spec in specs] == [1800.0, 60.0, 7200.0, 3600.0, 2.5]


@pytest.mark.parametrize("func, error_type, expected", [
    ("raise_unprintable", "_Unprintable", "<unprintable _Unprintable>"),
    ("raise_huge", "RuntimeError", "password=*** xxxx"),
])
def test_a_job_error_is_recorded_however_its_message_behaves(tmp_path, store, func, error_type, expected):
    specs = parse_jobs(f'[jobs.bad]\nfunc = "tests.support.sample_jobs:{func}"\ntrigger = "interval"\nseconds = 0.2\n')
    service = SchedulerService(specs, store, "UTC", heartbeat_interval=0.2)
    service.start()
    try:
        wait_until(lambda: _record(store, "bad").error_count >= 1, timeout=5, what="the failed run recorded")
    finally:
        service.shutdown(wait=False)
    record = _record(store, "bad")
    assert record.last_error_type == error_type
    assert record.last_error_message.startswith(expected) and len(record.last_error_message) <= 300
    assert "canary-huge-secret" not in record.last_error_message


def test_the_leader_publishes_its_job_list_again_when_the_store_file_is_deleted(tmp_path):
    import os

    store = SqliteStateStore(str(tmp_path / "state.sqlite3"))
    specs = parse_jobs('[jobs.t]\nfunc = "tests.support.sample_jobs:noop"\ntrigger = "interval"\nseconds = 60\n')
    service = SchedulerService(specs, store, "UTC", heartbeat_interval=0.1)
    service.start()
    try:
        assert [r.id for r in store.jobs()] == ["t"]
        os.unlink(tmp_path / "state.sqlite3")
        wait_until(lambda: [r.id for r in store.jobs()] == ["t"], timeout=3, what="the job list published again")
        assert store.scheduler().state == "running"
    finally:
        service.shutdown(wait=False)


def test_a_leader_being_killed_keeps_its_lock_and_its_running_job_counts_as_a_crash(tmp_path, store):
    """gunicorn kills a worker that stopped answering (worker_abort, then stop(wait=False)): its job may freeze it.

    The run must count as a crash (so crash hold and quarantine apply), not as killed at a graceful stop; and the
    lock stays held until the process is gone, since the job's thread still runs.
    """
    from worker_service.scheduler import leadership

    marks = tmp_path / "marks.txt"
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(f'[jobs.frozen]\nfunc = "tests.support.sample_jobs:slow"\ntrigger = "interval"\nseconds = 0.2\n'
                    f'kwargs = {{ seconds = 2, path = "{marks}" }}\n')
    settings = {"WORKER_STATE_DIR": str(tmp_path), "WORKER_JOBS_FILE": str(jobs), "SCHEDULER_TIMEZONE": "UTC",
                "SCHEDULER_HEARTBEAT_INTERVAL": 0.2}
    election = FileLockElection(str(tmp_path / "scheduler.lock"))
    lead = leadership.SchedulerLeadership(settings, store, election)
    lead.stand_by()
    wait_until(lambda: marks.exists() and "start" in marks.read_text(), timeout=5, what="the job running")
    lead.stop(wait=False)
    assert election.held, "the lock was freed while the job's thread still ran"
    orphans = store.settle_orphans("the-next-leader")
    assert [o.outcome for o in orphans] == ["crashed"]
    election.release()


def test_a_new_leader_records_a_run_whose_leader_may_still_be_alive_as_lost_and_holds_back_only_crashes(
        tmp_path, store, caplog):
    """Fleet: a lease ran out, but its host may only be cut off or frozen: another host's run, or a run of a process
    of this host that still exists, is lost (no crash hold); only a run whose process is gone (or a zombie) crashed."""
    import logging
    import socket
    import subprocess
    import sys

    from worker_service.host_identity import host_id, machine

    here = host_id()  # this running service; another service on a host of the same name is another host
    earlier = f"{socket.gethostname()}#{machine()}.earlier0000"  # an earlier master of this same machine
    twin = f"{socket.gethostname()}#another-machine.twin00000"  # a clone with the same host name
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait(timeout=10)  # reaped: its pid is free
    gone_pid = finished.pid
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # never waited for until the end: a zombie
    wait_until(lambda: zombie_status(zombie.pid), timeout=5, what="the zombie")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    jobs = {"far": ("host-b", 4242), "frozen": (here, alive.pid), "dead": (here, zombie.pid), "gone": (here, gone_pid),
            "old": (None, alive.pid), "restarted": (earlier, gone_pid), "twin": (twin, gone_pid)}
    try:
        for job_id, (host, pid) in jobs.items():
            run_id = store.record_submitted(job_id, "earlier-leader", pid, time.time() - 5, None, host=host)
            store.record_started(run_id, time.time() - 4)
        specs = parse_jobs("".join(f'[jobs.{job_id}]\nfunc = "tests.support.sample_jobs:noop"\ntrigger = "interval"\n'
                                   "seconds = 3600\n" for job_id in jobs))
        service = SchedulerService(specs, store, "UTC", heartbeat_interval=0.2, fleet=True)
        with caplog.at_level(logging.INFO, logger="worker_service.scheduler.service"):
            service.start()
            service.shutdown(wait=True)
    finally:
        alive.kill()
        alive.wait(timeout=5)
        zombie.wait(timeout=5)
    outcomes = {job_id: store.runs(job_id)[0].outcome for job_id in jobs}
    assert outcomes == {"far": "lost", "frozen": "lost", "dead": "crashed", "gone": "crashed", "old": "crashed",
                        "restarted": "crashed", "twin": "lost"}
    assert store.runs("far")[0].error_message == ("its leader lost the scheduler while it ran on host host-b"
                                                  " (pid 4242); it may have finished there")
    crashes = {job_id: store.crash_state(job_id).consecutive for job_id in jobs}
    assert crashes == {"far": 0, "frozen": 0, "dead": 1, "gone": 1, "old": 1, "restarted": 1, "twin": 0}
    held = {job_id: _record(store, job_id).held_until is not None for job_id in jobs}
    assert held == {"far": False, "frozen": False, "dead": True, "gone": True, "old": True, "restarted": True,
                    "twin": False}
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "recorded as lost" in r.getMessage()]
    assert warned == ["job far: its leader lost the scheduler while it ran on host host-b (pid 4242); recorded as "
                      "lost, not as a crash: it may have finished there",
                      f"job frozen: its leader lost the scheduler while it ran on host {socket.gethostname()} (pid {alive.pid});"
                      " recorded as lost, not as a crash: it may have finished there",
                      f"job twin: its leader lost the scheduler while it ran on host {socket.gethostname()} (pid {gone_pid});"
                      " recorded as lost, not as a crash: it may have finished there"]


def zombie_status(pid: int) -> bool:
    import psutil

    return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


class FencedOutAtStop:
    """The store after another host took the lease: the stop's two writes are refused."""

    def __init__(self, store):
        self._store = store

    def mark_stopping(self, session):
        from worker_service.state import FencedOut

        raise FencedOut("state database: fenced out: epoch 3 no longer holds the scheduler lease (epoch 4 does)")

    clear_heartbeat = mark_stopping

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_a_stop_after_another_host_took_over_notes_the_refused_writes_without_an_error(store, caplog):
    import logging

    specs = parse_jobs('[jobs.t]\nfunc = "tests.support.sample_jobs:noop"\ntrigger = "interval"\nseconds = 3600\n')
    service = SchedulerService(specs, store, "UTC", heartbeat_interval=0.2)
    service.start()
    service.store = FencedOutAtStop(store)
    with caplog.at_level(logging.INFO, logger="worker_service.scheduler.service"):
        service.shutdown(wait=True)
    refused = [(r.levelno, r.getMessage()) for r in caplog.records if "another host leads now" in r.getMessage()]
    assert [level for level, _ in refused] == [logging.INFO, logging.INFO]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- slots no process ran: folded into one run (coalesce), each counted as missed ---------------------------------
def _job(text: str):
    from apscheduler.job import Job

    spec = parse_jobs(text)[0]
    job = Job.__new__(Job)  # just what folded_slots reads: the trigger, coalesce and the first due slot
    job.trigger, job.coalesce = spec.trigger, spec.coalesce
    return job


def test_the_slots_folded_into_one_run_are_every_slot_before_it_since_the_first_due_one():
    from worker_service.scheduler.missed_slots import folded_slots, refused_slots

    first = dt.datetime(2026, 12, 7, 12, 0, 3, tzinfo=dt.UTC)
    interval = _job('[jobs.a]\nfunc = "os:getpid"\ntrigger = "interval"\nseconds = 1\n')
    interval.next_run_time = first
    gap = folded_slots(interval, first + dt.timedelta(seconds=6))
    assert (gap.count, gap.first, gap.last) == (6, first.timestamp(), first.timestamp() + 5)
    assert gap.recent == tuple(first.timestamp() + n for n in range(6))
    assert folded_slots(interval, first) is None  # on time: nothing folded

    cron = _job('[jobs.a]\nfunc = "os:getpid"\ntrigger = "cron"\nminute = "*/15"\n')
    cron.next_run_time = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
    gap = folded_slots(cron, dt.datetime(2026, 12, 7, 13, 0, tzinfo=dt.UTC))
    assert (gap.count, gap.last) == (4, dt.datetime(2026, 12, 7, 12, 45, tzinfo=dt.UTC).timestamp())

    # Slots the failing store refused in a row start the gap, unless the plan started again after them (a resume).
    refused = refused_slots(interval, None, first)
    interval.next_run_time = first + dt.timedelta(seconds=1)
    refused = refused_slots(interval, refused, first + dt.timedelta(seconds=1))
    assert refused == (first, first + dt.timedelta(seconds=1))
    interval.next_run_time = first + dt.timedelta(seconds=2)
    assert folded_slots(interval, first + dt.timedelta(seconds=4), refused).count == 4
    interval.next_run_time = first + dt.timedelta(seconds=2.5)  # re-planned from a resume: a new plan
    assert folded_slots(interval, first + dt.timedelta(seconds=4.5), refused).count == 2

    apart = _job('[jobs.a]\nfunc = "os:getpid"\ntrigger = "interval"\nseconds = 1\ncoalesce = false\n')
    apart.next_run_time = first
    assert folded_slots(apart, first + dt.timedelta(seconds=6)) is None  # each slot runs (or is missed) on its own


def test_a_leader_that_resumes_late_counts_the_slots_it_folded_into_its_first_run(tmp_path, store):
    runs = tmp_path / "runs.txt"
    text = (f'[jobs.tick]\nfunc = "tests.support.sample_jobs:append_pid"\ntrigger = "interval"\nseconds = 1\n'
            f'misfire_grace_time = 30\nkwargs = {{ path = "{runs}" }}\n')
    first = SchedulerService(parse_jobs(text), store, "UTC", heartbeat_interval=0.2)
    first.start()
    wait_until(lambda: store.jobs() and store.jobs()[0].success_count >= 1, timeout=5, what="a first run")
    first.shutdown(wait=True)
    published = store.definition("tick").next_run_time
    store.update_next_run("tick", published - 4, False)  # as if the last leader stopped 4 slots ago

    second = SchedulerService(parse_jobs(text), store, "UTC", heartbeat_interval=0.2)
    second.start()
    try:
        wait_until(lambda: store.jobs()[0].missed_count > 0, timeout=5, what="the folded slots")
    finally:
        second.shutdown(wait=True)
    record = store.jobs()[0]
    assert record.missed_count == record.gap_missed >= 3 and record.gap_from == published - 4
    assert judge(record, time.time(), 3, 60).reason.endswith("while no scheduler ran")


class Outage:
    """A store that refuses to record runs while ``down`` (heartbeats still get through), counting the refusals."""

    def __init__(self, store):
        self._store, self.down, self.refused = store, False, 0

    def record_submitted(self, *args, **kwargs):
        if self.down:
            self.refused += 1
            raise StoreUnavailable("state store: disk full")
        return self._store.record_submitted(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_every_slot_a_failing_store_refused_is_counted_as_missed_with_the_next_recorded_run(tmp_path, store):
    """Each refused slot never runs (the service pauses, then resumes at the next heartbeat): all count as missed."""
    from tests.support.runs import read_scheduled

    runs = tmp_path / "runs.txt"
    text = (f'[jobs.tick]\nfunc = "tests.support.sample_jobs:append_pid"\ntrigger = "interval"\nseconds = 1\n'
            f'misfire_grace_time = 30\nkwargs = {{ path = "{runs}" }}\n')
    outage = Outage(store)
    service = SchedulerService(parse_jobs(text), outage, "UTC", heartbeat_interval=0.2)
    service.start()
    try:
        wait_until(lambda: len(read_scheduled(runs)) >= 2, timeout=5, what="runs before the outage")
        outage.down = True
        wait_until(lambda: outage.refused >= 3, timeout=10, what="3 slots refused")
        outage.down = False
        wait_until(lambda: store.jobs()[0].missed_count > 0, timeout=5, what="the refused slots counted")
        wait_until(lambda: read_scheduled(runs)[-1][2] > store.jobs()[0].gap_to, timeout=5, what="the next run")
    finally:
        service.shutdown(wait=True)
    slots = sorted(slot for _, _, slot in read_scheduled(runs))
    before, after = max((a, b) for a, b in zip(slots, slots[1:], strict=False) if b - a > 1.5)
    record = store.jobs()[0]
    assert record.missed_count == round(after - before) - 1 >= 3
    assert (record.gap_from, record.gap_to) == (pytest.approx(before + 1), pytest.approx(after - 1))
