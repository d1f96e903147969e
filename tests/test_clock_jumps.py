"""Wall-clock jumps: detected against the monotonic clock, logged once, jobs re-planned, health honest.

The gunicorn tests shift the service's wall clock at run time through the
test-only hook in tests/support/clock_offset (libfaketime does not work with
Python 3.11's time.sleep). Their job records the monotonic clock, which a
wall-clock jump leaves alone, so run gaps are real seconds.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
from pathlib import Path

import pytest
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from common.helpers.health import Status
from tests.support.clock_offset import HOOK_DIR, OFFSET_FILE_VARIABLE
from tests.support.runs import read_runs
from tests.support.servers import wait_until
from worker_service.health.scheduler_check import SchedulerCheck
from worker_service.scheduler.clock_watch import JUMP_THRESHOLD, ClockWatch
from worker_service.scheduler.heartbeat import HeartbeatSightings, heartbeat_age, heartbeat_is_fresh
from worker_service.scheduler.replanning import ReplanningScheduler, replanned
from worker_service.state import SqliteStateStore
from worker_service.state.records import SchedulerRecord
from worker_service.state.setup import STATE_FILE

UTC = dt.UTC
JUMP_LOG = "wall clock jumped"


# -- ClockWatch ------------------------------------------------------------------------------------------------------
class FakeClocks:
    """A wall clock and a monotonic clock that tests move by hand."""

    def __init__(self) -> None:
        self.wall, self.mono = 1_000_000.0, 50.0

    def tick(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds

    def watch(self, **kwargs) -> ClockWatch:
        return ClockWatch(wall=lambda: self.wall, monotonic=lambda: self.mono, **kwargs)


def test_clock_watch_reports_nothing_while_both_clocks_advance_together():
    clocks = FakeClocks()
    watch = clocks.watch()
    assert watch.check() is None  # the first call only takes the baseline
    for _ in range(100):
        clocks.tick(1.0)
        clocks.wall += 0.0005  # NTP slewing: well under the threshold
        assert watch.check() is None


@pytest.mark.parametrize("jump", [-3600.0, 3600.0, -(JUMP_THRESHOLD + 0.5), JUMP_THRESHOLD + 0.5])
def test_clock_watch_reports_a_jump_once_with_its_size_and_direction(jump):
    clocks = FakeClocks()
    watch = clocks.watch()
    watch.check()
    clocks.tick(5.0)
    clocks.wall += jump
    assert watch.check() == pytest.approx(jump)
    clocks.tick(5.0)
    assert watch.check() is None  # the baseline moved with the jump: reported once


def test_clock_watch_ignores_a_step_within_its_threshold():
    clocks = FakeClocks()
    watch = clocks.watch()
    watch.check()
    clocks.wall -= JUMP_THRESHOLD * 0.9
    assert watch.check() is None


# -- re-planning one job -----------------------------------------------------------------------------------------------
def at(epoch: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, UTC)


NOW = 1_800_000_000.0  # the wall clock after the jump


def test_an_interval_job_keeps_its_cadence_in_real_time_after_a_backward_jump():
    # Before the jump the wall clock read NOW + 3600 and the job was due 10 s later.
    trigger = IntervalTrigger(seconds=60, start_date=at(NOW + 3600 - 50), timezone=UTC)
    change = replanned(trigger, at(NOW + 3610), -3600.0, at(NOW))
    assert change is not None
    new_trigger, next_run = change
    assert next_run == at(NOW + 10)  # not an hour away, not postponed by a whole interval
    assert new_trigger.get_next_fire_time(next_run, at(NOW + 10)) == at(NOW + 70)
    assert new_trigger.interval == trigger.interval and new_trigger.timezone == trigger.timezone


def test_an_interval_job_is_not_burst_or_missed_after_a_forward_jump():
    trigger = IntervalTrigger(seconds=1, start_date=at(NOW - 3600 - 5), timezone=UTC)
    _, next_run = replanned(trigger, at(NOW - 3600 + 0.5), 3600.0, at(NOW))
    assert next_run == at(NOW + 0.5)


def test_a_job_already_due_in_real_time_stays_due():
    trigger = IntervalTrigger(seconds=60, start_date=at(NOW), timezone=UTC)
    _, next_run = replanned(trigger, at(NOW + 3600 - 2), -3600.0, at(NOW))
    assert next_run <= at(NOW)
    cron = CronTrigger(minute="*", timezone=UTC)
    _, next_run = replanned(cron, at(NOW + 3600 - 2), -3600.0, at(NOW))
    assert next_run <= at(NOW)


def test_a_cron_job_follows_the_calendar_of_the_new_time():
    cron = CronTrigger(hour="3", minute="0", timezone=UTC)
    now = at(NOW)  # 2027-01-15 08:00 UTC; before the jump the clock read 09:00 and the next run was tomorrow 03:00
    trigger, next_run = replanned(cron, at(NOW + 19 * 3600), -3600.0, now)
    assert trigger is cron and next_run == at(NOW + 19 * 3600)  # 03:00 of the new clock, not 02:00
    _, next_run = replanned(cron, at(NOW + 19 * 3600), 3600.0, now)
    assert next_run == at(NOW + 19 * 3600)  # forward: still 03:00, not 04:00


def test_a_one_off_date_job_is_left_alone():
    assert replanned(DateTrigger(run_date=at(NOW + 3600), timezone=UTC), at(NOW + 3600), -3600.0, at(NOW)) is None


# -- the scheduler re-plans inside _process_jobs ---------------------------------------------------------------------
class OneJump:
    """A ClockWatch stand-in that reports one jump when armed."""

    def __init__(self) -> None:
        self.pending: float | None = None

    def check(self) -> float | None:
        jump, self.pending = self.pending, None
        return jump


def test_the_scheduler_re_plans_every_job_on_a_jump_then_calls_back_once(caplog):
    watch, jumps, called = OneJump(), [], threading.Event()

    def on_clock_jump(seconds: float) -> None:
        jumps.append(seconds)
        called.set()

    scheduler = ReplanningScheduler(timezone=UTC, clock_watch=watch, on_clock_jump=on_clock_jump)
    far = dt.datetime.now(UTC) + dt.timedelta(hours=1, seconds=30)
    scheduler.add_job(lambda: None, IntervalTrigger(seconds=60, start_date=far, timezone=UTC), id="every_minute")
    scheduler.add_job(lambda: None, CronTrigger(minute="*", timezone=UTC), id="cron", next_run_time=far)
    scheduler.add_job(lambda: None, DateTrigger(run_date=far, timezone=UTC), id="once")
    scheduler.start()
    try:
        watch.pending = -3600.0
        scheduler.wakeup()
        assert called.wait(5), "on_clock_jump was not called"
        now = dt.datetime.now(UTC)
        assert dt.timedelta(seconds=25) < scheduler.get_job("every_minute").next_run_time - now < dt.timedelta(seconds=35)
        assert scheduler.get_job("cron").next_run_time - now <= dt.timedelta(minutes=1)
        assert scheduler.get_job("once").next_run_time == far
        assert jumps == [-3600.0]
        warnings = [r for r in caplog.records if JUMP_LOG in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelname == "WARNING" and "back" in warnings[0].getMessage()
    finally:
        scheduler.shutdown(wait=False)


class RecordingStore(SqliteStateStore):
    """The real store, remembering every heartbeat state it was given."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.states: list[str] = []

    def beat(self, pid: int, hostname: str, state: str, *args, **kwargs) -> None:
        self.states.append(state)
        super().beat(pid, hostname, state, *args, **kwargs)


