"""The scheduler component's rule as a pure function: no store, no process, no clock but the one handed in."""

from __future__ import annotations

import re

import pytest

from common.helpers.health import ServiceDegraded, ServiceUnavailable
from worker_service.health.leader_status import LeaderStatus
from worker_service.health.scheduler_verdict import (
    LeaderFacts,
    SchedulerFacts,
    SchedulerRules,
    leader_problem,
    scheduler_verdict,
    unreachable,
)
from worker_service.scheduler.heartbeat import LeaderSeen, Sighting
from worker_service.scheduler.job_health import JobPolicy
from worker_service.state import StoreUnavailable
from worker_service.state.records import JobDefinition, JobRecord, LeaseRecord, SchedulerRecord

NOW = 1_800_000_000.0
HOST = {"SCHEDULER_HEARTBEAT_INTERVAL": 5.0, "JOB_FAILURE_THRESHOLD": 3, "JOB_OVERDUE_GRACE": 60}
FLEET = {**HOST, "STATE_DATABASE_URL": "postgresql://db/x", "SCHEDULER_LEASE_TTL": 10.0}


def beat(age: float = 1.0, state: str = "running") -> SchedulerRecord:
    return SchedulerRecord(pid=7, hostname="h1", state=state, timezone="UTC", started_at=NOW - 600,
                           heartbeat_at=NOW - age)


def lease(expires_in: float = 8.0, released: bool = False) -> LeaseRecord:
    return LeaseRecord(epoch=42, holder_host="h1", holder_pid=7, holder_session="s", acquired_at=NOW - 600,
                       renewed_at=NOW - 2, expires_at=NOW + expires_in, expires_in=expires_in, released=released)


def critical_job(consecutive_failures: int) -> JobRecord:
    definition = JobDefinition("sync", "Sync", "interval[0:01:00]", NOW + 30, 30.0, 1, "default", False, True, 60.0)
    return JobRecord(definition, error_count=consecutive_failures, consecutive_failures=consecutive_failures,
                     last_run_at=NOW - 10, last_outcome="error" if consecutive_failures else "success")


def judge(settings: dict, leading: LeaderFacts, **facts):
    return scheduler_verdict(SchedulerFacts(leading, **facts), SchedulerRules.from_settings(settings))


def test_a_fresh_heartbeat_on_one_host_is_available():
    assert judge(HOST, LeaderFacts(beat(), NOW)) is None


def test_no_heartbeat_ever_and_a_stale_one_are_unavailable_with_their_reasons():
    assert leader_problem(LeaderFacts(None, NOW), SchedulerRules.from_settings(HOST)) == \
        "no scheduler has run on this host"
    verdict = judge(HOST, LeaderFacts(beat(age=40), NOW))
    assert isinstance(verdict, ServiceUnavailable)
    assert verdict.reason == "no scheduler heartbeat for 40 s (last leader pid 7)"
    full = judge(HOST, LeaderFacts(beat(age=40), NOW, disk_full="disk full (3 KiB left on /x)"))
    assert full.reason.startswith("state store: disk full (3 KiB left on /x); no scheduler heartbeat")


def test_the_age_as_sighted_wins_over_the_wall_clock():
    jumped = LeaderFacts(beat(age=3600), NOW, heartbeat=Sighting(age=1.0, clock_jump=3599.0))
    verdict = judge(HOST, jumped)
    assert isinstance(verdict, ServiceDegraded) and "wall clock jumped by about +3599 s" in verdict.reason


def test_paused_replanning_an_unhealthy_critical_job_and_quarantines_degrade():
    assert judge(HOST, LeaderFacts(beat(state="paused"), NOW)).reason == "scheduler is paused"
    assert "re-planning" in judge(HOST, LeaderFacts(beat(state="replanning"), NOW)).reason
    verdict = judge(HOST, LeaderFacts(beat(), NOW), critical=[critical_job(5)], quarantined=["crashy"])
    assert isinstance(verdict, ServiceDegraded)
    assert verdict.reason.startswith("critical job unhealthy: sync: ")
    assert verdict.reason.endswith("; job quarantined for killing its worker: crashy")
    assert judge(HOST, LeaderFacts(beat(), NOW), critical=[critical_job(0)]) is None


def test_a_fleet_needs_a_live_lease_as_well_as_a_fresh_heartbeat():
    assert judge(FLEET, LeaderFacts(beat(), NOW, lease=lease())) is None
    expired = judge(FLEET, LeaderFacts(beat(), NOW, lease=lease(expires_in=-30)))
    assert isinstance(expired, ServiceUnavailable)
    assert expired.reason == "no host leads the fleet: the scheduler lease of h1 pid 7 (epoch 42) expired 30 s ago"
    never = judge(FLEET, LeaderFacts(None, NOW))
    assert never.reason == "no host has led the fleet yet (the scheduler lease was never taken)"
    silent = judge(FLEET, LeaderFacts(beat(age=40), NOW, lease=lease()))
    assert silent.reason == ("h1 pid 7 (epoch 42) holds the scheduler lease, but no scheduler heartbeat for 40 s "
                             "(last from h1 pid 7)")


