"""Job functions the tests' jobs files point at (``tests.support.sample_jobs:<name>``)."""

from __future__ import annotations

import os
import time


def append_pid(path: str) -> None:
    """Append '<pid> <epoch> <slot>' to ``path``: one line per run, from whichever process runs it.

    ``slot`` is the scheduled time the scheduler ran it for (tracking's current
    run), so a test can tell a late run of one slot from a second run of the next.
    """
    from worker_service.scheduler.tracking import current_run

    run = current_run()
    slot = f" {run.scheduled_at:.6f}" if run is not None and run.scheduled_at is not None else ""
    with open(path, "a") as handle:
        handle.write(f"{os.getpid()} {time.time():.6f}{slot}\n")


def slow(seconds: float = 0.2, path: str | None = None) -> None:
    """Sleep ``seconds``; with ``path``, write 'start' and 'end' lines around it."""
    if path:
        with open(path, "a") as handle:
            handle.write(f"start {os.getpid()} {time.time():.6f}\n")
    time.sleep(seconds)
    if path:
        with open(path, "a") as handle:
            handle.write(f"end {os.getpid()} {time.time():.6f}\n")


def always_fail() -> None:
    """Fail every time, with a secret-looking value in the message that must be redacted."""
    raise RuntimeError("upstream refused: password=canary-job-secret")


def noop() -> None:
    """Do nothing (for measuring tracking overhead)."""


def exit_process(path: str | None = None) -> None:
    """Kill the process running the job at once (a poison job), after noting the run in ``path``."""
    if path:
        append_pid(path)
    os._exit(1)


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("no text for you")


def raise_unprintable() -> None:
    """Fail with an exception whose ``__str__`` itself raises."""
    raise _Unprintable()


def raise_huge(size: int = 10_000_000) -> None:
    """Fail with an exception carrying a ``size``-character message (and a password to mask)."""
    raise RuntimeError("password=canary-huge-secret " + "x" * size)


def fork_and_linger(how: str, seconds: float, pids_path: str, runs_path: str | None = None) -> None:
    """Start a child that outlives the job by ``seconds``: ``fork`` (returns into the executor), ``multiprocessing``
    (fork start method) or ``subprocess``; append the child's pid to ``pids_path``."""
    import multiprocessing
    import subprocess

    if runs_path:
        append_pid(runs_path)
    if how == "fork":
        pid = os.fork()
        if pid == 0:  # the child sleeps, then returns into APScheduler's executor like the job would
            time.sleep(seconds)
            return
    elif how == "multiprocessing":
        child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(seconds,), daemon=True)
        child.start()
        pid = child.pid
    else:
        pid = subprocess.Popen(["sleep", str(seconds)]).pid
    with open(pids_path, "a") as handle:
        handle.write(f"{pid}\n")


TICK_WATCHDOG = 3.0  # seconds a tick's connection may live: a silent network path must not hang the job thread


def fleet_tick(table: str, hold: float = 0.0, idle: float = 0.0, resource: str = "ticks",
               idle_timeout: float | None = None) -> None:
    """Record this run in PostgreSQL ``table`` (``schema.table``): its slot, wall and database time, host label, pid and epoch; fenced.

    The example of a job fenced by its lease epoch, as README's "Several hosts"
    says: :func:`worker_service.fencing.fenced_transaction` claims the fence row
    of ``resource`` for this process's epoch (refused once another epoch leads,
    or a newer one wrote) and the insert commits in the same transaction.
    After the insert, ``hold`` keeps the transaction working that many seconds
    (statements of half a second: a long job), then ``idle`` keeps it open and
    idle at the server (a job computing between statements, or cut off).
    ``idle_timeout`` is the transaction's idle bound at the server (the TTL by
    default). ``FLEET_HOST`` names the host.
    """
    from worker_service import runtime
    from worker_service.fencing import fenced_transaction
    from worker_service.scheduler.tracking import current_run

    run = current_run()
    slot = run.scheduled_at if run is not None and run.scheduled_at is not None else time.time()
    target = ".".join(f'"{part}"' for part in table.split("."))
    # libpq has no read timeout: a silent network path must not hang the job thread (the watchdog cuts the socket).
    with fenced_transaction(resource, timeout=TICK_WATCHDOG + hold + idle, idle_timeout=idle_timeout) as db:
        # The epoch this transaction fenced with: the fence row is ours (locked) until the commit.
        schema = runtime.settings()["STATE_DATABASE_SCHEMA"]
        (epoch,) = db.execute(f'SELECT epoch FROM "{schema}".fences WHERE resource = %s', (resource,)).fetchone()
        db.execute(f'INSERT INTO {target} (slot, wall, host, pid, epoch) VALUES (%s, %s, %s, %s, %s)',
                   (slot, time.time(), os.environ.get("FLEET_HOST", "?"), os.getpid(), epoch))
        until = time.monotonic() + hold
        while time.monotonic() < until:  # a long job at work in its transaction
            db.execute("SELECT pg_sleep(%s)", (min(0.5, max(until - time.monotonic(), 0.0)),))
        if idle:
            time.sleep(idle)  # the transaction stays open, idle at the server


