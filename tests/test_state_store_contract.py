"""The contract of :class:`StateStore`: every implementation passes these tests unchanged.

An implementation adds its factory to ``STORE_FACTORIES`` and gets the whole
suite. A factory opens a store on the test's backing state; called twice with
the same ``where``, it opens a second store on the same state (another worker,
or another host). A factory may have a ``cleanup(where)``, called after the
test. Faults of a backend stay in that backend's own tests
(``test_store_faults.py`` for SQLite, ``test_pg_store_faults.py`` for
PostgreSQL).
"""

from __future__ import annotations

import inspect
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import pg
from tests.support.old_schemas import postgresql_schema_at
from worker_service.state import PostgresStateStore, SqliteStateStore, StateReader, StateStore, pg_schema
from worker_service.state.pg_pool import StatePool
from worker_service.state.protocol import AlertOutbox, CommandQueue, FleetLedger, LeaderWriter, RunClaims
from worker_service.state.records import CrashState, JobDefinition, JobRecord, MissedSlots, OrphanedRun, RunRecord

HISTORY = 5
SLACK = 16  # a store may trim its history in batches: at most this many runs over history_size
SESSION = "current-session"

StoreFactory = Callable[[Path, int], StateStore]


def sqlite_store(where: Path, history_size: int) -> StateStore:
    return SqliteStateStore(str(where / "state.sqlite3"), history_size)


class PostgresStores:
    """Stores on a scratch schema per test (its name derived from ``where``), dropped by :meth:`cleanup`.

    The stores of every test share one pool (a pool is per process and not
    per schema), so a test pays for its schema, not for a connection.
    """

    def __init__(self) -> None:
        self.pool: StatePool | None = None
        self.schemas: dict[Path, str] = {}

    def __call__(self, where: Path, history_size: int) -> StateStore:
        if self.pool is None:
            self.pool = StatePool(pg.FAST_URL, timeout=5.0)
        if where not in self.schemas:
            pg.sweep_abandoned_schemas()
            self.schemas[where] = pg.new_schema_name()
        return PostgresStateStore(pg.FAST_URL, self.schemas[where], history_size, timeout=5.0, pool=self.pool)

    def cleanup(self, where: Path) -> None:
        schema = self.schemas.pop(where, None)
        if schema is not None:
            pg.drop_schema(schema)


postgres_store = PostgresStores()

STORE_FACTORIES = [pytest.param(sqlite_store, id="sqlite"), pytest.param(postgres_store, id="postgresql")]


def _opener(request: pytest.FixtureRequest, tmp_path: Path, history: int) -> Iterator[Callable[[], StateStore]]:
    factory: StoreFactory = request.param
    yield lambda: factory(tmp_path, history)
    cleanup = getattr(factory, "cleanup", None)
    if cleanup is not None:
        cleanup(tmp_path)


@pytest.fixture(params=STORE_FACTORIES)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], StateStore]]:
    """Open a store on this test's state; each call is another worker's store on the same state."""
    yield from _opener(request, tmp_path, HISTORY)


@pytest.fixture
def store(open_store: Callable[[], StateStore]) -> StateStore:
    return open_store()


WIDE_HISTORY = 40


@pytest.fixture(params=STORE_FACTORIES)
def open_wide_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], StateStore]]:
    """As ``open_store``, with a history of WIDE_HISTORY runs."""
    yield from _opener(request, tmp_path, WIDE_HISTORY)


def definition(job_id: str, critical: bool = False, **fields) -> JobDefinition:
    values = dict(name=job_id.title(), trigger="interval[0:01:00]", next_run_time=1000.0, misfire_grace_time=30.0,
                  max_instances=1, executor="default", paused=False, critical=critical, interval_seconds=60.0,
                  max_runtime=None)
    return JobDefinition(id=job_id, **{**values, **fields})


def record(store: StateStore, job_id: str) -> JobRecord:
    return next(r for r in store.jobs() if r.id == job_id)


def lead(store: StateStore, session: str = SESSION, pid: int = 4242) -> None:
    store.beat(pid, "host", "running", "UTC", 100.0, session)


# -- the interface --------------------------------------------------------------
ROLES = (StateReader, CommandQueue, AlertOutbox, LeaderWriter, StateStore)


def methods(cls: type) -> set[str]:
    return {name for name, value in vars(cls).items() if callable(value) and not name.startswith("_")}


def protocol_methods() -> set[str]:
    return set().union(*(methods(cls) for cls in ROLES))


def test_every_store_implements_the_protocol_with_its_exact_signatures(store):
    assert isinstance(store, StateStore) and isinstance(store, StateReader)
    for name in sorted(protocol_methods()):
        expected = inspect.signature(getattr(StateStore, name))
        assert inspect.signature(getattr(type(store), name)) == expected, name


