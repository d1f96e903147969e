"""Fleet throughput (issue 21): runs/s of no-op jobs on 1 and 3 hosts, and what each run costs PostgreSQL.

Many no-op jobs (``tests.support.sample_jobs:noop``, default 600 of them every
1 s: more than one host runs today) on fleets of 1 and 3 local hosts
(JOB_EXECUTOR_THREADS=10, SCHEDULER_LEASE_TTL=10, 2 workers a host), each fleet
on a PostgreSQL database of its own, so the database's statistics are the
fleet's alone. Scenarios: (a) 1 host ``run_on = "any"``, (b) 3 hosts ``"any"``,
(c) 3 hosts ``"leader"`` (today's behaviour), optionally (d) 1 host
``"leader"``. Each is measured for a window (default 30 s) after a warm-up.

Figures: runs/s (the store's run counters, ``job_stats`` success + error,
between the window's ends), slots missed and skipped at max_instances in the
window, and per run: PostgreSQL transactions (``pg_stat_database.xact_commit``),
rows written (``n_tup_ins + n_tup_upd + n_tup_del`` of the store's tables, and
the table that takes most), the server's time in statements
(``pg_stat_database.active_time``), the CPU time of the database's backends
serving the fleet and of the hosts' gunicorn processes. These are totals over
the window divided by runs: the fleet's fixed work (lease, heartbeats, health
checks) is in them. pg_stat_statements is not used: it needs
``shared_preload_libraries`` (a server restart), which this script does not
change; statement counts are therefore counted as transactions and row writes.
PostgreSQL 15 publishes a backend's statistics at most once a second (an idle
one's within 10 s), so the window's ends are blurred by about a second each.

Usage: .venv/bin/python bench/fleet_throughput.py [--only a,b,c,d] [--jobs 600] [--window 30] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.lib.fleet_runs import (  # noqa: E402
    NOOP,
    BenchFleet,
    Unsupported,
    job_toml,
    log,
    main_commit,
    own_database,
    run_on_key,
    stop_on_signals,
    table,
)
from tests.support.pg import admin  # noqa: E402

SCENARIOS = {
    "a": ("1 host, run_on any", ("a",), "any"),
    "b": ("3 hosts, run_on any", ("a", "b", "c"), "any"),
    "c": ("3 hosts, run_on leader (today)", ("a", "b", "c"), "leader"),
    "d": ("1 host, run_on leader (today)", ("a",), "leader"),
}


@dataclasses.dataclass
class Snapshot:
    at: float
    runs: int
    missed: int
    skipped: int
    db: dict[str, float]
    tables: dict[str, int]
    backend_cpu: dict[int, float]
    host_cpu: dict[int, float]
    machine_busy: float  # CPU seconds the whole machine has spent busy


def machine_busy() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


@dataclasses.dataclass
class Result:
    name: str
    note: str = ""
    seconds: float = 0.0
    runs: int = 0
    missed: int = 0
    skipped: int = 0
    xacts: float = 0.0
    rows: float = 0.0
    top_table: str = ""
    active_ms: float = 0.0
    backend_cpu_ms: float = 0.0
    host_cpu_ms: float = 0.0
    other_cpu: float = 0.0  # share of the machine's CPUs busy with anything but the fleet and its backends
    tables: dict[str, float] = dataclasses.field(default_factory=dict)


def cpu_of(pids: list[int]) -> dict[int, float]:
    found = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            found[pid] = times.user + times.system
    return found


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two readings by the processes of the second (a new process: all it used)."""
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


def snapshot(fleet: BenchFleet, url: str) -> Snapshot:
    schema = fleet.fleet.schema
    with admin(url) as db:
        runs, missed, skipped = db.execute(
            f'SELECT coalesce(sum(success_count + error_count), 0), coalesce(sum(missed_count), 0), '
            f'coalesce(sum(max_instances_count), 0) FROM "{schema}".job_stats').fetchone()
        columns = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted", "active_time")
        values = db.execute(f"SELECT {', '.join(columns)} FROM pg_stat_database WHERE datname = current_database()"
                            ).fetchone()
        tables = {name: int(writes) for name, writes in db.execute(
            "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE schemaname = %s",
            (schema,)).fetchall()}
        backends = [pid for (pid,) in db.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()]
        at = float(db.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()[0])
    host_pids = [pid for host in fleet.hosts.values() for pid in host.pids()]
    return Snapshot(at, int(runs), int(missed), int(skipped), dict(zip(columns, map(float, values), strict=True)),
                    tables, cpu_of(backends), cpu_of(host_pids), machine_busy())