def raise_control_characters() -> None:
    """Fail with a message holding a terminal escape, BEL, CR, NUL, a direction override and a forged log line."""
    raise RuntimeError("red \x1b[31mALERT\x07 back\rover nul\x00 rtl\u202eevil\nts=forged level=CRITICAL msg=\"forged\"")


def fail_while(path: str) -> None:
    """Fail (with a secret-looking value to redact) while ``path`` exists; succeed otherwise (a flapping job)."""
    if os.path.exists(path):
        raise RuntimeError("upstream refused: token=canary-alert-secret-0001")


def sleep_from(path: str) -> None:
    """Sleep for the seconds written in ``path`` (0 if it is missing): a job whose runs grow on request."""
    try:
        with open(path) as handle:
            seconds = float(handle.read().strip() or 0)
    except OSError:
        seconds = 0.0
    time.sleep(seconds)


def fail_while_noting(flag: str, notes: str) -> None:
    """As :func:`fail_while`, and note the time of each failure in ``notes`` (bench/alert_latency.py)."""
    if os.path.exists(flag):
        with open(notes, "a") as handle:
            handle.write(f"{time.time():.6f}\n")
        raise RuntimeError("failing on purpose")


def record_run(url: str, table: str, sleep: float = 0.0) -> None:
    """Note this run's start in PostgreSQL ``table`` (``schema.table``), sleep ``sleep`` s, then note its end.

    A row per run: job id, slot (the scheduled time tracking gives the run; the
    wall clock if there is none, with ``tracked`` false), host label
    (``FLEET_HOST``), pid, the host's wall clock and the database's clock at the
    start, the database's clock at the end. No fencing and no connection held
    while sleeping (an I/O-bound job of the fleet benchmarks, bench/fleet_*.py):
    whatever ran the run, it shows, so a slot run twice shows too.
    """
    import psycopg

    from worker_service.scheduler.tracking import current_run

    run = current_run()
    tracked = run is not None and run.scheduled_at is not None
    slot = run.scheduled_at if tracked else time.time()
    job = run.job_id if run is not None else "?"
    target = ".".join(f'"{part}"' for part in table.split("."))
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as db:
        (row_id,) = db.execute(
            f"INSERT INTO {target} (job, slot, host, pid, wall, tracked) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
            (job, slot, os.environ.get("FLEET_HOST", "?"), os.getpid(), time.time(), tracked)).fetchone()
    if sleep:
        time.sleep(sleep)
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as db:
            db.execute(f"UPDATE {target} SET ended = extract(epoch FROM clock_timestamp()) WHERE id = %s", (row_id,))


WORK_TABLE_DDL = """
CREATE TABLE {table} (
    id bigserial PRIMARY KEY, job text NOT NULL, slot float8 NOT NULL, host text NOT NULL, pid int NOT NULL,
    run_id bigint, started float8 NOT NULL DEFAULT extract(epoch FROM clock_timestamp()), ended float8
)"""


def fleet_work(table: str, seconds: float = 0.0) -> None:
    """A unit of a fleet's shared work: note its start (job, slot, host, pid, run) in ``table``, sleep, note its end.

    Written through the host's own STATE_DATABASE_URL (its proxy: a host cut off cannot note anything), unfenced:
    the table shows what really ran where and when, whatever the fence would have refused.
    """
    import psycopg

    from worker_service import runtime
    from worker_service.scheduler.tracking import current_run

    run = current_run()
    job = run.job_id if run is not None else "?"
    slot = run.scheduled_at if run is not None and run.scheduled_at is not None else time.time()
    run_id = run.run_id if run is not None else None
    url = runtime.settings()["STATE_DATABASE_URL"]
    target = ".".join(f'"{part}"' for part in table.split("."))
    with psycopg.connect(url, autocommit=True, connect_timeout=2) as db:
        (row_id,) = db.execute(f"INSERT INTO {target} (job, slot, host, pid, run_id) VALUES (%s, %s, %s, %s, %s)"
                               " RETURNING id", (job, slot, os.environ.get("FLEET_HOST", "?"), os.getpid(),
                                                 run_id)).fetchone()
    time.sleep(seconds)
    with psycopg.connect(url, autocommit=True, connect_timeout=2) as db:
        db.execute(f"UPDATE {target} SET ended = extract(epoch FROM clock_timestamp()) WHERE id = %s", (row_id,))