def test_the_protocol_is_cut_by_role_and_names_what_the_callers_use_and_nothing_else():
    assert methods(StateReader) == {  # every read, by any worker or the leader
        "scheduler", "jobs", "quarantined_jobs", "command", "commands", "operator_pauses", "pending_commands",
        "crash_state", "job_count", "definition", "runs", "recent_runs", "run_counts",
        "alert_states", "deliveries", "alert_summary", "runs_in_flight", "hosts",
    }
    assert methods(CommandQueue) == {"submit_command"}  # what any worker may write
    assert methods(AlertOutbox) == {"claim_deliveries", "finish_delivery"}  # any worker's deliverer, by claims
    assert methods(LeaderWriter) == {  # the leader's writes, each fenced in a fleet
        "record_submitted", "record_started", "forget_run", "forget_runs_except", "record_run", "record_missed",
        "record_max_instances", "mark_stopping", "settle_orphans", "set_crash_hold", "release_quarantine",
        "publish_jobs", "update_next_run", "beat", "clear_heartbeat", "finish_command", "set_operator_pause",
        "record_alert",
    }
    assert methods(StateStore) == {"fenced"}
    assert methods(FleetLedger) == {"lease", "leadership_changes"}  # the PostgreSQL store only
    assert methods(RunClaims) == {"renew_host", "leave_host", "claim_runs", "release_claim",
                                      "mark_host_gone"}  # any host of a fleet, by claims


def test_only_a_fleets_store_keeps_a_lease_and_a_leadership_log(store):
    assert isinstance(store, FleetLedger) == (type(store).__name__ == "PostgresStateStore")


# -- the published job list -----------------------------------------------------
def test_published_jobs_come_back_in_their_order_with_empty_stats(store):
    published = [definition("zeta", critical=True), definition("alpha"), definition("mid", max_runtime=5.0, paused=True)]
    store.publish_jobs(published)
    assert store.jobs() == [JobRecord(definition=d) for d in published]
    assert [r.id for r in store.jobs(critical_only=True)] == ["zeta"]
    assert store.job_count() == 3
    assert store.definition("mid") == published[2]
    assert store.definition("unknown") is None


def test_publishing_again_replaces_the_list_and_keeps_each_jobs_stats(store):
    store.publish_jobs([definition("a"), definition("b")])
    store.record_run("a", "success", 10.0, 1.0)
    store.publish_jobs([definition("c"), definition("a", name="Renamed")])
    assert [r.id for r in store.jobs()] == ["c", "a"]
    assert record(store, "a").definition.name == "Renamed" and record(store, "a").success_count == 1
    assert store.job_count() == 2 and store.definition("b") is None
    store.publish_jobs([])
    assert store.jobs() == [] and store.job_count() == 0


def test_update_next_run_publishes_one_jobs_next_run_and_pause(store):
    store.publish_jobs([definition("a"), definition("b")])
    store.update_next_run("a", None, True)
    assert store.definition("a").next_run_time is None and store.definition("a").paused is True
    store.update_next_run("a", 2000.0, False)
    assert store.definition("a") == definition("a", next_run_time=2000.0)
    assert store.definition("b") == definition("b")


def test_a_second_store_on_the_same_state_sees_every_write(store, open_store):
    store.publish_jobs([definition("a")])
    store.record_run("a", "success", 10.0, 1.0)
    lead(store)
    other = open_store()
    assert [r.success_count for r in other.jobs()] == [1]
    assert other.scheduler().session == SESSION


# -- finished and skipped runs --------------------------------------------------
def test_runs_are_counted_with_their_durations_and_failures_in_a_row(store):
    store.publish_jobs([definition("a")])
    store.record_run("a", "success", 10.0, 2.0)
    store.record_run("a", "error", 20.0, 4.0, "ValueError", "bad input")
    store.record_run("a", "error", 30.0, 0.5, "KeyError", "'x'")
    a = record(store, "a")
    assert (a.success_count, a.error_count, a.runs) == (1, 2, 3)
    assert (a.duration_sum, a.duration_min, a.duration_max) == (6.5, 0.5, 4.0)
    assert a.avg_duration == pytest.approx(6.5 / 3)
    assert (a.consecutive_failures, a.last_outcome, a.last_run_at, a.last_success_at) == (2, "error", 30.0, 10.0)
    assert (a.last_error_type, a.last_error_message, a.last_error_at) == ("KeyError", "'x'", 30.0)
    assert (a.last_problem, a.runs_since_problem) == ("error", 0)

    store.record_run("a", "success", 40.0, 1.0)
    a = record(store, "a")
    assert (a.consecutive_failures, a.last_outcome, a.last_success_at, a.runs_since_problem) == (0, "success", 40.0, 1)
    assert (a.last_error_type, a.last_error_at) == ("KeyError", 30.0)  # the last error is kept after a success


