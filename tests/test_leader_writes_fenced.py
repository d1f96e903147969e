"""Fencing fails closed: every write of the leader's interface is fenced, and one added unfenced fails here.

The leader writes through :class:`worker_service.scheduler.leader_store.LeaderStore`, which implements each
method of :class:`~worker_service.state.protocol.LeaderWriter` itself (no ``__getattr__``, no list of names).
These tests enumerate the protocol, so a new write needs a sample call below and is then checked, on a real
PostgreSQL, to be refused for a stale epoch by the database itself, and refused by the store view of a lost term
before anything is sent.
"""

from __future__ import annotations

import inspect
import threading
import time
from typing import Any

import pytest

from tests.support.pg import FAST_URL, scratch_schema
from tests.support.servers import wait_until
from worker_service.scheduler.leader_store import LeaderStore
from worker_service.state import PostgresStateStore
from worker_service.state.alert_records import AlertChange
from worker_service.state.faults import FencedOut
from worker_service.state.pg_lease import PostgresLease
from worker_service.state.protocol import LeaderWriter, StateReader
from worker_service.state.records import JobDefinition

WRITES = sorted(name for name, value in vars(LeaderWriter).items() if callable(value) and not name.startswith("_"))
READS = sorted(name for name, value in vars(StateReader).items() if callable(value) and not name.startswith("_"))


def _definition() -> JobDefinition:
    return JobDefinition("job", "Job", "interval[0:00:01]", time.time() + 1, 1.0, 1, "default", False, False, 1.0)


# A valid call of each write (arguments, given the id of a live run of another session). A write added to the
# protocol fails test_every_write_has_a_sample_call until it gets one here, and is then checked below.
SAMPLES: dict[str, Any] = {
    "record_submitted": lambda run: (("job", "stale", 1, time.time(), None), {}),
    "record_started": lambda run: ((run, time.time()), {}),
    "forget_run": lambda run: ((run,), {}),
    "forget_runs_except": lambda run: (("earlier", []), {}),
    "record_run": lambda run: (("job", "success", time.time(), 0.1), {"run_id": run}),
    "record_missed": lambda run: (("job", time.time()), {"run_id": run}),
    "record_max_instances": lambda run: (("job", time.time()), {}),
    "mark_stopping": lambda run: (("earlier",), {}),
    "settle_orphans": lambda run: (("stale",), {}),
    "set_crash_hold": lambda run: (("job", time.time() + 5), {}),
    "release_quarantine": lambda run: (("job",), {}),
    "publish_jobs": lambda run: (([_definition()],), {}),
    "update_next_run": lambda run: (("job", time.time() + 5, False), {}),
    "beat": lambda run: ((1, "stale-host", "running", "UTC", time.time()), {}),
    "clear_heartbeat": lambda run: ((1,), {}),
    "finish_command": lambda run: ((1, "done", 200, "ran", time.time(), "stale/1"), {}),
    "set_operator_pause": lambda run: (("job", True, "ops", time.time()), {}),
    "record_alert": lambda run: ((AlertChange("job:job", "job", "job", "unhealthy", True, "failing", time.time(), 0,
                                              f"e-{run}", "{}"), ["webhook-1"]), {}),
}


def test_every_write_has_a_sample_call():
    assert sorted(SAMPLES) == WRITES, "a write was added to LeaderWriter: give it a sample call here"


@pytest.mark.parametrize("name", WRITES + READS)
def test_the_leaders_store_implements_each_method_itself_with_the_protocols_signature(name):
    assert name in vars(LeaderStore), f"LeaderStore.{name} is not written out: it would not be fenced"
    protocol = LeaderWriter if name in WRITES else StateReader
    assert inspect.signature(vars(LeaderStore)[name]) == inspect.signature(vars(protocol)[name]), name


def test_the_leaders_store_has_no_catch_all():
    assert "__getattr__" not in vars(LeaderStore) and "__getattribute__" not in vars(LeaderStore)


@pytest.fixture(scope="module")
def stale():
    """A store, the view of a stale epoch (another session took the lease after it), and a live run's id."""
    with scratch_schema() as schema:
        store = PostgresStateStore(FAST_URL, schema, timeout=5.0)
        lease = PostgresLease(store, 0.3)
        old = lease.acquire("host-a", 11, "session-a")
        new = wait_until(lambda: lease.acquire("host-b", 22, "session-b"), timeout=5, what="the lease to expire")
        leader = store.fenced(new.epoch, new.session)
        leader.publish_jobs([_definition()])
        yield store, store.fenced(old.epoch, old.session), leader
        store.close()
        lease.close()


@pytest.mark.parametrize("name", WRITES)
def test_the_database_refuses_each_write_of_a_stale_epoch(stale, name):
    store, view, leader = stale
    run = leader.record_submitted("job", "earlier", 4242, time.time(), None)  # a live run of another session
    args, kwargs = SAMPLES[name](run)
    before = _state(store)
    with pytest.raises(FencedOut, match="no longer holds the scheduler lease"):
        getattr(view, name)(*args, **kwargs)
    assert _state(store) == before, f"{name} of a stale epoch changed the store"


def _state(store: PostgresStateStore) -> tuple:
    return (store.jobs(), store.scheduler(), store.runs("job"), store.crash_state("job"), store.operator_pauses(),
            store.alert_states(), store.deliveries())


class LostTerm:
    """A term that was lost to another host without a handover."""

    epoch, session, offered = 1, "session-a", False

    def __init__(self, handed_over: bool = False) -> None:
        self.lost = threading.Event()
        self.lost.set()
        self.handed_over = handed_over

    def valid(self) -> bool:
        return False

    def refusal(self, finishing: bool) -> str | None:
        return None if self.handed_over and finishing else "scheduler lease: epoch 1 is held by another host now"


class Recorder:
    """A store that records what reached it (nothing should, for a lost term)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def fenced(self, epoch: int, session: str | None = None) -> Recorder:
        return self

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: self.calls.append(name)


# How a run ended is recorded whatever became of the term (the run's live row is the guard: a run a new leader
# settled is not counted again); a run enters its code only while the term is valid, or after a handover.
ENDING = {"forget_run", "forget_runs_except", "record_run", "record_missed"}
FINISHING = ENDING | {"record_started"}


@pytest.mark.parametrize("name", WRITES)
def test_a_lost_term_refuses_each_write_but_a_runs_end_before_sending_it(name):
    base = Recorder()
    view = LeaderStore(base, LostTerm())  # type: ignore[arg-type]
    args, kwargs = SAMPLES[name](1)
    if name in ENDING:
        getattr(view, name)(*args, **kwargs)
        assert base.calls == [name]
        return
    with pytest.raises(FencedOut, match="held by another host"):
        getattr(view, name)(*args, **kwargs)
    assert base.calls == []


@pytest.mark.parametrize("name", WRITES)
def test_after_a_handover_only_the_writes_that_finish_a_run_go_through(name):
    base = Recorder()
    view = LeaderStore(base, LostTerm(handed_over=True))  # type: ignore[arg-type]
    args, kwargs = SAMPLES[name](1)
    if name in FINISHING:
        getattr(view, name)(*args, **kwargs)
        assert base.calls == [name]
    else:
        with pytest.raises(FencedOut):
            getattr(view, name)(*args, **kwargs)
        assert base.calls == []