def test_the_service_notices_a_jump_within_a_heartbeat_though_no_job_is_due_for_a_minute(tmp_path):
    from worker_service.scheduler.jobs_file import parse_jobs
    from worker_service.scheduler.service import SchedulerService

    store = RecordingStore(str(tmp_path / "state.sqlite3"))
    specs = parse_jobs('[jobs.minutely]\nfunc = "tests.support.sample_jobs:noop"\ntrigger = "interval"\nminutes = 1\n')
    service = SchedulerService(specs, store, "UTC", heartbeat_interval=0.1)
    watch = service.scheduler.clock_watch = OneJump()
    service.start()
    try:
        planned = store.definition("minutely").next_run_time
        watch.pending = 3600.0  # APScheduler sleeps until the job is due, a minute away
        # Within a few beats (0.1 s each; 3 s on a loaded machine), not when the job is due: a minute away.
        wait_until(lambda: service.last_clock_jump is not None, timeout=3.0, what="the jump noticed within a beat")
        assert service.last_clock_jump[0] == 3600.0
        wait_until(lambda: store.definition("minutely").next_run_time == pytest.approx(planned + 3600),
                   timeout=3.0, what="the re-planned next run time published")
        assert "replanning" in store.states
        wait_until(lambda: store.scheduler().state == "running", timeout=3.0, what="the heartbeat back to running")
    finally:
        service.shutdown(wait=False)


