"""Alerts in a fleet: two hosts on PostgreSQL, one notification per change, and a leader killed mid-delivery.

The receiver hangs the first try of the failing job's alert, so the leader is
inside its delivery (the outbox row claimed, nothing recorded as sent) when
its whole gunicorn is killed. The other host takes the lease, the dead
claim ends, and the new leader sends that same row: accepted once, with the
id and host of the change the first leader recorded, never recorded again.
"""

from __future__ import annotations

import signal

from tests.support.alert_receiver import AlertReceiver
from tests.support.fleet import fleet
from tests.support.servers import wait_until

FAILING_JOB = """
[jobs.fleetfail]
func = "tests.support.sample_jobs:fail_while"
trigger = "interval"
seconds = 0.5
args = ["{flag}"]
"""


def test_a_leader_killed_inside_a_delivery_leaves_it_to_the_next_leader_which_sends_it_once(tmp_path):
    receiver = AlertReceiver(lambda path, payload, tries: None if tries == 0 else 200)
    flag = tmp_path / "flag"
    flag.write_text("fail")
    try:
        # ALERT_TIMEOUT 2 s: the leader is killed well inside its first try, never after it gave it up itself.
        with fleet(tmp_path, names=("a", "b"), ttl=2.0, timeout=0.5, jobs=FAILING_JOB.format(flag=flag),
                   JOB_FAILURE_THRESHOLD="2", ALERT_WEBHOOK_URLS=f"{receiver.url}/hook", ALERT_TIMEOUT="2",
                   ALERT_DISK_PERCENT="0", ALERT_MEMORY_PERCENT="0", ALERT_ERROR_RATE_PERCENT="0") as hosts:
            [first_try] = wait_until(lambda: receiver.requests("/hook", subject="fleetfail"), timeout=30,
                                     what="the first (hung) try")
            leader = hosts.leader()
            assert leader is not None
            leader.signal_all(signal.SIGKILL)  # inside its try: the row is claimed, not sent
            leader.server.process.wait(timeout=10)

            [sent] = receiver.wait_for(1, 30, "/hook", subject="fleetfail", status="firing")
            assert sent["id"] == first_try[2]["id"]  # the same row the first leader recorded, not a new change
            assert len(receiver.requests("/hook", subject="fleetfail")) == 2  # the hung try, and the next process's
            survivor = hosts.wait_for_leader(10)
            assert survivor is not leader
            states = hosts.store.alert_states()
            assert states["job:fleetfail"].seq == 1  # the change was recorded once, by the first leader
            [row] = [d for d in hosts.store.deliveries(50) if d.key == "job:fleetfail"]
            wait_until(lambda: [d for d in hosts.store.deliveries(50) if d.key == "job:fleetfail"][0].outcome == "sent",
                       timeout=5, what="the row recorded as sent")
            flag.unlink()
            receiver.wait_for(1, 30, "/hook", subject="fleetfail", status="resolved")
            assert [p["status"] for p in receiver.accepted("/hook", subject="fleetfail")] == ["firing", "resolved"]
            assert row.attempts >= 1
    finally:
        receiver.close()