def one(key: str, options: argparse.Namespace, workdir: Path) -> Result:
    name, hosts, mode = SCENARIOS[key]
    result = Result(name)
    try:
        run_on = run_on_key(mode)
    except Unsupported as error:
        result.note = str(error)
        return result

    def jobs(table_name: str, url: str) -> str:
        return "\n".join(job_toml(f"noop{i:04d}", NOOP, options.interval, run_on) for i in range(1, options.jobs + 1))

    env = {"JOB_EXECUTOR_THREADS": str(options.threads), "SERVICE_NAME": f"fleet-throughput-{key}"}
    with own_database() as url:
        fleet = BenchFleet(workdir / key, hosts, jobs, ttl=options.ttl, database_url=url, **env)
        try:
            fleet.start()
            fleet.fleet.wait_for_leader(timeout=90)
            deadline = time.monotonic() + 90
            while snapshot(fleet, url).runs == 0:
                fleet.check_alive()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{name}: no run counted in 90 s; logs in {workdir / key}")
                time.sleep(0.5)
            log(f"{name}: running; warming up {options.warmup:g} s")
            time.sleep(options.warmup)
            before = snapshot(fleet, url)
            time.sleep(options.window)
            fleet.check_alive()
            after = snapshot(fleet, url)
        finally:
            fleet.close()
    result.seconds = after.at - before.at
    result.runs = after.runs - before.runs
    result.missed = after.missed - before.missed
    result.skipped = after.skipped - before.skipped
    per = max(result.runs, 1)
    result.xacts = (after.db["xact_commit"] + after.db["xact_rollback"] - before.db["xact_commit"]
                    - before.db["xact_rollback"]) / per
    result.tables = {table_name: (after.tables.get(table_name, 0) - before.tables.get(table_name, 0)) / per
                     for table_name in after.tables}
    result.rows = sum(result.tables.values())
    if result.tables:
        top = max(result.tables, key=result.tables.get)
        result.top_table = f"{top} {result.tables[top]:.2f}"
    result.active_ms = (after.db["active_time"] - before.db["active_time"]) / per
    result.backend_cpu_ms = 1000 * cpu_delta(before.backend_cpu, after.backend_cpu) / per
    result.host_cpu_ms = 1000 * cpu_delta(before.host_cpu, after.host_cpu) / per
    ours = cpu_delta(before.backend_cpu, after.backend_cpu) + cpu_delta(before.host_cpu, after.host_cpu)
    capacity = (psutil.cpu_count() or 1) * max(result.seconds, 1e-9)
    result.other_cpu = max(0.0, after.machine_busy - before.machine_busy - ours) / capacity
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="a,b,c", help="comma-separated subset of a,b,c,d (d: 1 host, leader)")
    parser.add_argument("--jobs", type=int, default=600, help="no-op jobs (default 600)")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between a job's slots (default 1)")
    parser.add_argument("--threads", type=int, default=10, help="JOB_EXECUTOR_THREADS (default 10)")
    parser.add_argument("--ttl", type=float, default=10.0, help="SCHEDULER_LEASE_TTL (default 10)")
    parser.add_argument("--window", type=float, help="seconds measured (default 30, quick 10)")
    parser.add_argument("--warmup", type=float, help="seconds of runs before the window (default 8, quick 4)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the scenarios, interleaved (a,b,c,a,b,c,...)")
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    options.window = options.window or (10.0 if options.quick else 30.0)
    options.warmup = options.warmup if options.warmup is not None else (4.0 if options.quick else 8.0)
    keys = [key for key in options.only.split(",") if key in SCENARIOS]
    stop_on_signals()
    command = "python bench/fleet_throughput.py " + " ".join(sys.argv[1:])
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="fleet-throughput-") as work:
        for round_number in range(1, options.rounds + 1):
            for key in keys:
                log(f"scenario {key}: {SCENARIOS[key][0]} (round {round_number} of {options.rounds})")
                result = one(key, options, Path(work) / f"round{round_number}")
                if options.rounds > 1:
                    result.name += f", round {round_number}"
                results.append(result)
    offered = options.jobs / options.interval
    print()
    print(f"`{command.strip()}` — {platform.node()}, {psutil.cpu_count()} CPUs, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {main_commit()}; {options.jobs} no-op jobs "
          f"every {options.interval:g} s ({offered:g} runs/s offered), JOB_EXECUTOR_THREADS={options.threads}, "
          f"SCHEDULER_LEASE_TTL={options.ttl:g}, 2 workers a host, {options.window:g} s measured after "
          f"{options.warmup:g} s of warm-up; each fleet on a database of its own")
    print()
    rows: list[list[Any]] = []
    for r in results:
        if r.note:
            rows.append([r.name, "–", "–", "–", "–", "–", "–", "–", "–", r.note])
            continue
        rate = r.runs / r.seconds if r.seconds else 0.0
        rows.append([r.name, f"{rate:.0f}", f"{r.missed} / {r.skipped}", f"{r.xacts:.2f}", f"{r.rows:.2f}",
                     r.top_table, f"{r.active_ms:.2f}", f"{r.backend_cpu_ms:.2f}", f"{r.host_cpu_ms:.2f}",
                     f"{100 * r.other_cpu:.0f} %"])
    print(table(["scenario", "runs/s", "missed / skipped (max_instances)", "transactions per run",
                 "rows written per run", "most written table (rows per run)", "PostgreSQL active ms per run",
                 "PostgreSQL backend CPU ms per run", "hosts' CPU ms per run",
                 "CPU busy with anything else"], rows))
    print()
    for r in results:
        if r.tables:
            parts = ", ".join(f"{name} {value:.2f}" for name, value in sorted(r.tables.items(), key=lambda i: -i[1])
                              if value)
            print(f"- {r.name}: rows written per run by table: {parts or 'none'}")
    print("\nPer run = the window's totals over its runs (the fleet's fixed work included). Goal (issue 21): no "
          "regression of runs/s against today's leader-only fleet; today's per-run store cost: 3 writes, 2.1 ms "
          "(bench/pg_store_cost.py).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