# -- heartbeat age and the scheduler component under jumps ------------------------------------------------------------
INTERVAL = 1.0


def leader(heartbeat_at: float, state: str = "running") -> SchedulerRecord:
    return SchedulerRecord(pid=42, hostname="h", state=state, timezone="UTC", started_at=heartbeat_at - 100,
                           heartbeat_at=heartbeat_at)


class FakeMonotonic:
    def __init__(self) -> None:
        self.value = 100.0

    def __call__(self) -> float:
        return self.value


def test_a_heartbeat_from_before_a_backward_jump_is_fresh_only_while_the_leader_could_still_beat():
    mono = FakeMonotonic()
    sightings = HeartbeatSightings(monotonic=mono)
    beat = leader(NOW + 3600)  # written just before the clock went back an hour
    assert heartbeat_is_fresh(beat, INTERVAL, NOW, sightings)
    assert heartbeat_age(beat, NOW, sightings) == 0.0  # never negative
    mono.value += 3 * INTERVAL + 0.5  # the leader has not beaten since: it is gone
    assert not heartbeat_is_fresh(beat, INTERVAL, NOW + 3.5, sightings)
    assert heartbeat_age(beat, NOW + 3.5, sightings) == pytest.approx(3.5)


def test_a_heartbeat_seen_before_a_forward_jump_is_not_stale_for_the_jump():
    mono = FakeMonotonic()
    sightings = HeartbeatSightings(monotonic=mono)
    beat = leader(NOW - 0.5)
    assert heartbeat_is_fresh(beat, INTERVAL, NOW, sightings)
    mono.value += 0.5
    assert heartbeat_age(beat, NOW + 3600.5, sightings) == pytest.approx(1.0)
    assert heartbeat_is_fresh(beat, INTERVAL, NOW + 3600.5, sightings)
    mono.value += 3 * INTERVAL
    assert not heartbeat_is_fresh(beat, INTERVAL, NOW + 3603.5, sightings)


class OneRecordStore:
    def __init__(self, record: SchedulerRecord) -> None:
        self.record = record

    def scheduler(self) -> SchedulerRecord:
        return self.record

    def jobs(self, critical_only: bool = False) -> list:
        return []

    def quarantined_jobs(self) -> list[str]:
        return []


SETTINGS = {"SCHEDULER_HEARTBEAT_INTERVAL": INTERVAL, "JOB_FAILURE_THRESHOLD": 3, "JOB_OVERDUE_GRACE": 60}


def test_the_scheduler_component_is_degraded_while_jobs_are_re_planned():
    check = SchedulerCheck(OneRecordStore(leader(time.time(), state="replanning")), SETTINGS, HeartbeatSightings())
    result = check.run("scheduler")
    assert result.status is Status.DEGRADED and "re-planning" in result.reason


def test_the_scheduler_component_is_degraded_with_the_jump_when_the_heartbeat_is_in_the_future():
    check = SchedulerCheck(OneRecordStore(leader(time.time() + 3600)), SETTINGS, HeartbeatSightings())
    result = check.run("scheduler")
    assert result.status is Status.DEGRADED
    assert "wall clock jumped by about -3600 s" in result.reason and "re-planning" in result.reason


def test_the_scheduler_component_is_degraded_not_unavailable_when_the_clock_jumps_forward_between_beats():
    offset = [0.0]
    check = SchedulerCheck(OneRecordStore(leader(time.time())), SETTINGS, sightings=HeartbeatSightings(),
                           wall=lambda: time.time() + offset[0])
    assert check.run("scheduler").status is Status.AVAILABLE  # seen once, before the jump
    offset[0] = 3600.0  # the wall clock jumps forward before the next beat
    result = check.run("scheduler")
    assert result.status is Status.DEGRADED and "wall clock jumped by about +3600 s" in result.reason


# -- real gunicorn with a shifted wall clock -----------------------------------------------------------------------
TICK_JOB = """
[jobs.tick]
func = "tests.support.clock_offset.jobs:append_monotonic"
trigger = "interval"
seconds = 1
critical = true
misfire_grace_time = 5
coalesce = false
kwargs = {{ path = "{runs}" }}
"""


