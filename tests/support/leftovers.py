"""Servers the tests start are registered here; the session fails if one is still running when it ends.

Every helper that starts a server process (gunicorn, redis-server, PostgreSQL,
nginx, HAProxy, PgBouncer, PostgREST) calls :func:`track` with it. At the end of
the session, each process still alive is named (with the test that started it),
stopped, and the session's exit status becomes 1: a test that starts a server
must stop it (a fixture), or every `make test` leaves one behind.

The check itself is the plugin tests/support/leftover_check.py (a separate module: the helpers import this one
before pytest could rewrite a plugin's asserts).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess

import psutil

PREFIX = "worker-service tests"
STOP_TIMEOUT = 5.0  # seconds a leftover gets to exit on SIGTERM before SIGKILL


@dataclasses.dataclass(frozen=True)
class Tracked:
    pid: int
    created: float  # psutil's create_time: a pid reused by another process is not this one
    what: str
    started_by: str


_tracked: list[Tracked] = []


def track(process: subprocess.Popen | int, what: str) -> None:
    """Register a server process (a Popen, or the pid of a daemon such as a postmaster) started by the current test."""
    pid = process if isinstance(process, int) else process.pid
    try:
        created = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return  # already gone: nothing can be left behind
    test = os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0] or "a fixture outside any test"
    _tracked.append(Tracked(pid, created, what, test))


def _alive(entry: Tracked) -> psutil.Process | None:
    try:
        process = psutil.Process(entry.pid)
        if process.create_time() != entry.created or process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.NoSuchProcess:
        return None


def _stop(process: psutil.Process) -> None:
    """SIGTERM the leftover and its children (a gunicorn master's workers), then SIGKILL what is still there."""
    try:
        family = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for member in family:
        try:
            member.terminate()
        except psutil.NoSuchProcess:
            pass
    _, still = psutil.wait_procs(family, timeout=STOP_TIMEOUT)
    for member in still:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass


def stop_leftovers() -> list[str]:
    """One line for each tracked server still running, which is then stopped; the registry is emptied."""
    lines = []
    for entry in _tracked:
        process = _alive(entry)
        if process is None:
            continue
        lines.append(f"{PREFIX}: {entry.what} (pid {entry.pid}) started by {entry.started_by} was still running "
                     "at the end of the session (stopped now); stop it in the test or its fixture")
        _stop(process)
    _tracked.clear()
    return lines
