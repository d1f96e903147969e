"""Job functions the tests' jobs files point at (``tests.support.sample_jobs:<name>``)."""

from __future__ import annotations

import contextlib
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


def fleet_tick(table: str) -> None:
    """Record this run in PostgreSQL ``table`` (``schema.table``): its slot, wall and database time, host label, pid and epoch; fenced.

    The example of a job fenced by its lease epoch (``runtime.fencing_token()``),
    on the state database: one transaction first takes ``FOR SHARE`` on the lease
    row with this epoch, then inserts. An acquire by another host (an UPDATE of
    that row) waits for the commit, and a tick that waited for an acquire finds
    no row with its epoch and writes nothing. ``FLEET_HOST`` names the host.
    """
    import socket
    import threading

    import psycopg

    from worker_service import runtime
    from worker_service.scheduler.tracking import current_run
    from worker_service.state.faults import FencedOut

    settings = runtime.settings()
    epoch = runtime.fencing_token()
    if epoch is None:
        raise FencedOut("not leading: no fencing token")
    run = current_run()
    slot = run.scheduled_at if run is not None and run.scheduled_at is not None else time.time()
    schema = settings["STATE_DATABASE_SCHEMA"]
    with psycopg.connect(settings["STATE_DATABASE_URL"], connect_timeout=2) as db:
        def cut() -> None:  # libpq has no read timeout: shut the socket down at the deadline
            with contextlib.suppress(OSError):
                socket.socket(fileno=os.dup(db.fileno())).shutdown(socket.SHUT_RDWR)

        watchdog = threading.Timer(TICK_WATCHDOG, cut)
        watchdog.daemon = True
        watchdog.start()
        try:
            held = db.execute(f'SELECT 1 FROM "{schema}".lease WHERE name = %s AND epoch = %s FOR SHARE',
                              ("scheduler", epoch)).fetchone()
            if held is None:
                raise FencedOut(f"fenced out: epoch {epoch} no longer holds the scheduler lease")
            target = ".".join(f'"{part}"' for part in table.split("."))
            db.execute(f'INSERT INTO {target} (slot, wall, host, pid, epoch) VALUES (%s, %s, %s, %s, %s)',
                       (slot, time.time(), os.environ.get("FLEET_HOST", "?"), os.getpid(), epoch))
        finally:
            watchdog.cancel()


def raise_control_characters() -> None:
    """Fail with a message holding a terminal escape, BEL, CR, NUL, a direction override and a forged log line."""
    raise RuntimeError("red \x1b[31mALERT\x07 back\rover nul\x00 rtl\u202eevil\nts=forged level=CRITICAL msg=\"forged\"")
