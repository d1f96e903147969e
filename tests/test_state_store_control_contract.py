"""The contract of job control in :class:`StateStore`: operators' commands, pauses, and what a run's history row says.

Every implementation passes these unchanged: the ``store`` and ``open_store``
fixtures come from ``tests/test_state_store_contract.py`` and run once per
entry of its ``STORE_FACTORIES``. A few tests at the end are about the SQLite
file only (its upgrade from an older version, a host-local store's fencing).
"""

from __future__ import annotations

import sqlite3
import time

from tests import test_state_store_contract as contract
from tests.test_state_store_contract import SESSION, definition, lead
from worker_service.state import SqliteStateStore
from worker_service.state.records import Command, OperatorPause, RunRecord

# The contract's fixtures, so these tests run on every store of its STORE_FACTORIES.
open_store = contract.open_store
store = contract.store

KEPT = 100  # finished commands each job keeps at least
SLACK = 16  # a store may trim them in batches: at most this many over KEPT


# -- commands -------------------------------------------------------------------
def test_a_submitted_command_is_pending_for_every_worker_until_the_leader_finishes_it(store, open_store):
    queued = store.submit_command("sync", "run", "alice")
    command_id, requested_at = queued.id, queued.requested_at
    other = open_store()  # another worker on the same state
    pending = Command(command_id, "sync", "run", "alice", requested_at)
    assert queued == pending and queued.state == "pending"
    assert other.command(command_id) == pending and other.command(command_id).state == "pending"
    assert other.pending_commands() == [pending]

    store.finish_command(command_id, "done", 200, "started", 101.5, "host-a/4242", run_id=7)
    assert other.command(command_id) == Command(command_id, "sync", "run", "alice", requested_at, "done", 200,
                                                "started", 101.5, "host-a/4242", 7)
    assert other.pending_commands() == []
    assert store.command(command_id + 1000) is None


def test_pending_commands_come_oldest_first_across_jobs_with_growing_ids(store):
    ids = [store.submit_command(job, action, "bob").id
           for job, action in (("a", "pause"), ("b", "run"), ("a", "resume"), ("c", "run"))]
    assert ids == sorted(ids) and len(set(ids)) == 4
    store.finish_command(ids[1], "failed", 409, "already running at max_instances (1)", 104.0, "h/1")
    assert [(c.id, c.job_id, c.action) for c in store.pending_commands()] == [
        (ids[0], "a", "pause"), (ids[2], "a", "resume"), (ids[3], "c", "run")]


def test_a_command_is_finished_once_and_a_second_finish_changes_nothing(store):
    command_id = store.submit_command("a", "run", "alice").id
    store.finish_command(command_id, "failed", 503, "expired: no scheduler took it within 30 s", 140.0, "h/1")
    store.finish_command(command_id, "done", 200, "started", 141.0, "h/2", run_id=9)
    finished = store.command(command_id)
    assert (finished.state, finished.status, finished.outcome, finished.finished_at, finished.applied_by,
            finished.run_id) == ("failed", 503, "expired: no scheduler took it within 30 s", 140.0, "h/1", None)


def test_a_jobs_commands_come_newest_first_and_only_its_own(store):
    mine = [store.submit_command("a", action, "carol").id for action in ("pause", "resume", "run")]
    store.submit_command("b", "run", "carol")
    assert [c.id for c in store.commands("a")] == mine[::-1]
    assert [c.action for c in store.commands("a", limit=2)] == ["run", "resume"]
    assert store.commands("unknown") == []


def test_each_job_keeps_its_last_finished_commands_and_never_drops_a_pending_one(store):
    finished = []
    for n in range(KEPT + 30):
        command_id = store.submit_command("a", "run", "dave").id
        store.finish_command(command_id, "done", 200, "started", float(n), "h/1")
        finished.append(command_id)
    kept = [c.id for c in store.commands("a", limit=1000)]
    assert KEPT <= len(kept) <= KEPT + SLACK
    assert kept == finished[::-1][:len(kept)]  # the newest, without a gap

    waiting = [store.submit_command("b", "pause", "dave").id for _ in range(KEPT + 20)]
    assert [c.id for c in store.pending_commands()] == waiting
    assert len(store.commands("b", limit=1000)) == KEPT + 20


def test_a_command_is_stamped_by_the_stores_clock_and_its_pending_age_measured_by_it(store, open_store):
    """No host's clock: the leader judges a command's age with the clock of the store that stamped it."""
    before = time.time()
    queued = store.submit_command("a", "run", "alice")  # no time from the caller
    assert before - 1.0 <= queued.requested_at <= time.time() + 1.0  # the store's clock (this host's database here)
    assert queued.age is None and store.command(queued.id).age is None  # an age only where the leader needs it
    time.sleep(0.05)
    (pending,) = open_store().pending_commands()
    assert pending == queued and 0.04 <= pending.age < 5.0
    (later,) = store.pending_commands()
    assert later.age >= pending.age