def test_a_run_without_a_duration_leaves_the_durations_alone(store):
    store.publish_jobs([definition("a")])
    store.record_run("a", "success", 10.0, 2.0)
    store.record_run("a", "success", 20.0, 3.0)
    run_id = store.record_submitted("a", "dead-session", 1, 30.0, None)
    store.record_started(run_id, 30.5)
    store.settle_orphans(SESSION)  # it crashed: no duration
    store.record_run("a", "error", 40.0, None, "ValueError", "x")
    a = record(store, "a")
    assert (a.duration_sum, a.duration_min, a.duration_max, a.error_count) == (5.0, 2.0, 3.0, 2)


def test_the_p95_duration_is_kept_over_the_timed_runs_of_the_jobs_history(store):
    """Nearest rank (PostgreSQL's percentile_disc) over the timed runs among the job's history_size newest runs."""
    store.publish_jobs([definition("a"), definition("b")])
    assert record(store, "a").duration_p95 is None  # no run yet
    for duration in (3.0, 1.0, 2.0):
        store.record_run("a", "success", 10.0, duration)
    assert record(store, "a").duration_p95 == 3.0
    store.record_run("a", "error", 20.0, 10.0, "ValueError", "slow and wrong")
    for _ in range(4):
        store.record_run("a", "success", 30.0, 1.0)
    assert record(store, "a").duration_p95 == 10.0  # still among the newest HISTORY (5)
    store.record_run("a", "success", 40.0, 1.0)
    a = record(store, "a")
    assert (a.duration_p95, a.duration_max) == (1.0, 10.0)  # out of the window: the p95 forgets it, the max does not

    # Untimed runs (an error without a duration, a miss, a crash settled by a new leader) leave it alone...
    store.record_run("a", "error", 50.0, None, "ValueError", "x")
    store.record_missed("a", 51.0)
    lead(store)
    crashed = store.record_submitted("a", "dead-session", 1, 52.0, None)
    store.record_started(crashed, 52.5)
    store.settle_orphans(SESSION)
    assert record(store, "a").duration_p95 == 1.0
    assert store.record_run("a", "success", 53.0, 99.0, run_id=crashed) is False  # settled already: not counted
    assert record(store, "a").duration_p95 == 1.0
    # ... and take their place in the history: the window is the newest HISTORY runs, of which the timed ones.
    store.record_run("a", "success", 60.0, 0.5)
    store.record_run("a", "success", 61.0, 0.25)
    assert [run.duration for run in store.runs("a")] == [0.25, 0.5, None, None, None]
    assert record(store, "a").duration_p95 == 0.5
    assert record(store, "b").duration_p95 is None  # another job's runs are not its own