@pytest.fixture
def shifted_service(tmp_path: Path, gunicorn, state_dir: Path):
    """gunicorn with a 1 s job and a wall clock the test can shift; returns (server, runs file, offset file, store)."""
    runs, offset = tmp_path / "runs.txt", tmp_path / "clock_offset"
    offset.write_text("0")
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(TICK_JOB.format(runs=runs))
    python_path = os.pathsep.join(p for p in (str(HOOK_DIR), os.environ.get("PYTHONPATH", "")) if p)
    server = gunicorn(WORKER_JOBS_FILE=str(jobs), WEB_CONCURRENCY="2", SCHEDULER_HEARTBEAT_INTERVAL="1",
                      HEALTH_CACHE_TTL="0", PYTHONPATH=python_path, **{OFFSET_FILE_VARIABLE: str(offset)})
    wait_until(lambda: len(read_runs(runs)) >= 2, timeout=10, what="the first runs")
    return server, runs, offset, SqliteStateStore(str(state_dir / STATE_FILE))


def scheduler_component(server) -> str:
    return server.get("/health", headers={"Connection": "close"}, timeout=2)[2]["components"]["scheduler"]


def shift_and_watch(server, runs_file: Path, offset: Path, seconds: float) -> tuple[list[float], list[tuple[float, str]]]:
    """Shift the wall clock, wait for 3 runs after it; return the runs' monotonic times (from the last run before
    the jump) and the /health samples taken meanwhile."""
    before = len(read_runs(runs_file))
    assert all(scheduler_component(server) == "available" for _ in range(4))
    offset.write_text(repr(seconds))
    shifted = time.monotonic()
    samples = []

    def three_more_runs() -> bool:
        samples.append((time.monotonic() - shifted, scheduler_component(server)))
        return len(read_runs(runs_file)) >= before + 3

    wait_until(three_more_runs, timeout=8, interval=0.1, what="3 runs after the clock jump")
    wait_until(lambda: scheduler_component(server) == "available", timeout=3, what="the scheduler available again")
    return [at for _, at in read_runs(runs_file)[before - 1:]], samples  # from the last run before the jump


def jump_warnings(server) -> list[str]:
    """The scheduler's own log lines about a jump (each worker's health engine also logs its state changes)."""
    return [line for line in server.stderr().splitlines()
            if "level=WARNING" in line and "logger=worker_service.scheduler.replanning" in line and JUMP_LOG in line]


def assert_ran_on_time(after: list[float], shifted_by: float) -> None:
    # The bugs are gross: a burst (gaps of a few ms), or no run for an hour. A loaded machine is not: a run 0.5 s late
    # then an on-time one is a 0.5 s gap, and the jump is noticed within a heartbeat (1 s) before the run is re-planned.
    gaps = [b - a for a, b in zip(after, after[1:], strict=False)]
    assert min(gaps) > 0.2, f"runs too close together (a burst or a run twice): gaps {gaps}"
    assert max(gaps) < 3.0, f"the schedule stalled after a {shifted_by:+.0f} s jump: gaps {gaps}"


def assert_health_recovered(samples: list[tuple[float, str]]) -> None:
    late_problems = [(round(t, 2), state) for t, state in samples if state != "available" and t > 3.0]
    assert not late_problems, f"/health's scheduler was not available long after the jump: {late_problems}"


def test_jumps_of_an_hour_back_then_forward_keep_the_job_running_once_a_second_and_are_each_logged_once(
        shifted_service):
    server, runs_file, offset, store = shifted_service
    after, samples = shift_and_watch(server, runs_file, offset, -3600.0)
    assert_ran_on_time(after, -3600)  # before the fix: no run for an hour
    assert_health_recovered(samples)
    assert abs(store.jobs()[0].definition.next_run_time - (time.time() - 3600)) < 2.0  # the published plan moved
    warnings = jump_warnings(server)
    assert len(warnings) == 1 and "jumped back by 3600" in warnings[0], server.stderr()[-3000:]
    jump = server.get("/status")[2]["metrics"]["scheduler_status"]["last_clock_jump"]
    assert jump is not None and abs(jump["seconds"] + 3600) < 5, jump  # every worker can tell

    after, samples = shift_and_watch(server, runs_file, offset, 0.0)  # the clock goes forward an hour again
    assert_ran_on_time(after, 3600)  # before the fix: 5 runs in a burst (coalesce = false) and 3,595 missed
    assert_health_recovered(samples)
    assert store.jobs()[0].missed_count == 0
    warnings = jump_warnings(server)
    assert len(warnings) == 2 and "jumped forward by 3600" in warnings[1], server.stderr()[-3000:]