# -- operators' pauses ------------------------------------------------------------
def test_an_operators_pause_or_resume_is_the_last_word_for_its_job_and_outlives_the_store(store, open_store):
    assert store.operator_pauses() == {}
    store.set_operator_pause("a", True, "alice", 100.0)
    store.set_operator_pause("b", True, "bob", 110.0)
    store.set_operator_pause("b", False, "carol", 120.0)
    expected = {"a": OperatorPause("a", True, "alice", 100.0), "b": OperatorPause("b", False, "carol", 120.0)}
    assert store.operator_pauses() == expected
    assert open_store().operator_pauses() == expected  # another worker, or the store opened again after a restart


# -- what a run's history row says ------------------------------------------------
def test_a_manual_runs_history_row_says_when_it_started_who_asked_and_why_it_failed(store):
    store.publish_jobs([definition("a")])
    lead(store)
    run_id = store.record_submitted("a", SESSION, 4242, 100.0, 1000.0, trigger="manual", requested_by="alice",
                                    command_id=12)
    store.record_started(run_id, 100.25)
    store.record_run("a", "error", 101.0, 0.75, "RuntimeError", "upstream refused: password=***", run_id=run_id)
    assert store.runs("a") == [RunRecord("a", 101.0, "error", 0.75, started_at=100.25, error_type="RuntimeError",
                                         error_message="upstream refused: password=***", trigger="manual",
                                         requested_by="alice", command_id=12)]
    assert store.jobs()[0].running_count == 0


def test_a_scheduled_runs_history_row_has_its_start_and_no_requester(store):
    store.publish_jobs([definition("a")])
    lead(store)
    run_id = store.record_submitted("a", SESSION, 4242, 100.0, 160.0)
    store.record_started(run_id, 100.5)
    store.record_run("a", "success", 101.0, 0.5, run_id=run_id)
    assert store.runs("a") == [RunRecord("a", 101.0, "success", 0.5, started_at=100.5)]
    assert store.runs("a")[0].trigger == "scheduled"


def test_a_run_recorded_without_its_live_row_is_a_scheduled_run_without_a_start(store):
    store.record_run("a", "error", 50.0, 1.0, "ValueError", "bad input")
    store.record_missed("a", 60.0)
    assert store.runs("a") == [RunRecord("a", 60.0, "missed", None),
                               RunRecord("a", 50.0, "error", 1.0, error_type="ValueError", error_message="bad input")]


def test_a_missed_manual_run_and_one_whose_worker_died_keep_who_asked_for_them(store):
    store.publish_jobs([definition("a"), definition("b")])
    lead(store)
    missed = store.record_submitted("a", SESSION, 4242, 100.0, None, trigger="manual", requested_by="bob",
                                    command_id=3)
    store.record_missed("a", 100.0, missed)
    died = store.record_submitted("b", "earlier-session", 11, 200.0, None, trigger="manual", requested_by="erin",
                                  command_id=4)
    store.record_started(died, 200.5)
    store.settle_orphans(SESSION)
    assert store.runs("a") == [RunRecord("a", 100.0, "missed", None, trigger="manual", requested_by="bob",
                                         command_id=3)]
    (crashed,) = store.runs("b")
    assert (crashed.outcome, crashed.at, crashed.started_at, crashed.error_type) == ("crashed", 200.5, 200.5,
                                                                                     "WorkerDied")
    assert (crashed.trigger, crashed.requested_by, crashed.command_id) == ("manual", "erin", 4)


# -- SQLite only ------------------------------------------------------------------
def test_a_host_local_store_fences_as_itself_and_has_no_lease_or_leadership_log(tmp_path):
    local = SqliteStateStore(str(tmp_path / "state.sqlite3"))
    from worker_service.state.protocol import FleetLedger

    assert local.fenced(7) is local
    assert not isinstance(local, FleetLedger) and not hasattr(local, "lease")


def test_a_file_from_before_job_control_keeps_its_history_and_gains_commands_and_pauses(tmp_path):
    path = tmp_path / "state.sqlite3"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE job_runs (seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, at REAL NOT NULL,
                               outcome TEXT NOT NULL, duration REAL);
        CREATE TABLE job_running (run_id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, session TEXT NOT NULL,
                                  pid INTEGER NOT NULL, scheduled_at REAL NOT NULL, submitted_at REAL NOT NULL,
                                  started_at REAL, stopping INTEGER NOT NULL DEFAULT 0);
        INSERT INTO job_runs (job_id, at, outcome, duration) VALUES ('a', 10.0, 'success', 1.0);
        INSERT INTO job_running (job_id, session, pid, scheduled_at, submitted_at, started_at)
            VALUES ('a', 'old-session', 9, 20.0, 20.0, 20.5);
    """)
    old.close()

    upgraded = SqliteStateStore(str(path))
    assert upgraded.runs("a") == [RunRecord("a", 10.0, "success", 1.0)]
    assert [o.outcome for o in upgraded.settle_orphans(SESSION)] == ["crashed"]
    assert upgraded.runs("a")[0] == RunRecord("a", 20.5, "crashed", None, started_at=20.5, error_type="WorkerDied",
                                           error_message="its worker (pid 9) died while it ran")
    command_id = upgraded.submit_command("a", "pause", "alice").id
    upgraded.set_operator_pause("a", True, "alice", 30.5)
    assert [c.id for c in upgraded.pending_commands()] == [command_id]
    assert SqliteStateStore(str(path)).operator_pauses() == {"a": OperatorPause("a", True, "alice", 30.5)}
