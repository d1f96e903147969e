"""A fleet of hosts, one scheduler: three real gunicorn hosts on one PostgreSQL schema, through every fault.

Each host is a gunicorn master with 2 workers, its own state directory (its own host lock) and its own TcpProxy to
PostgreSQL. A 1 s tick job writes every run, fenced by its lease epoch, into PostgreSQL, where a trigger notes the
epoch that held the lease at the insert. One fleet goes through the phases of one test (each phase a fault to the
current leader's host): SIGKILL of the whole host, SIGSTOP of the whole host past the TTL, a partition that refuses,
a partition that goes silent, a reload, a graceful stop. TTL 3 s: a standby polls every second.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import threading
import time

import pytest
import redis

from tests.conftest import REDIS_URL
from tests.support.fleet import (
    BUILTIN_JOBS,
    Fleet,
    Host,
    check,
    fault_gap,
    missed_slots,
    skewed_fleet,
    slot_lateness,
)
from tests.support.pg import admin
from tests.support.private_services import PrivatePostgres
from tests.support.servers import http_get, wait_until

TTL = 3.0
POLL = TTL / 3
TAKEOVER = TTL + POLL + 1.5  # the bound after a fault, plus the new leader's start and a loaded 2-core machine
TICK = 1.0
DB_TIMEOUT = TTL / 4  # the most the settings allow: a start on a loaded 2-core machine needs it


@dataclasses.dataclass
class Window:
    """A fault: when it began and ended (database clock), how many missed slots it may explain."""

    fault: str
    start: float
    end: float = 0.0
    takeover: float = 0.0


SLOW_JOB = """
[jobs.slow]
name = "Slow"
func = "tests.support.sample_jobs:slow"
trigger = "interval"
seconds = 3
misfire_grace_time = 30
kwargs = {{ seconds = 1.5, path = "{marks}" }}
"""
SLOW_SECONDS = 1.5  # the slow job's run, above


def slow_runs(marks) -> list[tuple[int, float, float | None]]:
    """``(pid, start, end or None)`` of each run of the slow job, from its marks file, by start time."""
    runs: dict[int, list[list]] = {}
    for line in marks.read_text().splitlines() if marks.exists() else []:
        kind, pid, at = line.split()
        if kind == "start":
            runs.setdefault(int(pid), []).append([float(at), None])
        else:
            runs[int(pid)][-1][1] = float(at)
    return sorted(((pid, start, end) for pid, found in runs.items() for start, end in found), key=lambda run: run[1])


@pytest.fixture
def fleet(tmp_path):
    made = Fleet(tmp_path, ttl=TTL, timeout=DB_TIMEOUT, workers=2, tick=TICK,
                 jobs=BUILTIN_JOBS.format(sync=2) + SLOW_JOB.format(marks=tmp_path / "slow.txt"), REDIS_URL=REDIS_URL,
                 SERVICE_NAME=f"fleet-{os.getpid()}-{time.monotonic_ns() % 10**6}")
    try:
        yield made
    finally:
        made.close()


def leader_after(fleet: Fleet, old: Host, began: float, window: Window) -> Host:
    """Wait for another host to lead and tick; note the takeover time (from ``began``, monotonic) in ``window``."""
    new = fleet.wait_for_leader(timeout=TAKEOVER + 2, other_than=old)
    window.takeover = time.monotonic() - began
    fleet.wait_for_ticks(1, timeout=5, host=new, after=window.start)
    return new


def test_three_hosts_run_each_slot_once_through_kill_freeze_partitions_reload_and_stop(fleet, tmp_path):
    fleet.start()  # all three at once, on a schema nobody created yet: they race to migrate it
    first = fleet.wait_for_leader(timeout=15)
    fleet.wait_for_ticks(3, timeout=10)
    assert all(host.running for host in fleet.hosts.values()), "a host failed to start on the new schema"
    assert [change.reason for change in fleet.changes()] == ["first"]
    windows: list[Window] = []

    # SIGKILL of the leader's whole gunicorn: its lease runs out, a standby takes it within TTL + one poll.
    window = Window("SIGKILL", fleet.db_now())
    killed = time.monotonic()
    first.kill()
    second = leader_after(fleet, first, killed, window)
    window.end = fleet.db_now()
    windows.append(window)
    assert window.takeover <= TAKEOVER, f"takeover after SIGKILL took {window.takeover:.2f} s"
    first.start(wait=False)  # back as a standby, while the next phase runs

    # SIGSTOP of the leader's whole host for longer than the TTL: woken, it must run and record nothing.
    window = Window("SIGSTOP", fleet.db_now())
    second.freeze()
    frozen = time.monotonic()
    third = leader_after(fleet, second, frozen, window)
    time.sleep(max(0.0, frozen + TTL + 1 - time.monotonic()))  # the fault itself: frozen for longer than the TTL
    second.thaw()
    fleet.wait_for_ticks(2, timeout=5, host=third, after=fleet.db_now())  # the woken host had its chance to tick
    window.end = fleet.db_now()
    windows.append(window)
    assert window.takeover <= TAKEOVER, f"takeover after SIGSTOP took {window.takeover:.2f} s"
    assert fleet.leader() is third
    wait_until(first.server._live, timeout=20, what="the killed host back")

    # Partitions between the leader and PostgreSQL: refused, then silent. It stands down before its lease ends.
    leader = third
    for fault in ("cut", "freeze"):
        window = Window(f"partition ({fault})", fleet.db_now())
        getattr(leader.proxy, fault)()
        began = time.monotonic()
        new = leader_after(fleet, leader, began, window)
        leader.proxy.restore()
        pids = leader.pids()
        lost = wait_until(lambda pids=pids: [c for c in fleet.changes() if c.reason == "lost" and c.from_pid in pids],
                          timeout=TTL + 3, what="the cut-off leader to find its lease taken")
        assert lost
        window.end = fleet.db_now()
        windows.append(window)
        assert window.takeover <= TAKEOVER, f"takeover after a partition ({fault}) took {window.takeover:.2f} s"
        leader = new

    # A reload (SIGHUP) of the leader's host: today's host-local handover, no slot late by an interval.
    window = Window("SIGHUP", fleet.db_now())
    old_pid = fleet.lease().holder_pid
    reloaded_pids = leader.pids()
    leader.reload()
    began = time.monotonic()
    wait_until(lambda: (lease := fleet.lease()).live and lease.holder_pid != old_pid, timeout=15,
               what="a new leader after the reload")
    window.takeover = time.monotonic() - began
    fleet.wait_for_ticks(3, timeout=6, after=fleet.db_now())
    window.end = fleet.db_now()
    windows.append(window)
    # Whether a slow run was still going on the reloaded host when its leader released the lease (or ended just
    # before: the release follows the run's end): then the handover waited for it. The hosts share this clock.
    released = [change.at for change in fleet.changes() if change.at >= window.start and change.reason == "released"]
    assert released, "the reloaded leader never released the lease"
    released_at = min(released)
    held_at_reload = any(pid in reloaded_pids and start < released_at and (end is None or end > released_at - 0.5)
                         for pid, start, end in slow_runs(tmp_path / "slow.txt"))
    leader = fleet.wait_for_leader(timeout=5)

    # A graceful stop of the leader's whole host, while its slow job runs: it offers the lease and keeps scheduling
    # until another host took it; the new leader waits for the slow run to end before it may start the job again.
    marks, pids = tmp_path / "slow.txt", leader.pids()
    wait_until(lambda: (runs := slow_runs(marks)) and runs[-1][0] in pids and runs[-1][2] is None
               and runs[-1][1] > time.time() - 0.5, timeout=8, what="a slow run starting on the leader")
    in_flight = slow_runs(marks)[-1]
    window = Window("graceful stop", fleet.db_now())
    began = time.monotonic()
    assert leader.stop() == 0
    stopped = time.monotonic() - began
    new = fleet.wait_for_leader(timeout=5, other_than=leader)
    window.takeover = stopped
    fleet.wait_for_ticks(3, timeout=6, host=new, after=window.start)
    window.end = fleet.db_now()
    windows.append(window)
    assert "handover" in [change.reason for change in fleet.changes()[-3:]]
    wait_until(lambda: any(run[1] > in_flight[1] and run[0] not in pids for run in slow_runs(marks)), timeout=8,
               what="the slow job on the new leader")
    after = [run for run in slow_runs(marks) if run[1] >= in_flight[1]]
    assert after[0][2] is not None, "the stop cut the slow run off"
    assert all(b[1] >= a[2] for a, b in zip(after, after[1:], strict=False) if a[2]), f"slow runs overlapped: {after}"
    # Not killed, lost or failed (a slot a loaded machine folded into the next is counted as missed: not a cut-off).
    assert not [run for run in fleet.store.runs("slow") if run.at >= in_flight[1]
                and run.outcome not in ("success", "missed")]

    ticks = fleet.ticks()
    result = check(ticks, TICK)
    assert not result["duplicates"], f"slots run twice: {result['duplicates']}"
    assert not result["stale"], f"records written by a stale epoch: {result['stale']}"
    assert not result["overlaps"], f"two leaders at once: {result['overlaps']}"
    for window in windows:
        longest = fault_gap(ticks, window.start, window.end)
        if window.fault == "SIGHUP":
            # The next run comes at its normal time: no slot folded into the next and no run two intervals late (by
            # slots, not gaps between ticks: a run late on a loaded machine may be followed by an on-time one). The
            # last tick before the window is included: a quick handover would fold the slot right after it. README:
            # a run still going at the reload is let finish first and holds the others, by what is left of it.
            by_time = sorted(ticks, key=lambda tick: tick.db_time)
            around = [tick for tick in by_time if tick.db_time <= window.start][-1:] + [
                tick for tick in by_time if window.start < tick.db_time <= window.end]
            folded, late = missed_slots(around, TICK), max(slot_lateness(around))
            held = SLOW_SECONDS if held_at_reload else 0.0
            assert len(folded) <= math.ceil(held / TICK), f"{window.fault} (held {held} s): slots missed {folded}"
            assert late < 2 * TICK + held, f"{window.fault} (held {held} s): a run {late:.2f} s late"
        elif window.fault == "graceful stop":
            # The stop comes while the slow job runs on the old host: the new leader starts scheduling once that
            # run ended (README: it waits for the predecessor's runs, up to a TTL), so the tick may wait for it too.
            assert longest < 2 * TICK + SLOW_SECONDS, f"{window.fault}: a {longest:.2f} s gap between ticks"
        else:
            assert longest <= TAKEOVER + TICK, f"{window.fault}: a {longest:.2f} s gap between ticks"
    assert max(slot_lateness(ticks)) < TAKEOVER + TICK  # a failover runs the due slot at once: never postponed
    allowed = sum(TAKEOVER + TICK for w in windows if w.fault not in ("SIGHUP", "graceful stop"))
    assert len(result["missed"]) <= allowed, f"missed slots {result['missed']}"
    assert len({tick.host for tick in ticks}) >= 2 and len({tick.epoch for tick in ticks}) >= 6

    # The check itself can fail: a record of an older epoch written now is caught by the table's trigger.
    with admin() as db:
        db.execute(f'INSERT INTO "{fleet.tick_schema}".ticks (slot, wall, host, pid, epoch) VALUES (0, 0, %s, 0, 1)',
                   ("forged",))
    assert [tick.host for tick in fleet.ticks() if tick.stale] == ["forged"]

    # The built-in jobs ran on whichever host led, their cache writes fenced by the epoch of the last one.
    sync = next(job for job in fleet.store.jobs() if job.id == "sync_accounts")
    assert sync.success_count >= 5 and sync.error_count == 0, sync
    fence = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    service = fleet.hosts["a"].env["SERVICE_NAME"]
    try:
        assert int(fence.get(f"{service}:fence:accounts")) <= fleet.lease().epoch
    finally:
        fence.delete(f"{service}:fence:accounts")


def test_hosts_whose_wall_clocks_differ_within_the_skew_bound_still_hand_over_within_the_bound(tmp_path):
    """The lease runs on the database's clock and each host's monotonic clock: wall clocks within
    SCHEDULER_MAX_CLOCK_SKEW (2 s) do not matter (a host further off never leads: tests/test_fleet_clock.py).

    b's clock is 1.5 s behind the database's, a's 1.5 s ahead. b leads first; when it dies, a resumes b's
    published next run (3 s overdue on a's clock) at once.
    """
    fleet = skewed_fleet(tmp_path, {"a": 1.5, "b": -1.5}, ttl=TTL, timeout=DB_TIMEOUT, workers=2, tick=TICK)
    a, b = fleet.hosts["a"], fleet.hosts["b"]
    try:
        fleet.start(["b"])
        assert fleet.wait_for_leader(timeout=15) is b
        fleet.start(["a"])
        fleet.wait_for_ticks(2, timeout=10, host=b)
        started = fleet.db_now()
        b.kill()
        killed = time.monotonic()
        assert fleet.wait_for_leader(timeout=TAKEOVER + 2, other_than=b) is a
        assert time.monotonic() - killed <= TAKEOVER
        fleet.wait_for_ticks(2, timeout=5, host=a, after=started)
        ticks = fleet.ticks()
        result = check(ticks, TICK)
        assert not result["duplicates"] and not result["stale"] and not result["overlaps"], result
        skew = {tick.host: tick.wall - tick.db_time for tick in ticks}
        assert abs(skew["a"] - skew["b"] - 3.0) < 0.5, f"the hosts' clocks were not skewed: {skew}"
        assert max(slot_lateness([t for t in ticks if t.host == "a"])) < TAKEOVER + TICK
    finally:
        fleet.close()


MANUAL_JOB = """
[jobs.manual]
name = "Run by hand"
func = "tests.support.sample_jobs:slow"
trigger = "interval"
hours = 1
max_instances = 1
kwargs = {{ seconds = 1.5, path = "{marks}" }}
"""
ADMIN = "fleet-admin-token-7d1c0e5a"


def test_run_now_from_two_hosts_at_the_same_moment_runs_the_job_once_on_one_host(tmp_path):
    marks = tmp_path / "manual.txt"
    made = Fleet(tmp_path, names=("a", "b"), ttl=TTL, timeout=DB_TIMEOUT, workers=2, tick=TICK,
                 jobs=MANUAL_JOB.format(marks=marks), ADMIN_TOKEN=ADMIN)
    try:
        made.start()
        leader = made.wait_for_leader(timeout=15)
        wait_until(lambda: made.store.definition("manual") is not None, timeout=5, what="the job published")
        start = threading.Barrier(2)
        answers: dict[str, tuple[int, dict]] = {}

        def ask(host: Host) -> None:
            start.wait(timeout=5)
            status, _, body = http_get(f"{host.server.url}/jobs/manual/run?wait=10", method="POST",
                                       headers={"Authorization": f"Bearer {ADMIN}", "X-Requested-By": host.name},
                                       timeout=15)
            answers[host.name] = (status, body)

        threads = [threading.Thread(target=ask, args=(host,)) for host in made.hosts.values()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
        statuses = sorted(status for status, _ in answers.values())
        assert statuses == [200, 409], answers  # max_instances 1: one runs, the other is refused, from either host
        wait_until(lambda: len(made.store.runs("manual")) == 1, timeout=10, what="the manual run recorded")
        runs = slow_runs(marks)
        every_pid = set().union(*(host.pids() for host in made.hosts.values()))
        assert len(runs) == 1 and runs[0][0] in every_pid, runs  # once, on whichever host claimed it
        recorded = made.store.runs("manual")[0]
        assert recorded.host is not None and "#" in recorded.host  # the history names the host that ran it
        winner = next(name for name, (status, _) in answers.items() if status == 200)
        assert (recorded.trigger, recorded.requested_by, recorded.outcome) == ("manual", winner, "success")

        # Once it ended, the host that does not lead asks again: a second run (the first no longer holds max_instances).
        follower = next(host for host in made.hosts.values() if host is not leader)
        status, _, body = http_get(f"{follower.server.url}/jobs/manual/run?wait=10", method="POST",
                                   headers={"Authorization": f"Bearer {ADMIN}"}, timeout=15)
        assert status == 200, body
        wait_until(lambda: len(made.store.runs("manual")) == 2, timeout=10, what="the second run recorded")
        assert len(slow_runs(marks)) == 2
    finally:
        made.close()


def test_postgresql_restarting_under_a_running_fleet_runs_no_slot_twice(tmp_path):
    """A private PostgreSQL (the shared one serves every other test) stops under two hosts and starts again:
    once at once (a restart), once after more than the TTL. The leader keeps its lease if it could renew in time,
    else stands down; either way no slot runs twice, nothing of a stale epoch is written, and ticks resume."""
    server = PrivatePostgres().init()
    server.start()
    try:
        made = Fleet(tmp_path, names=("a", "b"), ttl=TTL, timeout=DB_TIMEOUT, workers=2, tick=TICK,
                     database_url=server.url)
        try:
            made.start()
            made.wait_for_leader(timeout=15)
            made.wait_for_ticks(3, timeout=10)
            for outage in (0.0, TTL + 1.0):
                server.stop()  # fast shutdown: every connection of every host is cut
                down = time.monotonic()
                time.sleep(max(0.0, down + outage - time.monotonic()))  # the outage itself
                server.start()
                back = made.db_now()
                made.wait_for_ticks(3, timeout=TAKEOVER + 10, after=back)
                assert made.wait_for_leader(timeout=TAKEOVER) is not None
            ticks = made.ticks()
            result = check(ticks, TICK)
            assert not result["duplicates"], f"slots run twice: {result['duplicates']}"
            assert not result["stale"], f"records written by a stale epoch: {result['stale']}"
            assert not result["overlaps"], f"two leaders at once: {result['overlaps']}"
            reasons = [change.reason for change in made.changes()]
            assert reasons[0] == "first" and set(reasons) <= {"first", "expired", "lost", "released", "handover"}
        finally:
            made.close()
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        server.remove()
