"""The alert state and outbox, on both stores (the contract's factories): recorded once, claimed by one, finished once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.test_state_store_contract import HISTORY, STORE_FACTORIES, _opener, postgres_store
from worker_service.state import PostgresLease, StateStore
from worker_service.state.alert_records import AlertChange
from worker_service.state.faults import FencedOut


def change(expected: int = 0, firing: bool = True, key: str = "job:a", event: str = "e1") -> AlertChange:
    return AlertChange(key=key, kind="job", subject="a", state="unhealthy" if firing else "healthy", firing=firing,
                       reason="3 consecutive failures", since=1.0, expected_seq=expected, event_id=event,
                       payload=f'{{"id": "{event}"}}')


@pytest.fixture(params=STORE_FACTORIES)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], StateStore]]:
    """The contract's stores (SQLite, PostgreSQL): each call another worker's (or host's) store on the same state."""
    yield from _opener(request, tmp_path, HISTORY)


@pytest.fixture
def store(open_store: Callable[[], StateStore]) -> StateStore:
    return open_store()


def test_a_change_is_recorded_once_with_one_row_per_channel(store):
    assert store.record_alert(change(), ["webhook-1", "apprise-2"])
    assert not store.record_alert(change(), ["webhook-1", "apprise-2"])  # the same change, from a second writer
    state = store.alert_states()["job:a"]
    assert (state.firing, state.seq, state.state) == (True, 1, "unhealthy")
    assert sorted(d.channel for d in store.deliveries()) == ["apprise-2", "webhook-1"]
    assert store.record_alert(change(expected=1, firing=False, event="e2"), ["webhook-1"])
    assert store.alert_states()["job:a"].seq == 2 and store.alert_summary().pending == 3


def test_a_row_is_claimed_by_one_deliverer_and_finished_once(open_store):
    first, second = open_store(), open_store()
    first.record_alert(change(), ["webhook-1"])
    [row] = first.claim_deliveries("deliverer-a", hold=30.0)
    assert second.claim_deliveries("deliverer-b", hold=30.0) == []  # claimed: never shared
    assert not second.finish_delivery(row.id, "deliverer-b", "sent")  # only the claimer finishes it
    assert first.finish_delivery(row.id, "deliverer-a", "sent")
    assert not first.finish_delivery(row.id, "deliverer-a", "sent")  # once
    summary = second.alert_summary()
    assert summary.pending == 0 and summary.counts == {("webhook-1", "sent"): 1}


def test_a_dead_deliverers_claim_ends_and_a_retry_waits_its_backoff(open_store):
    first, second = open_store(), open_store()
    first.record_alert(change(), ["webhook-1"])
    [row] = first.claim_deliveries("dead", hold=0.0)  # its holder died: the claim ends at once
    [again] = second.claim_deliveries("next-leader", hold=30.0)
    assert again.id == row.id and again.attempts == 2
    assert not first.finish_delivery(row.id, "dead", "sent")  # the dead claimer's late word counts for nothing
    assert second.finish_delivery(row.id, "next-leader", "retry", "HTTP 503", retry_in=60.0)
    assert second.claim_deliveries("next-leader", hold=30.0) == []  # due in a minute
    summary = second.alert_summary()
    assert summary.pending == 1 and summary.last_failure.last_error == "HTTP 503"


def test_concurrent_claimers_never_share_a_row(open_store):
    writer = open_store()
    for number in range(30):
        writer.record_alert(change(key=f"job:{number}", event=f"e{number}"), ["webhook-1"])
    claimed: list[list[int]] = [[] for _ in range(3)]

    def claim(slot: int) -> None:
        mine = open_store()
        while rows := mine.claim_deliveries(f"deliverer-{slot}", hold=30.0, limit=3):
            claimed[slot].extend(row.id for row in rows)

    threads = [threading.Thread(target=claim, args=(slot,)) for slot in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    everything = [row for rows in claimed for row in rows]
    assert sorted(everything) == sorted(set(everything)) and len(everything) == 30


def test_a_former_leaders_alert_is_refused_by_the_fence(tmp_path):
    leader = postgres_store(tmp_path, 5)
    try:
        old = PostgresLease(leader, 10.0).acquire("host-a", 1, "session-a")
        PostgresLease(leader, 10.0).release(old)
        new = PostgresLease(leader, 10.0).acquire("host-b", 2, "session-b")
        with pytest.raises(FencedOut):
            leader.fenced(old.epoch, old.session).record_alert(change(), ["webhook-1"])
        assert leader.alert_states() == {} and leader.deliveries() == []
        assert leader.fenced(new.epoch, new.session).record_alert(change(), ["webhook-1"])
    finally:
        postgres_store.cleanup(tmp_path)
