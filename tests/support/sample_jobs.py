"""Job functions the tests' jobs files point at (``tests.support.sample_jobs:<name>``)."""

from __future__ import annotations

import os
import time


def append_pid(path: str) -> None:
    """Append '<pid> <epoch>' to ``path``: one line per run, from whichever process runs it."""
    with open(path, "a") as handle:
        handle.write(f"{os.getpid()} {time.time():.6f}\n")


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