def test_a_host_whose_clock_is_off_degrades_the_fleet_but_does_not_stop_it():
    verdict = judge(FLEET, LeaderFacts(beat(), NOW, lease=lease(), skew=3600.0))
    assert isinstance(verdict, ServiceDegraded) and "SCHEDULER_MAX_CLOCK_SKEW" in verdict.reason


def test_an_unreachable_store_is_degraded_only_while_another_host_led_a_moment_ago():
    rules = SchedulerRules.from_settings(FLEET)
    elsewhere = (LeaderSeen("h2", 9, 42, 0.0), 3.0)
    assert isinstance(unreachable("state database: refused", rules, elsewhere, "h1"), ServiceDegraded)
    assert isinstance(unreachable("state database: refused", rules, None, "h1"), ServiceUnavailable)
    here = (LeaderSeen("h1", 9, 42, 0.0), 3.0)
    assert "cannot renew its lease either" in unreachable("state database: refused", rules, here, "h1").reason
    one_host = SchedulerRules.from_settings(HOST)
    assert unreachable("state store: locked", one_host, elsewhere, "h1").reason == "state store: locked"


def test_rules_come_from_the_settings_once():
    rules = SchedulerRules.from_settings(FLEET)
    assert rules.fleet and rules.lease_ttl == 10.0 and rules.heartbeat_interval == 5.0
    assert isinstance(rules.policy, JobPolicy) and not SchedulerRules.from_settings(HOST).fleet


class HeartbeatOnly:
    """A one-host store that holds a heartbeat and nothing else, or cannot be read at all."""

    def __init__(self, record: SchedulerRecord | None, fails: bool = False) -> None:
        self.record, self.fails, self.reads = record, fails, 0

    def scheduler(self) -> SchedulerRecord | None:
        self.reads += 1
        if self.fails:
            raise StoreUnavailable("state store: locked")
        return self.record


def test_a_post_asks_leader_status_which_reads_only_the_heartbeat_on_one_host(tmp_path):
    import time

    settings = {**HOST, "WORKER_STATE_DIR": str(tmp_path)}
    now = time.time()
    fresh = HeartbeatOnly(SchedulerRecord(4101, "h1", "paused", "UTC", now - 60, now - 1))
    assert LeaderStatus(fresh, settings).problem() is None and fresh.reads == 1  # paused still leads
    stale = HeartbeatOnly(SchedulerRecord(4102, "h1", "running", "UTC", now - 600, now - 300))
    assert re.fullmatch(r"no scheduler heartbeat for 30\d s \(last leader pid 4102\)", LeaderStatus(stale, settings).problem())
    assert LeaderStatus(HeartbeatOnly(None, fails=True), settings).problem() == "state store: locked"


class _JobsUnreadable:
    """A store whose heartbeat (and lease) read, but whose job reads fail: a slow or locked database mid-check."""

    def __init__(self, leader: SchedulerRecord | None, held: LeaseRecord | None = None) -> None:
        self._leader, self._lease = leader, held

    def scheduler(self) -> SchedulerRecord | None:
        return self._leader

    def lease(self) -> LeaseRecord | None:
        return self._lease

    def leadership_changes(self, limit: int = 10) -> list:
        return []

    def jobs(self, critical_only: bool = False) -> list:
        raise StoreUnavailable("state store: locked")

    def quarantined_jobs(self) -> list:
        raise StoreUnavailable("state store: locked")


def observe(settings: dict, store: _JobsUnreadable) -> Exception | None:
    from worker_service.health.scheduler_observer import SchedulerObserver
    from worker_service.scheduler.heartbeat import HeartbeatSightings, LeaderMemory

    rules = SchedulerRules.from_settings(settings)
    observer = SchedulerObserver(rules, sightings=HeartbeatSightings(), leaders=LeaderMemory(), wall=lambda: NOW,
                                 hostname="other-host")
    return scheduler_verdict(observer.read(store), rules)


def test_who_leads_decides_before_the_job_reads_so_their_failure_never_hides_a_dead_leader():
    """A dead leader's heartbeat is the answer: a job read failing after it must not turn that into a store error."""
    on_one_host = observe(HOST, _JobsUnreadable(beat(age=500)))
    assert isinstance(on_one_host, ServiceUnavailable) and "no scheduler heartbeat" in str(on_one_host)
    in_a_fleet = observe(FLEET, _JobsUnreadable(beat(age=300), lease()))
    assert isinstance(in_a_fleet, ServiceUnavailable) and "no scheduler heartbeat" in str(in_a_fleet)
    paused = observe(HOST, _JobsUnreadable(beat(state="paused")))
    assert isinstance(paused, ServiceDegraded) and "paused" in str(paused)


def test_a_live_leader_with_unreadable_jobs_is_still_a_store_error():
    with pytest.raises(StoreUnavailable):
        observe(HOST, _JobsUnreadable(beat()))
