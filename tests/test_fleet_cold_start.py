"""A fleet host that boots before its state database starts anyway, says why its scheduler is unavailable, and
joins by itself once the database answers (it used to exit 78 for good under the shipped unit's
RestartPreventExitStatus=78). Only what can never work still exits 78.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.fleet import Fleet
from tests.support.servers import Gunicorn, base_env, wait_until

TTL, DB_TIMEOUT = 10.0, 2.0  # the defaults: the promise is made for them
JOIN_BOUND = 10.0  # the promise: the host leads within 10 s of the database answering
OUTAGE = 8.0  # seconds the database stays away after the start: the candidates' retries back off to their cap
PASSWORD = "Canary-cold-start-7f3a"
ROOT = Path(__file__).resolve().parents[1]


def _scheduler(host) -> dict:
    """/health's status code, and the scheduler's line of /health?verbose."""
    status = host.server.get("/health", timeout=5)[0]
    text = host.server.get("/health?verbose=1", timeout=5)[2]
    line = next((line for line in str(text).splitlines() if "scheduler" in line), "")
    return {"status": status, "message": line}


@pytest.mark.parametrize(("fault", "reason", "checked"), [
    ("cut", "connection refused", "connection refused"),  # refused
    ("freeze", "no answer within", "timed out"),  # accepted, never answered: /health's read has its own deadline
])
def test_a_host_that_boots_before_its_state_database_joins_once_it_answers(tmp_path, fault, reason, checked):
    fleet = Fleet(tmp_path, names=("a",), ttl=TTL, timeout=DB_TIMEOUT, workers=2, tick=1.0)
    a = fleet.hosts["a"]
    a.env["STATE_DATABASE_URL"] = a.env["STATE_DATABASE_URL"].replace("postgres@", f"postgres:{PASSWORD}@")
    getattr(a.proxy, fault)()  # the database does not answer: refused, or accepted and never answered
    try:
        a.start()  # the master starts and /health/live answers (Gunicorn.start waits for it)
        down_since = time.monotonic()
        seen = wait_until(lambda: (s := _scheduler(a))["status"] == 503 and "cannot reach" in s.get("message", "")
                          and s, timeout=20, what="the scheduler unavailable, with the reason")
        assert reason in seen["message"], seen
        assert "warning: STATE_DATABASE_URL: cannot connect" in a.server.stderr()
        assert a.running and a.server.get("/health/live")[0] == 200

        # check-config is a check: it still says it cannot connect, exit 78.
        done = subprocess.run([sys.executable, "-m", "worker_service.cli", "check-config"], env=a.env,
                              capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert done.returncode == 78 and "cannot connect:" in done.stderr and checked in done.stderr, done.stderr

        time.sleep(max(OUTAGE - (time.monotonic() - down_since), 0))  # the outage lasts OUTAGE s in all
        a.proxy.restore()
        answered = time.monotonic()
        wait_until(lambda: _scheduler(a)["status"] == 200,
                   timeout=JOIN_BOUND + 5, interval=0.2, what="the host joined")
        joined = time.monotonic() - answered
        assert joined <= JOIN_BOUND, f"joined {joined:.1f} s after the database answered (bound {JOIN_BOUND} s)"
        fleet.wait_for_ticks(2, timeout=10, host=a)
        for text in (a.server.stderr(), a.server.stdout(), done.stderr):
            assert PASSWORD not in text
    finally:
        fleet.close()


def test_only_what_can_never_work_exits_78_at_start(tmp_path):
    """A URL with another scheme can never work: exit 78 with one line, as before."""
    server = Gunicorn(base_env(tmp_path / "state", STATE_DATABASE_URL="mysql://u:Secret-pw-1@127.0.0.1/db"), tmp_path)
    server.start(wait=False)
    assert server.process.wait(timeout=60) == 78
    lines = [line for line in server.stderr().splitlines() if "STATE_DATABASE_URL" in line]
    assert lines and "must be a URL starting with" in lines[-1] and "Secret-pw-1" not in server.stderr()
