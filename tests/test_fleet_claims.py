"""The claims a fleet's hosts take runs with, on a real PostgreSQL store: what the store promises, statement by statement.

A planned run has no owner until one host claims it (``FOR UPDATE SKIP LOCKED``), only while that host's row is
alive; an every-host run is claimed by its host only, a retried lost run never by the host that lost it; a run's end
counts only while its claim holds; ``max_instances`` counts every live run of the job, whoever holds it; a job's
write fenced inside a claimed run is refused once the claim was settled. Both stores count ``max_instances`` alike.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.support import pg
from tests.support.servers import wait_until
from worker_service.fencing import fence
from worker_service.scheduler.tracking import CurrentRun, _running
from worker_service.state.faults import FencedOut
from worker_service.state.pg_store import PostgresStateStore
from worker_service.state.records import ClaimStats
from worker_service.state.sqlite_store import SqliteStateStore

TTL = 5.0


@pytest.fixture
def schema():
    with pg.scratch_schema() as name:
        yield name


@pytest.fixture
def store(schema: str) -> PostgresStateStore:
    made = PostgresStateStore(pg.FAST_URL, schema, 20, timeout=5.0)
    made.migrate()
    yield made
    made.close()


def plan(store, job_id: str = "job", slot: float = 100.0, **options) -> int | None:
    return store.record_submitted(job_id, "leader-session", 1, slot, slot + 60, run_on=options.pop("run_on", "any"),
                                  **options)


def test_a_planned_run_has_no_owner_until_one_live_host_claims_it(store):
    run_id = plan(store)
    (waiting,) = store.runs_in_flight()
    assert (waiting.run_id, waiting.session, waiting.host, waiting.claimed) == (run_id, "", None, False)
    assert store.claim_runs("s-a", "host-a", 11, 5, [], time.time()) == []  # no row: not a live host
    store.renew_host("s-a", "host-a", 11, 4, TTL)
    store.renew_host("s-b", "host-b", 12, 4, TTL)
    (claimed,) = store.claim_runs("s-a", "host-a", 11, 5, [], 123.0)
    assert (claimed.run_id, claimed.job_id, claimed.scheduled_at, claimed.trigger) == (run_id, "job", 100.0, "scheduled")
    assert claimed.waited >= 0 and claimed.epoch is None  # no lease row in this schema: no epoch to fence with
    assert store.claim_runs("s-b", "host-b", 12, 5, [], time.time()) == []  # taken: never twice
    (held,) = store.runs_in_flight()
    assert (held.session, held.host, held.pid, held.started_at, held.claimed) == ("s-a", "host-a", 11, 123.0, True)
    hosts = {host.session: host for host in store.hosts()}
    assert (hosts["s-a"].claimed, hosts["s-a"].free, hosts["s-a"].claims) == (1, 3, 0)  # the claim wrote no host row
    store.renew_host("s-a", "host-a", 11, 4, TTL, claims=ClaimStats().plus([claimed.waited]))  # counted in memory
    assert next(host for host in store.hosts() if host.session == "s-a").claims == 1
    assert (hosts["s-b"].claimed, hosts["s-b"].free, hosts["s-b"].alive) == (0, 4, True)


def test_hosts_claiming_at_once_take_disjoint_runs_and_together_all_of_them(store):
    ids = {plan(store, f"job{n}", slot=100.0 + n) for n in range(40)}
    for host in range(4):
        store.renew_host(f"s{host}", f"host{host}", host, 40, TTL)
    taken: dict[int, list[int]] = {}
    start = threading.Barrier(4)

    def claim(host: int) -> None:
        start.wait(timeout=5)
        got = []
        while batch := store.claim_runs(f"s{host}", f"host{host}", host, 3, [], time.time()):
            got += [run.run_id for run in batch]
        taken[host] = got

    threads = [threading.Thread(target=claim, args=(host,)) for host in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    every = [run_id for got in taken.values() for run_id in got]
    assert sorted(every) == sorted(ids), "a run claimed twice, or never"
    assert sum(1 for got in taken.values() if got) >= 2  # SKIP LOCKED: nobody waited for another's rows


def test_a_host_claims_only_while_its_row_is_alive_and_it_is_not_stopping(store):
    plan(store)
    store.renew_host("s-a", "host-a", 11, 4, 0.2)
    wait_until(lambda: not next(host for host in store.hosts() if host.session == "s-a").alive, timeout=5,
               what="the row's own TTL to pass, on the database's clock")
    assert store.claim_runs("s-a", "host-a", 11, 5, [], time.time()) == []
    store.renew_host("s-a", "host-a", 11, 4, TTL, stopping=True)
    assert store.claim_runs("s-a", "host-a", 11, 5, [], time.time()) == []
    assert next(host for host in store.hosts() if host.session == "s-a").free == 0
    store.renew_host("s-a", "host-a", 11, 4, TTL)
    assert len(store.claim_runs("s-a", "host-a", 11, 5, [], time.time())) == 1
    store.leave_host("s-a")
    assert store.hosts() == []


def test_an_every_host_run_goes_to_its_host_and_a_retried_lost_run_never_back_to_the_host_that_lost_it(store):
    for name in ("a", "b"):
        store.renew_host(f"s-{name}", f"host-{name}", 1, 4, TTL)
    plan(store, "every", run_on="every-host", for_host="host-a")
    plan(store, "every", run_on="every-host", for_host="host-b")
    plan(store, "retry", avoid_host="host-a", retry_of=7)
    got_a = store.claim_runs("s-a", "host-a", 1, 5, [], time.time())
    got_b = store.claim_runs("s-b", "host-b", 1, 5, [], time.time())
    assert [run.job_id for run in got_a] == ["every"]
    assert sorted(run.job_id for run in got_b) == ["every", "retry"]
    assert next(run for run in got_b if run.job_id == "retry").retry_of == 7
    assert store.claim_runs("s-a", "host-a", 1, 5, [], time.time()) == []  # nothing left


def test_a_host_skips_the_jobs_it_cannot_run_and_gives_back_one_it_claimed(store):
    store.renew_host("s-a", "host-a", 1, 4, TTL)
    store.renew_host("s-b", "host-b", 2, 4, TTL)
    unknown, known = plan(store, "unknown", slot=100.0), plan(store, "known", slot=101.0)
    assert [run.job_id for run in store.claim_runs("s-a", "host-a", 1, 5, ["unknown"], time.time())] == ["known"]
    (taken,) = store.claim_runs("s-b", "host-b", 2, 5, [], time.time())
    assert taken.run_id == unknown
    store.release_claim(unknown, "s-other")  # not its claim: nothing happens
    assert store.claim_runs("s-a", "host-a", 1, 5, [], time.time()) == []
    store.release_claim(unknown, "s-b")
    (again,) = store.claim_runs("s-a", "host-a", 1, 5, [], time.time())
    assert again.run_id == unknown and known != unknown


def test_a_runs_end_counts_only_while_its_claim_holds(store):
    store.renew_host("s-a", "host-a", 1, 4, TTL)
    first, second = plan(store, slot=100.0), plan(store, slot=101.0, max_instances=None)
    store.claim_runs("s-a", "host-a", 1, 5, [], time.time())
    assert not store.record_run("job", "success", 110.0, 1.0, run_id=first, owner="s-other")  # not its claim
    assert store.record_run("job", "success", 110.0, 1.0, run_id=first, owner="s-a")
    assert not store.record_run("job", "success", 111.0, 1.0, run_id=first, owner="s-a")  # counted once
    settled = store.settle_orphans("leader-session", lost=lambda orphan: True)  # its host's row expired, say
    assert [(orphan.run_id, orphan.outcome) for orphan in settled] == [(second, "lost")]
    assert not store.record_run("job", "success", 112.0, 1.0, run_id=second, owner="s-a")  # settled first
    assert [(run.outcome, run.host) for run in store.runs("job")] == [("lost", "host-a"), ("success", "host-a")]


def test_a_judge_keeps_the_runs_of_live_owners_and_planned_runs_are_left_to_be_claimed(store):
    store.renew_host("s-a", "host-a", 1, 4, TTL)
    plan(store, "claimed")
    store.claim_runs("s-a", "host-a", 1, 5, [], time.time())
    plan(store, "waiting")
    seen = []

    def judge(orphan):
        seen.append((orphan.job_id, orphan.session))
        return None  # alive, or still claimable

    assert store.settle_orphans("leader-session", lost=judge) == []
    assert sorted(seen) == [("claimed", "s-a"), ("waiting", "")]
    assert len(store.runs_in_flight()) == 2


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_max_instances_counts_every_live_run_of_the_job_whoever_holds_it(kind, tmp_path: Path, schema: str):
    """A run still going in the previous process after a reload (another session) holds its job back too."""
    if kind == "sqlite":
        made = SqliteStateStore(str(tmp_path / "state.db"), 20)
    else:
        made = PostgresStateStore(pg.FAST_URL, schema, 20, timeout=5.0)
    old = made.record_submitted("job", "old-process", 1, 100.0, 160.0, max_instances=2)
    assert old is not None
    mine = made.record_submitted("job", "new-process", 2, 160.0, 220.0, max_instances=2)
    assert mine is not None
    assert made.record_submitted("job", "new-process", 2, 220.0, 280.0, max_instances=2) is None  # two live: full
    assert made.definition("job") is None or made.definition("job").next_run_time != 280.0
    assert made.record_submitted("other", "new-process", 2, 220.0, 280.0, max_instances=1) is not None
    made.record_run("job", "success", 230.0, 1.0, run_id=old)
    assert made.record_submitted("job", "new-process", 2, 220.0, 280.0, max_instances=2) is not None


def test_a_job_write_inside_a_claimed_run_is_fenced_by_the_claim(store, schema):
    store.renew_host("s-a", "host-a", 1, 4, TTL)
    run_id = plan(store)
    store.claim_runs("s-a", "host-a", 1, 5, [], time.time())
    with pg.admin() as db:
        db.execute(f'INSERT INTO "{schema}".lease (name, epoch, expires_at) VALUES (\'scheduler\', 4, now())')
    token = _running.set(CurrentRun("job", run_id, 100.0, claim_session="s-a", claim_epoch=4))
    try:
        with pg.admin() as db, db.transaction():
            assert fence(db, "resource", 4, schema) == 4  # on a host that does not lead: the claim holds
        store.settle_orphans("leader-session", lost=lambda orphan: True)  # its host judged gone: settled lost
        with pg.admin() as db, db.transaction(), pytest.raises(FencedOut, match="no longer this host's"):
            fence(db, "resource", 4, schema)
    finally:
        _running.reset(token)


def test_slots_folded_into_a_run_refused_for_max_instances_are_counted_with_the_next_recorded_run(tmp_path: Path):
    """After a freeze the slot that comes due may be refused: the job's run planned before the freeze is not claimed
    yet. The slots folded into it are not lost: the next run the store records counts them as missed."""
    import datetime as dt
    from types import SimpleNamespace

    from apscheduler.executors.base import MaxInstancesReachedError
    from apscheduler.triggers.interval import IntervalTrigger

    from worker_service.scheduler.tracking import ExecutionTracker
    from worker_service.state.records import JobDefinition

    store = SqliteStateStore(str(tmp_path / "state.db"), 20)
    store.publish_jobs([JobDefinition("tick", "Tick", "interval[0:00:01]", None, 30.0, 1, "default", False, False,
                                      1.0, None)])
    start = dt.datetime(2026, 12, 7, 12, 0, 0, tzinfo=dt.UTC)
    trigger = IntervalTrigger(seconds=1, start_date=start)
    job = SimpleNamespace(id="tick", max_instances=1, coalesce=True, trigger=trigger,
                          next_run_time=start + dt.timedelta(seconds=1))
    tracker = ExecutionTracker(store, "leader", lambda job_id: (None, False), lambda error: None, host="h")
    pending = store.record_submitted("tick", "", 0, start.timestamp(), None, run_on="any")  # planned, not claimed
    with pytest.raises(MaxInstancesReachedError):
        tracker.submitted(job, [start + dt.timedelta(seconds=5)])  # slots 1 to 4 folded into it
    store.record_run("tick", "success", start.timestamp() + 6, 0.1, run_id=pending)
    job.next_run_time = start + dt.timedelta(seconds=6)  # APScheduler moved on past the refused slot 5
    tracker.submitted(job, [start + dt.timedelta(seconds=6)])
    missed = sorted(run.at - start.timestamp() for run in store.runs("tick") if run.outcome == "missed")
    assert missed == [1.0, 2.0, 3.0, 4.0], missed
    assert store.jobs()[0].missed_count == 4
