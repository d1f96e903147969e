"""Two fleet hosts with the same host name (cloned VMs, containers) are two hosts, not one.

Every simulated host here runs on this machine, so every pair of them shares one host name: exactly the clones'
case. The identity a record carries is the host name plus an instance id made by each gunicorn master
(worker_service.host_identity); people still read the host name.
"""

from __future__ import annotations

import socket

from tests.support.fleet import Fleet
from tests.support.servers import wait_until
from worker_service.host_identity import host_label

TTL = 3.0
TAKEOVER = TTL + TTL / 3 + 1.5

SLOW_JOB = """
[jobs.slow]
name = "Slow"
func = "tests.support.sample_jobs:slow"
trigger = "interval"
seconds = 2
misfire_grace_time = 30
kwargs = {{ seconds = 30, path = "{marks}" }}
"""


def _scheduler(host) -> tuple[int, str]:
    """One answer of /health?verbose: its status code and its scheduler line."""
    status, _, text = host.server.get("/health?verbose=1", timeout=5)
    return status, next((line for line in str(text).splitlines() if "scheduler" in line), "")


def test_twin_host_names_are_two_hosts_for_a_cut_off_standby_and_for_a_run_lost_with_its_host(tmp_path):
    marks = tmp_path / "slow.txt"
    # One worker per host: what a cut-off host says rests on the leader its worker read last (per process).
    fleet = Fleet(tmp_path, names=("a", "b"), ttl=TTL, timeout=TTL / 4, workers=1, tick=1.0,
                  jobs=SLOW_JOB.format(marks=marks))
    a, b = fleet.hosts["a"], fleet.hosts["b"]
    try:
        fleet.start(["a"])
        assert fleet.wait_for_leader(timeout=15) is a
        fleet.start(["b"])
        wait_until(lambda: b.server.get("/health")[0] == 200, timeout=10, what="b reading a's leadership")
        lease = fleet.lease()
        assert host_label(lease.holder_host) == socket.gethostname() and lease.holder_host != socket.gethostname()

        # 1. b cannot reach the database; a, on another host of the same name, still leads. b used to say the
        #    leader "was on this host, which cannot renew its lease either" (unavailable).
        b.proxy.cut()
        status, line = wait_until(lambda: (found := _scheduler(b)) and "cannot reach" in found[1] and found,
                                  timeout=10, what="b's scheduler line after the cut")
        assert "on this host" not in line, line
        assert status == 200 and f"leader was {socket.gethostname()} pid" in line, (status, line)
        assert "#" not in line  # people read the host name
        b.proxy.restore()
        wait_until(lambda: (found := _scheduler(b))[0] == 200 and "cannot reach" not in found[1],
                   timeout=10, what="b reading the database again")

        # 2. The whole of a dies mid-run: its processes are gone, but it was another host than b. The run used to be
        #    recorded as a crash (crash hold, a step towards quarantine).
        wait_until(lambda: marks.exists() and "start" in marks.read_text(), timeout=10, what="the slow run going")
        a.kill()
        assert fleet.wait_for_leader(timeout=TAKEOVER + 5, other_than=a) is b
        run = wait_until(lambda: next((r for r in fleet.store.runs("slow") if r.outcome in ("lost", "crashed")), None),
                         timeout=10, what="the killed run settled")
        assert run.outcome == "lost", run
        assert f"on host {socket.gethostname()} (pid" in run.error_message and "#" not in run.error_message
        assert fleet.store.crash_state("slow").consecutive == 0
    finally:
        fleet.close()