def test_the_p95_duration_is_the_nearest_rank_not_an_interpolation(open_wide_store):
    store = open_wide_store()
    store.publish_jobs([definition("a")])
    for i in range(WIDE_HISTORY):  # 1 .. 40 in a shuffled order
        store.record_run("a", "success", float(i), float((i * 7) % WIDE_HISTORY + 1))
    assert record(store, "a").duration_p95 == 38.0  # the ceil(0.95 x 40) = 38th smallest (interpolated: 38.05)
    for i in range(WIDE_HISTORY // 2):  # the 20 newest are now 1.0: the window holds 20 of them and 20 of the first
        store.record_run("a", "success", 100.0 + i, 1.0)
    first_kept = sorted(float((i * 7) % WIDE_HISTORY + 1) for i in range(WIDE_HISTORY // 2, WIDE_HISTORY))
    assert record(store, "a").duration_p95 == sorted([1.0] * 20 + first_kept)[37]


def test_a_job_that_never_had_a_problem_has_no_runs_since_one(store):
    store.publish_jobs([definition("a")])
    store.record_run("a", "success", 10.0, 1.0)
    assert (record(store, "a").runs_since_problem, record(store, "a").last_problem) == (None, None)


def test_missed_and_max_instances_runs_are_counted_as_problems_not_as_runs(store):
    store.publish_jobs([definition("a")])
    store.record_run("a", "success", 10.0, 1.0)
    store.record_missed("a", 20.0)
    a = record(store, "a")
    assert (a.missed_count, a.runs, a.last_problem, a.runs_since_problem) == (1, 1, "missed", 0)
    store.record_run("a", "success", 30.0, 1.0)
    store.record_max_instances("a", 40.0)
    store.record_max_instances("a", 50.0)
    a = record(store, "a")
    assert (a.max_instances_count, a.missed_count, a.last_problem, a.runs_since_problem) == (2, 1, "max_instances", 0)
    assert (a.consecutive_failures, a.last_outcome, a.last_run_at) == (0, "success", 30.0)  # a skip is no run


def test_the_history_lists_every_kind_of_run_newest_first(store):
    store.record_run("a", "success", 10.0, 1.0)
    store.record_run("a", "error", 20.0, 2.0, "ValueError", "x")
    store.record_missed("a", 30.0)
    store.record_max_instances("a", 40.0)
    store.record_run("b", "success", 50.0, 3.0)
    assert store.runs("a") == [RunRecord("a", 40.0, "max_instances", None), RunRecord("a", 30.0, "missed", None),
                               RunRecord("a", 20.0, "error", 2.0, error_type="ValueError", error_message="x"),
                               RunRecord("a", 10.0, "success", 1.0)]
    assert store.runs("a", limit=2) == store.runs("a")[:2]
    assert store.runs("unknown") == []


def test_recent_runs_of_many_jobs_come_in_one_read_newest_first_and_counted_per_minute(store):
    for job, at, outcome in (("a", 60.0, "success"), ("a", 61.0, "error"), ("a", 125.0, "success"),
                             ("b", 126.0, "success"), ("c", 10.0, "success")):
        store.record_run(job, outcome, at, 0.5, *(("ValueError", "x") if outcome == "error" else ()))
    store.record_missed("b", 130.0)
    recent = store.recent_runs(["a", "b", "unknown"], 2)
    assert recent == {"a": store.runs("a", limit=2), "b": store.runs("b", limit=2)}
    assert [run.at for run in recent["a"]] == [125.0, 61.0] and recent["b"][0].outcome == "missed"
    assert store.recent_runs([], 20) == {} and store.recent_runs(["a"], 0) == {}
    # Epoch minutes 1 and 2; c's run at 10 s is before ``since``.
    assert store.run_counts(60.0) == [(1, "error", 1), (1, "success", 1), (2, "missed", 1), (2, "success", 2)]
    assert store.run_counts(1000.0) == []


def test_the_history_keeps_history_size_runs_and_never_more_than_the_slack_over_it(store):
    store.publish_jobs([definition("a"), definition("b")])
    for i in range(100):
        for job in ("a", "b"):
            store.record_run(job, "success", float(i), 0.01)
        kept = store.runs("a", limit=1000)
        assert min(i + 1, HISTORY) <= len(kept) <= HISTORY + SLACK
        assert [run.at for run in kept] == [float(n) for n in range(i, i - len(kept), -1)]  # newest first, no gap
    assert [run.at for run in store.runs("a")] == [99.0, 98.0, 97.0, 96.0, 95.0]  # the default limit: history_size
    assert record(store, "a").success_count == 100  # the stats are never trimmed


# -- a run's lifecycle: submitted, started, finished ------------------------------
def test_a_submitted_run_publishes_the_next_run_and_counts_as_running_once_started(store):
    store.publish_jobs([definition("a")])
    lead(store)
    run_id = store.record_submitted("a", SESSION, 4242, 100.0, 160.0)
    assert store.definition("a").next_run_time == 160.0
    assert (record(store, "a").running_count, record(store, "a").running_since) == (0, None)

    store.record_started(run_id, 101.0)
    assert (record(store, "a").running_count, record(store, "a").running_since) == (1, 101.0)
    second = store.record_submitted("a", SESSION, 4242, 160.0, 220.0)
    assert second != run_id
    store.record_started(second, 161.0)
    assert (record(store, "a").running_count, record(store, "a").running_since) == (2, 101.0)

    store.record_run("a", "success", 101.0, 0.5, run_id=run_id)
    assert (record(store, "a").running_count, record(store, "a").running_since) == (1, 161.0)
    store.forget_run(second)
    assert (record(store, "a").running_count, record(store, "a").running_since) == (0, None)
    assert store.settle_orphans(SESSION) == []


def test_slots_no_process_ran_are_counted_as_missed_with_the_run_they_were_folded_into(store):
    store.publish_jobs([definition("a")])
    lead(store)
    store.record_run("a", "success", 99.0, 0.1)
    gap = MissedSlots(count=12, first=101.0, last=112.0, recent=tuple(float(slot) for slot in range(101, 113)))
    run_id = store.record_submitted("a", SESSION, 4242, 113.0, 114.0, missed=gap)

    job = record(store, "a")
    assert (job.missed_count, job.success_count, job.last_problem, job.runs_since_problem) == (12, 1, "no_scheduler", 0)
    assert (job.gap_missed, job.gap_from, job.gap_to) == (12, 101.0, 112.0)
    history = store.runs("a", limit=1000)
    assert [(run.at, run.outcome) for run in history[:HISTORY]] == [(float(at), "missed") for at in range(112, 107, -1)]
    assert len(history) <= HISTORY + SLACK
    assert store.definition("a").next_run_time == 114.0 and store.record_started(run_id, 113.5)
    store.record_run("a", "success", 113.6, 0.1, run_id=run_id)
    job = record(store, "a")
    assert (job.missed_count, job.runs_since_problem, job.last_problem) == (12, 1, "no_scheduler")

    store.record_submitted("a", SESSION, 4242, 114.0, 115.0, missed=MissedSlots(0, 0.0, 0.0))  # nothing folded
    assert record(store, "a").missed_count == 12


def test_a_missed_run_that_was_submitted_is_forgotten(store):
    store.publish_jobs([definition("a")])
    lead(store)
    run_id = store.record_submitted("a", SESSION, 4242, 100.0, 160.0)
    store.record_started(run_id, 101.0)
    store.record_missed("a", 100.0, run_id)
    assert (record(store, "a").running_count, record(store, "a").missed_count) == (0, 1)
    assert store.settle_orphans("next-session") == []


def test_only_runs_of_the_session_in_the_heartbeat_count_as_running(store):
    store.publish_jobs([definition("a")])
    run_id = store.record_submitted("a", "old-session", 1, 100.0, 160.0)
    store.record_started(run_id, 101.0)
    assert record(store, "a").running_count == 0  # no heartbeat yet
    lead(store, "old-session")
    assert record(store, "a").running_count == 1
    lead(store, SESSION)
    assert (record(store, "a").running_count, record(store, "a").running_since) == (0, None)


def test_runs_the_leader_no_longer_has_are_forgotten_and_only_those(store):
    """A finish the store could not record leaves a run "running": the leader forgets it when writes work again."""
    store.publish_jobs([definition("a")])
    lead(store)
    phantom = store.record_submitted("a", SESSION, 4242, 100.0, 160.0)
    store.record_started(phantom, 101.0)
    live = store.record_submitted("a", SESSION, 4242, 160.0, 220.0)
    store.record_started(live, 161.0)
    other = store.record_submitted("a", "another-session", 1, 100.0, 160.0)
    assert store.forget_runs_except(SESSION, {live}) == 1
    assert (record(store, "a").running_count, record(store, "a").running_since) == (1, 161.0)
    assert [o.pid for o in store.settle_orphans(SESSION)] == [1]  # the other session's run was left alone
    assert other and store.forget_runs_except(SESSION, set()) == 1


# -- what a new leader finds: orphans, crashes, quarantine -------------------------
def test_a_new_leader_settles_each_run_an_earlier_one_left_as_crashed_killed_or_missed(store):
    store.publish_jobs([definition("crash"), definition("kill"), definition("never")])
    earlier, stopped = "earlier-session", "stopped-session"
    crashed = store.record_submitted("crash", earlier, 11, 100.0, 160.0)
    store.record_started(crashed, 101.0)
    store.record_submitted("never", earlier, 11, 102.0, 162.0)
    killed = store.record_submitted("kill", stopped, 12, 103.0, 163.0)
    store.record_started(killed, 104.0)
    store.mark_stopping(stopped)
    mine = store.record_submitted("crash", SESSION, 13, 105.0, 165.0)
    store.record_started(mine, 106.0)

    orphans = store.settle_orphans(SESSION)
    assert [(o.job_id, o.pid, o.outcome) for o in orphans] == [("crash", 11, "crashed"), ("never", 11, "missed"),
                                                               ("kill", 12, "killed")]
    assert [(o.scheduled_at, o.started_at, o.stopping) for o in orphans] == [(100.0, 101.0, False),
                                                                             (102.0, None, False),
                                                                             (103.0, 104.0, True)]
    crash, kill, never = record(store, "crash"), record(store, "kill"), record(store, "never")
    assert (crash.error_count, crash.crash_count, crash.consecutive_crashes, crash.last_problem) == (1, 1, 1, "crashed")
    assert (crash.last_error_type, crash.last_error_at) == ("WorkerDied", 101.0) and "11" in crash.last_error_message
    assert (kill.error_count, kill.crash_count, kill.consecutive_crashes, kill.last_problem) == (1, 0, 0, "killed")
    assert kill.last_error_type == "KilledAtStop"
    assert (never.missed_count, never.error_count, never.last_problem) == (1, 0, "missed")
    assert [(r.at, r.outcome) for r in store.runs("crash")] == [(101.0, "crashed")]
    assert [(r.at, r.outcome) for r in store.runs("kill")] == [(104.0, "killed")]
    assert [(r.at, r.outcome) for r in store.runs("never")] == [(102.0, "missed")]
    assert store.settle_orphans(SESSION) == []  # settled once; this session's own run is left alone
    lead(store)
    assert record(store, "crash").running_count == 1


def test_a_run_settled_by_a_new_leader_and_then_recorded_by_the_old_one_is_counted_once(store, open_store):
    """A handover or a lost lease: the new leader settles what the old one left, whose own writes come later."""
    store.publish_jobs([definition("a")])
    running = store.record_submitted("a", "old-session", 21, 100.0, 160.0, host="host-a")
    store.record_started(running, 101.0)
    queued = store.record_submitted("a", "old-session", 21, 102.0, 162.0, host="host-a")  # handed over, not started

    new = open_store()  # the new leader (another host: another store on the same state)
    settled = new.settle_orphans(SESSION, lost=lambda orphan: orphan.started_at is not None)
    assert [(o.scheduled_at, o.outcome) for o in settled] == [(100.0, "lost"), (102.0, "missed")]

    ended = store.record_run("a", "success", 111.0, 10.0, run_id=running)  # the old leader's run ends after all
    missed = store.record_missed("a", 102.0, queued)  # and APScheduler finds the queued one late
    a = record(new, "a")
    assert (a.success_count, a.error_count, a.missed_count, a.last_problem) == (0, 1, 1, "missed")
    assert a.duration_sum == 0.0 and a.running_count == 0
    assert [r.outcome for r in new.runs("a")] == ["missed", "lost"]
    assert ended is False and missed is False  # each says it counted nothing
    assert store.record_started(queued, 110.0) is False  # gone: the old leader must not run its job's code


def test_a_run_is_counted_once_by_whichever_write_removes_its_live_row_first(store):
    store.publish_jobs([definition("a")])
    lead(store)
    run_id = store.record_submitted("a", SESSION, 4242, 100.0, 160.0)
    assert store.record_started(run_id, 101.0) is True
    assert store.record_run("a", "success", 102.0, 1.0, run_id=run_id) is True
    assert store.record_run("a", "success", 103.0, 1.0, run_id=run_id) is False  # counted once
    assert store.record_started(run_id, 104.0) is False
    missed = store.record_submitted("a", SESSION, 4242, 160.0, 220.0)
    assert store.record_missed("a", 160.0, missed) is True and store.record_missed("a", 160.0, missed) is False
    forgotten = store.record_submitted("a", SESSION, 4242, 220.0, 280.0)
    store.forget_run(forgotten)
    assert store.record_run("a", "error", 221.0, 1.0, "ValueError", "x", run_id=forgotten) is False
    assert store.record_run("a", "success", 300.0, 1.0) is True  # a run recorded without its id always counts
    assert store.record_missed("a", 310.0) is True
    a = record(store, "a")
    assert (a.success_count, a.error_count, a.missed_count) == (2, 0, 2)
    assert [r.at for r in store.runs("a")] == [310.0, 300.0, 160.0, 102.0]


def test_mark_stopping_touches_only_its_own_sessions_runs(store):
    store.publish_jobs([definition("a")])
    one = store.record_submitted("a", "one", 1, 100.0, None)
    two = store.record_submitted("a", "two", 2, 100.0, None)
    store.record_started(one, 101.0)
    store.record_started(two, 101.0)
    store.mark_stopping("two")
    assert sorted((o.pid, o.outcome) for o in store.settle_orphans(SESSION)) == [(1, "crashed"), (2, "killed")]


def test_crashes_in_a_row_are_counted_until_a_run_finishes(store):
    store.publish_jobs([definition("a")])
    assert store.crash_state("a") == CrashState() == store.crash_state("unknown")
    for n in range(3):
        run_id = store.record_submitted("a", f"dead-{n}", 1, 100.0 + n, None)
        store.record_started(run_id, 100.5 + n)
        store.settle_orphans(SESSION)
    assert store.crash_state("a").consecutive == 3
    store.record_run("a", "error", 200.0, 1.0, "ValueError", "x")  # it failed, but its worker survived
    assert store.crash_state("a").consecutive == 0
    assert (record(store, "a").crash_count, record(store, "a").consecutive_failures) == (3, 4)


def test_each_orphan_keeps_its_host_and_the_callers_judgement_records_it_as_lost(store):
    """In a fleet a new leader takes over when a lease ran out: the old leader may be alive, its run still going."""
    store.publish_jobs([definition(job) for job in ("far", "frozen", "dead", "queued", "old")])
    far = store.record_submitted("far", "host-b-session", 21, 100.0, 160.0, host="host-b")
    store.record_started(far, 101.0)
    frozen = store.record_submitted("frozen", "frozen-session", 22, 102.0, 162.0, host="host-a")
    store.record_started(frozen, 103.0)
    store.mark_stopping("frozen-session")  # lost wins over killed
    dead = store.record_submitted("dead", "dead-session", 23, 104.0, 164.0, host="host-a")
    store.record_started(dead, 105.0)
    store.record_submitted("queued", "host-b-session", 21, 106.0, 166.0, host="host-b")  # never seen starting
    old = store.record_submitted("old", "old-session", 24, 107.0, 167.0)  # no host: an older version's run
    store.record_started(old, 108.0)

    asked = []

    def lost(orphan: OrphanedRun) -> bool:
        asked.append((orphan.job_id, orphan.host, orphan.pid, orphan.started_at, orphan.stopping))
        return orphan.host == "host-b" or orphan.pid == 22  # another host, or this host's process still alive

    orphans = store.settle_orphans(SESSION, lost=lost)
    assert asked == [("far", "host-b", 21, 101.0, False), ("frozen", "host-a", 22, 103.0, True),
                     ("dead", "host-a", 23, 105.0, False), ("queued", "host-b", 21, None, False),
                     ("old", None, 24, 108.0, False)]
    assert [(o.job_id, o.host, o.lost, o.outcome) for o in orphans] == [
        ("far", "host-b", True, "lost"), ("frozen", "host-a", True, "lost"), ("dead", "host-a", False, "crashed"),
        ("queued", "host-b", True, "lost"), ("old", None, False, "crashed")]
    assert store.runs("far") == [RunRecord(
        "far", 101.0, "lost", None, started_at=101.0, error_type="LeaderLost",
        error_message="its leader lost the scheduler while it ran on host host-b (pid 21); it may have finished there",
        host="host-b")]  # the history row keeps the host that ran it
    (queued,) = store.runs("queued")
    assert (queued.outcome, queued.at, queued.started_at, queued.error_type) == ("lost", 106.0, None, "LeaderLost")
    assert "host host-b (pid 21); it may have run there" in queued.error_message
    assert [(r.outcome, r.error_type) for r in store.runs("frozen")] == [("lost", "LeaderLost")]

    far_job, queued_job = record(store, "far"), record(store, "queued")
    assert (far_job.error_count, far_job.consecutive_failures, far_job.last_outcome, far_job.last_problem,
            far_job.runs_since_problem) == (1, 1, "error", "lost", 0)
    assert (far_job.last_error_type, far_job.last_error_at) == ("LeaderLost", 101.0)
    assert (far_job.crash_count, far_job.consecutive_crashes, far_job.missed_count) == (0, 0, 0)
    assert (queued_job.missed_count, queued_job.error_count, queued_job.last_problem) == (0, 1, "lost")
    assert (record(store, "dead").crash_count, record(store, "old").crash_count) == (1, 1)
    assert store.settle_orphans(SESSION, lost=lost) == []  # settled once


def test_a_lost_run_neither_counts_toward_the_crashes_in_a_row_nor_ends_them(store):
    store.publish_jobs([definition("a")])

    def settle_one(host: str, session: str) -> str:
        run_id = store.record_submitted("a", session, 1, 100.0, None, host=host)
        store.record_started(run_id, 100.5)
        (orphan,) = store.settle_orphans(SESSION, lost=lambda orphan: orphan.host != "host-a")
        return orphan.outcome

    assert [settle_one("host-a", f"dead-{n}") for n in range(2)] == ["crashed", "crashed"]
    for n in range(3):  # three partitions in a row quarantine nothing, and forgive nothing
        assert settle_one("host-b", f"cut-off-{n}") == "lost"
        assert store.crash_state("a").consecutive == 2
    assert settle_one("host-a", "dead-2") == "crashed"
    assert store.crash_state("a").consecutive == 3
    a = record(store, "a")
    assert (a.crash_count, a.error_count, a.consecutive_failures, a.last_problem) == (3, 6, 6, "crashed")


def test_a_crash_hold_and_a_quarantine_until_released(store):
    store.publish_jobs([definition("a"), definition("b")])
    store.set_crash_hold("a", 500.0)
    assert (record(store, "a").held_until, record(store, "a").quarantined_at) == (500.0, None)
    assert store.crash_state("a").quarantine_key is None and store.quarantined_jobs() == []

    before = time.time()
    store.set_crash_hold("b", None, quarantine_key="fingerprint-1")
    store.set_crash_hold("a", None, quarantine_key="fingerprint-2")
    b = store.crash_state("b")
    assert b.quarantine_key == "fingerprint-1" and before - 1 <= b.quarantined_at <= time.time() + 1
    assert store.quarantined_jobs() == ["a", "b"]
    store.set_crash_hold("b", None, quarantine_key="fingerprint-1")
    assert store.crash_state("b").quarantined_at == b.quarantined_at  # quarantined since the first time

    store.release_quarantine("b")
    assert store.crash_state("b") == CrashState()
    assert (record(store, "b").quarantined_at, record(store, "b").held_until) == (None, None)
    assert store.quarantined_jobs() == ["a"]
    store.set_crash_hold("a", 900.0)  # a hold without a key is no quarantine
    assert store.quarantined_jobs() == [] and record(store, "a").held_until == 900.0


def test_a_job_can_be_quarantined_before_it_is_published(store):
    store.set_crash_hold("later", None, quarantine_key="k")
    assert store.quarantined_jobs() == ["later"] and store.jobs() == []
    store.publish_jobs([definition("later")])
    assert record(store, "later").quarantined_at is not None


# -- the heartbeat --------------------------------------------------------------
def test_the_heartbeat_is_stamped_by_the_store_and_carries_the_session_and_clock_jump(store):
    assert store.scheduler() is None
    before = time.time()
    store.beat(7, "host-a", "running", "Europe/Paris", 123.0, "s1", clock_jump=(-3600.0, 456.0))
    leader = store.scheduler()
    assert (leader.pid, leader.hostname, leader.state, leader.timezone, leader.started_at, leader.session) == \
        (7, "host-a", "running", "Europe/Paris", 123.0, "s1")
    assert before <= leader.heartbeat_at <= time.time()
    assert (leader.clock_jump_seconds, leader.clock_jump_at) == (-3600.0, 456.0)

    store.beat(8, "host-b", "paused", "UTC", 200.0, "s2")
    leader = store.scheduler()
    assert (leader.pid, leader.hostname, leader.state, leader.session) == (8, "host-b", "paused", "s2")
    assert (leader.clock_jump_seconds, leader.clock_jump_at) == (None, None)


def test_clearing_the_heartbeat_marks_it_stopped_only_for_the_pid_that_beats(store):
    store.beat(7, "host", "running", "UTC", 123.0, "s1")
    store.clear_heartbeat(8)
    assert store.scheduler().state == "running" and store.scheduler().heartbeat_at > 0
    store.clear_heartbeat(7)
    leader = store.scheduler()
    assert (leader.pid, leader.state, leader.heartbeat_at) == (7, "stopped", 0)


# -- a store made by an older version gains each live run's host (per backend) ----
def test_an_older_sqlite_file_gains_the_host_and_its_live_runs_settle_without_one(tmp_path):
    path = tmp_path / "state.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE job_running (run_id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, session TEXT NOT NULL,
                                  pid INTEGER NOT NULL, scheduled_at REAL NOT NULL, submitted_at REAL NOT NULL,
                                  started_at REAL, stopping INTEGER NOT NULL DEFAULT 0,
                                  trigger TEXT NOT NULL DEFAULT 'scheduled', requested_by TEXT, command_id INTEGER);
        INSERT INTO job_running (job_id, session, pid, scheduled_at, submitted_at, started_at)
            VALUES ('a', 'old-session', 9, 20.0, 20.0, 20.5);
    """)
    old.close()
    upgraded = SqliteStateStore(str(path))
    upgraded.record_submitted("a", "cut-off-session", 10, 30.0, None, host="host-b")
    judged = []
    orphans = upgraded.settle_orphans(SESSION, lost=lambda orphan: judged.append(orphan.host) or orphan.host is not None)
    assert judged == [None, "host-b"] and [o.outcome for o in orphans] == ["crashed", "lost"]


def test_a_postgresql_schema_at_version_1_is_migrated_and_its_live_runs_settle_without_a_host():
    with pg.scratch_schema() as schema:
        postgresql_schema_at(schema, 1)  # the service as it was before version 2
        with pg.admin() as db:
            db.execute(f'INSERT INTO "{schema}".job_running (job_id, session, pid, scheduled_at, submitted_at,'
                       " started_at) VALUES ('a', 'old-session', 9, 20.0, 20.0, 20.5)")
        store = PostgresStateStore(pg.FAST_URL, schema, timeout=5.0)
        try:
            assert store.migrate() == pg_schema.LATEST
            assert pg.rows(schema, "SELECT version FROM {s}.schema_version ORDER BY version") == [
                (version,) for version, _, _ in pg_schema.MIGRATIONS]
            store.record_submitted("a", "cut-off-session", 10, 30.0, None, host="host-b")
            orphans = store.settle_orphans(SESSION, lost=lambda orphan: orphan.host is not None)
            assert [(o.host, o.outcome) for o in orphans] == [(None, "crashed"), ("host-b", "lost")]
        finally:
            store.close()


# -- a store made before the p95 duration gains it; the job's next timed run sets it (per backend) ----
def test_an_older_sqlite_file_gains_the_p95_duration(tmp_path):
    path = tmp_path / "state.sqlite3"
    before = SqliteStateStore(str(path), HISTORY)
    before.publish_jobs([definition("a")])
    before.record_run("a", "success", 10.0, 4.0)
    old = sqlite3.connect(path)
    old.execute("ALTER TABLE job_stats DROP COLUMN duration_p95")  # the file as the version before it left it:
    old.execute("PRAGMA user_version = 0")  # made before the file had versions
    old.commit()
    old.close()
    upgraded = SqliteStateStore(str(path), HISTORY)
    a = record(upgraded, "a")
    assert (a.success_count, a.duration_max, a.duration_p95) == (1, 4.0, None)
    upgraded.record_run("a", "success", 20.0, 2.0)
    assert record(upgraded, "a").duration_p95 == 4.0  # over the history, the runs from before included


def test_a_postgresql_schema_at_version_2_gains_the_p95_duration():
    with pg.scratch_schema() as schema:
        postgresql_schema_at(schema, 2)  # the service as it was before version 3
        with pg.admin() as db:
            db.execute(f'INSERT INTO "{schema}".job_stats (job_id, success_count, duration_sum, duration_min,'
                       " duration_max) VALUES ('a', 1, 4.0, 4.0, 4.0)")
            db.execute(f'INSERT INTO "{schema}".job_runs (job_id, at, outcome, duration)'
                       " VALUES ('a', 10.0, 'success', 4.0)")
        store = PostgresStateStore(pg.FAST_URL, schema, HISTORY, timeout=5.0)
        try:
            assert store.migrate() == pg_schema.LATEST >= 3
            store.publish_jobs([definition("a")])
            a = record(store, "a")
            assert (a.success_count, a.duration_max, a.duration_p95) == (1, 4.0, None)
            store.record_run("a", "success", 20.0, 2.0)
            assert record(store, "a").duration_p95 == 4.0
        finally:
            store.close()
