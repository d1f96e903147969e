"""A fleet host whose wall clock is off by more than SCHEDULER_MAX_CLOCK_SKEW never leads, and says so.

A leader runs the jobs at its own wall clock's times: a host an hour behind that won the lease waited for its stored
next-run times and ran nothing while it led. Real gunicorn hosts on one PostgreSQL, each with its wall clock shifted
by tests/support/clock_offset (the monotonic clock is left alone, as on a real host).
"""

from __future__ import annotations

import time

from tests.support.fleet import Fleet, check, skewed_fleet
from tests.support.servers import wait_until

TTL = 3.0
TICK = 1.0
HANDOVER = TTL / 3 + 2 * TTL / 4 + 1.0 + 2.0  # a stopping leader's handover wait, plus a loaded machine


def _skewed_fleet(tmp_path, offsets: dict[str, float]) -> Fleet:
    return skewed_fleet(tmp_path, offsets, ttl=TTL, timeout=TTL / 4, workers=2, tick=TICK)


def _scheduler_line(host) -> tuple[int, str]:
    status = host.server.get("/health", timeout=5)[0]
    text = str(host.server.get("/health?verbose=1", timeout=5)[2])
    return status, next((line for line in text.splitlines() if "scheduler" in line), "")


def test_a_host_an_hour_behind_never_leads_and_says_why(tmp_path):
    fleet = _skewed_fleet(tmp_path, {"late": -3600.0, "good": 0.0})
    late, good = fleet.hosts["late"], fleet.hosts["good"]
    try:
        fleet.start(["late"])  # alone: it must not lead
        status, line = wait_until(lambda: (seen := _scheduler_line(late))[0] == 503 and "behind" in seen[1] and seen,
                                  timeout=15, what="the lone skewed host saying why nobody leads")
        assert "3600" in line and "SCHEDULER_MAX_CLOCK_SKEW" in line, line
        assert fleet.leader() is None
        assert "stays a standby" in late.server.stderr()

        fleet.start(["good"])
        assert fleet.wait_for_leader(timeout=15) is good
        fleet.wait_for_ticks(3, timeout=10, host=good)
        status, line = wait_until(lambda: (seen := _scheduler_line(late))[0] == 200 and "behind" in seen[1] and seen,
                                  timeout=10, what="the skewed host degraded, naming its clock")
        assert "degraded" in str(late.server.get("/health")[2])
        assert _scheduler_line(good) == (200, _scheduler_line(good)[1]) and "behind" not in _scheduler_line(good)[1]
        assert late.server.stderr().count("stays a standby") <= 2  # once per candidate process, not per poll
        assert all(change.to_pid not in late.pids() for change in fleet.changes())
    finally:
        fleet.close()


def test_a_leader_whose_clock_drifts_past_the_bound_hands_over(tmp_path):
    fleet = _skewed_fleet(tmp_path, {"a": 0.0, "b": 0.0})
    a, b = fleet.hosts["a"], fleet.hosts["b"]
    try:
        fleet.start(["a"])
        assert fleet.wait_for_leader(timeout=15) is a
        fleet.start(["b"])
        fleet.wait_for_ticks(2, timeout=10, host=a)
        (tmp_path / "offset-a").write_text("90")  # a's clock jumps 90 s ahead while it leads
        drifted = time.monotonic()
        assert fleet.wait_for_leader(timeout=TTL / 3 + HANDOVER, other_than=a) is b
        assert time.monotonic() - drifted <= TTL / 3 + HANDOVER
        before = fleet.db_now()
        fleet.wait_for_ticks(3, timeout=10, host=b, after=before)
        result = check(fleet.ticks(), TICK)
        assert not result["duplicates"] and not result["stale"] and not result["overlaps"], result
        assert fleet.changes()[-1].reason in ("handover", "released"), fleet.changes()[-1]
        wait_until(lambda: "ahead" in _scheduler_line(a)[1], timeout=10, what="a naming its clock")
    finally:
        fleet.close()
