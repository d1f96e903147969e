"""Failover of the fleet's scheduler: three local hosts at the default lease TTL, one fault at a time to the leader.

Three gunicorn masters (2 workers each, own state directory, own TCP proxy to PostgreSQL) share one schema and run
the built-in jobs and a 1 s tick that writes every run, fenced by its lease epoch, into PostgreSQL (a trigger notes
the epoch holding the lease at each insert). Faults, each to the current leader's host: a graceful stop, a reload
(SIGHUP), SIGKILL of its whole gunicorn, SIGSTOP of it for TTL + 5 s, a partition that refuses (the proxy cut) and
one that goes silent (the proxy frozen) for TTL + 5 s, and with --postgres-restart a restart of PostgreSQL itself
(`pg_ctlcluster 15 main restart`, as root; the script waits until it answers again). A stopped or killed host is
started again before the next fault.

Per fault: seconds until a new process holds the lease (by the database), seconds until the first tick of the new
leader, the longest gap between ticks across the fault and the slots missed (database clock). At the end: slots
checked, slots run twice, records of a stale epoch, ticks of an older epoch after a newer one (each must be 0).

Usage: .venv/bin/python bench/failover.py [--ttl 10] [--postgres-restart] [--only stop,hup,kill,stop,...]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.fleet import BUILTIN_JOBS, Fleet, Host, check, fault_gap  # noqa: E402
from tests.support.servers import wait_until  # noqa: E402

TICK = 1.0
FAULTS = ("stop", "hup", "kill", "sigstop", "cut", "freeze", "postgres")
NAMES = {
    "stop": "graceful stop (SIGTERM) of the leader's host",
    "hup": "reload (SIGHUP) of the leader's host",
    "kill": "SIGKILL of the leader's whole gunicorn",
    "sigstop": "SIGSTOP of the leader's whole gunicorn for TTL + 5 s",
    "cut": "partition, refused (proxy cut) for TTL + 5 s",
    "freeze": "partition, silent (proxy frozen) for TTL + 5 s",
    "postgres": "PostgreSQL restart (pg_ctlcluster 15 main restart)",
}


@dataclasses.dataclass
class Row:
    fault: str
    new_leader: float | None = None  # seconds from the fault until another process held the lease
    first_tick: float | None = None  # seconds from the fault until the new leader's first tick
    gap: float = 0.0
    missed: int = 0
    epoch_before: int = 0
    epoch_after: int = 0
    start: float = 0.0
    end: float = 0.0


def steady(fleet: Fleet, ticks: int = 3, timeout: float = 60) -> Host:
    """Wait until one host leads and has ticked ``ticks`` times from now; return it."""
    now = fleet.db_now()
    fleet.wait_for_ticks(ticks, timeout=timeout, after=now)
    return fleet.wait_for_leader(timeout=timeout)


def postgres_up(timeout: float = 60) -> None:
    wait_until(lambda: subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q"]).returncode == 0,
               timeout=timeout, interval=0.2, what="PostgreSQL to answer")


def one_fault(fleet: Fleet, fault: str, ttl: float) -> Row:
    leader = steady(fleet)
    lease = fleet.lease()
    row = Row(fault, epoch_before=lease.epoch)
    old_pid = lease.holder_pid
    hold = ttl + 5
    row.start = fleet.db_now()
    began = time.monotonic()
    stopper: threading.Thread | None = None
    if fault == "stop":
        stopper = threading.Thread(target=leader.stop, daemon=True)  # returns once the host has gone
        stopper.start()
    elif fault == "hup":
        leader.reload()
    elif fault == "kill":
        leader.kill()
    elif fault == "sigstop":
        leader.freeze()
    elif fault in ("cut", "freeze"):
        getattr(leader.proxy, fault)()
    elif fault == "postgres":
        subprocess.run(["pg_ctlcluster", "15", "main", "restart"], check=True, timeout=120)
    try:
        if fault == "postgres":
            postgres_up()
            # The leader may keep its lease through a short restart: then "new leader" stays empty.
            deadline = time.monotonic() + 2 * ttl
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    current = fleet.lease()
                    if current.live and current.holder_pid != old_pid:
                        row.new_leader = time.monotonic() - began
                        break
                time.sleep(0.05)  # polling the lease to a deadline
        else:
            wait_until(lambda: (current := fleet.lease()).live and current.holder_pid != old_pid,
                       timeout=3 * ttl + 30, interval=0.05, what="a new leader")
            row.new_leader = time.monotonic() - began
        kept = row.new_leader is None  # a PostgreSQL restart the leader rode out: its own next tick counts
        first = wait_until(lambda: [t for t in fleet.ticks() if t.db_time > row.start
                                    and (kept or t.epoch != row.epoch_before)], timeout=3 * ttl + 30, interval=0.1,
                           what="the new leader's first tick")
        row.first_tick = min(t.db_time for t in first) - row.start
        if fault in ("sigstop", "cut", "freeze"):
            time.sleep(max(0.0, began + hold - time.monotonic()))  # the fault lasts this long
    finally:
        if fault == "sigstop":
            leader.thaw()
        elif fault in ("cut", "freeze"):
            leader.proxy.restore()
        elif fault == "postgres":
            postgres_up()
    if stopper is not None:
        stopper.join(timeout=60)
    if fault in ("stop", "kill"):
        leader.start(wait=True)
    steady(fleet, ticks=4)
    row.end = fleet.db_now()
    row.epoch_after = fleet.lease().epoch
    ticks = fleet.ticks()
    row.gap = fault_gap(ticks, row.start, row.end)
    window = [t for t in ticks if row.start - TICK <= t.db_time <= row.end]
    row.missed = len(check(window, TICK)["missed"]) if window else 0
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ttl", type=float, default=10.0, help="SCHEDULER_LEASE_TTL (default 10, the default)")
    parser.add_argument("--timeout", type=float, default=2.0, help="STATE_DATABASE_TIMEOUT (default 2, the default)")
    parser.add_argument("--postgres-restart", action="store_true", help="also restart PostgreSQL (root)")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(FAULTS)}")
    options = parser.parse_args()
    faults = [f for f in (options.only.split(",") if options.only else FAULTS) if f in FAULTS]
    if "postgres" in faults and not options.postgres_restart and not options.only:
        faults.remove("postgres")
    command = " ".join(["python", "bench/failover.py", *map(shlex.quote, sys.argv[1:])])
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="failover-") as work:
        fleet = Fleet(Path(work), ttl=options.ttl, timeout=options.timeout, workers=2, tick=TICK,
                      jobs=BUILTIN_JOBS.format(sync=30), SERVICE_NAME=f"failover-bench-{int(time.time())}")
        try:
            fleet.start()
            steady(fleet, ticks=3)
            for fault in faults:
                print(f"... {NAMES[fault]}", flush=True)
                rows.append(one_fault(fleet, fault, options.ttl))
            ticks = fleet.ticks()
            totals = check(ticks, TICK)
            changes = fleet.changes()
        finally:
            if "postgres" in faults:
                postgres_up()
            fleet.close()
    print()
    print(f"`{command}` — {platform.node()}, {platform.machine()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"3 hosts x 2 workers, SCHEDULER_LEASE_TTL={options.ttl:g}, STATE_DATABASE_TIMEOUT={options.timeout:g}, "
          f"a {TICK:g} s tick")
    print()
    print("| fault | new leader after (s) | its first tick after (s) | longest gap between ticks (s) | slots missed | epoch |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        leader = f"{row.new_leader:.2f}" if row.new_leader is not None else "kept (same holder)"
        first = f"{row.first_tick:.2f}" if row.first_tick is not None else "–"
        print(f"| {NAMES[row.fault]} | {leader} | {first} | {row.gap:.2f} | {row.missed} | "
              f"{row.epoch_before} → {row.epoch_after} |")
    print()
    print(f"Slots checked: {totals['slots']}; run twice: {len(totals['duplicates'])}; records of a stale epoch: "
          f"{len(totals['stale'])}; ticks of an older epoch after a newer one: {len(totals['overlaps'])}; "
          f"changes of leader: {len(changes)} ({', '.join(sorted({c.reason for c in changes}))}).")
    failed = totals["duplicates"] or totals["stale"] or totals["overlaps"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
