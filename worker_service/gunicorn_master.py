"""What gunicorn.conf.py runs before the package may be imported. Standard library only.

gunicorn.conf.py loads this file by path (:func:`importlib.util.spec_from_file_location`),
because the gunicorn master must never import the ``worker_service`` package:
every worker then imports the code and the job modules afresh after fork, so
``kill -HUP`` (``systemctl reload``) brings new code. Nothing here imports
``worker_service`` at module level; the worker-side hooks hand over to
:mod:`worker_service.scheduler.gunicorn_hooks` inside the new worker only.

The package imports the names below (``worker_service.gunicorn_master``), so
each is defined once.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

UNDER_GUNICORN = "WORKER_SERVICE_UNDER_GUNICORN"  # set in the master: post_fork runs the election, never create_app
STARTED_AT = "WORKER_SERVICE_STARTED_AT"  # the master's wall-clock start, epoch seconds
STARTED_MONOTONIC = "WORKER_SERVICE_STARTED_MONOTONIC"  # the master's time.monotonic() at start
EX_CONFIG = 78  # sysexits.h: configuration error

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
CHECK_CONFIG_TIMEOUT = 120.0  # seconds; a jobs file imports job modules, which may be slow

_HERE = Path(__file__).resolve().parent
_early_stops: list[int] = []


def mark_under_gunicorn() -> None:
    """Tell ``create_app`` it runs under gunicorn, so it never starts a scheduler (post_fork does).

    Called while gunicorn reads its config file: ``--preload`` loads the app in
    the master before any hook runs. Not ``raw_env``: a ``-e`` flag on the
    command line would replace it.
    """
    os.environ[UNDER_GUNICORN] = "1"


def int_env(name: str, default: int, minimum: int = 1) -> int:
    """The whole number in environment variable ``name`` (``default`` if unset or empty).

    A value that is not a whole number of at least ``minimum`` prints one line
    and exits ``EX_CONFIG``, as every other bad setting does.
    """
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        print(f"worker-service: configuration error: {name}={raw!r} must be a whole number of at least {minimum}",
              file=sys.stderr)
        raise SystemExit(EX_CONFIG)
    return value


def load_sibling(name: str) -> ModuleType:
    """This directory's ``<name>.py``, loaded by path (never through the package)."""
    spec = importlib.util.spec_from_file_location(f"_worker_service_{name}", _HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def logconfig() -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: key=value lines (logfmt.py) on stderr, access lines as they are on stdout.

    Workers add a redacting filter to these handlers in post_fork
    (``worker_service.logging_setup``).
    """
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"logfmt": {"()": load_sibling("logfmt").LogfmtFormatter},
                       "plain": {"format": "%(message)s"}},
        "handlers": {
            "error": {"class": "logging.StreamHandler", "formatter": "logfmt", "stream": "ext://sys.stderr"},
            "access": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stdout"},
        },
        "root": {"level": "WARNING", "handlers": ["error"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
        },
    }


def configuration_problem() -> str | None:
    """Run ``worker-service check-config`` in a child process; return its one-line complaint, if any."""
    done = subprocess.run([sys.executable, "-m", "worker_service.cli", "check-config"],
                          capture_output=True, text=True, timeout=CHECK_CONFIG_TIMEOUT)
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"worker-service: check-config failed with exit code {done.returncode}"


def on_starting(server: Any) -> None:
    """Master, before binding: a bad setting or jobs file exits 78 with one line; record the start time.

    A good jobs file is kept as the last good copy (see :func:`on_reload`).
    """
    os.environ.setdefault(STARTED_AT, repr(time.time()))
    os.environ.setdefault(STARTED_MONOTONIC, repr(time.monotonic()))
    jobs = _JobsFileCheck()
    problem = configuration_problem()
    if problem:
        print(problem, file=sys.stderr, flush=True)
        raise SystemExit(EX_CONFIG)
    jobs.found_good(server)


def on_reload(server: Any) -> None:
    """Master, SIGHUP: check the configuration as the new workers will read it, as ``nginx -s reload`` does.

    A good jobs file becomes the last good copy and clears any earlier
    problem. A broken one is logged and recorded with the time it was first
    found broken (``reload_state``): the new workers schedule the last good
    copy instead, and every worker's ``/health`` says ``degraded`` and why,
    until a reload with a good file.
    """
    jobs = _JobsFileCheck()
    problem = configuration_problem()
    if not problem:
        jobs.found_good(server)
        return
    problem = problem.removeprefix("worker-service: ")
    if jobs.path is None or not problem.startswith("jobs file "):
        server.log.error("reload: %s; the new workers may fail to start the scheduler until this is fixed", problem)
        return
    state = _reload_state()
    state.record_problem(jobs.directory, jobs.path, problem)
    last_good = state.read_last_good(jobs.directory)
    if last_good is None or last_good["path"] != jobs.path:
        server.log.error("reload: %s; no last good copy of it is kept, so the new workers will run NO scheduler "
                         "until this is fixed", problem)
        return
    saved = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(last_good["saved_at"]))
    server.log.error("reload: %s; the scheduler keeps the last good job set (the file as it was at %s) until the "
                     "file is fixed and reloaded again", problem, saved)


class _JobsFileCheck:
    """The jobs file as read just before the check-config child reads it, kept only if it did not change meanwhile."""

    def __init__(self) -> None:
        state = _reload_state()
        self.path = os.environ.get("WORKER_JOBS_FILE") or None  # unset: the built-in jobs, part of the code
        self.directory = state.state_dir()
        self.text = state.read_text(self.path) if self.path else None

    def found_good(self, server: Any) -> None:
        """The check passed: keep this text as the last good copy, and forget an earlier problem."""
        if self.path is None or self.text is None:
            return
        state = _reload_state()
        if state.read_text(self.path) != self.text:
            server.log.warning("the jobs file %s changed while it was being checked; it is read again when a "
                               "worker leads", self.path)
            return
        if not state.save_last_good(self.directory, self.path, self.text):
            server.log.warning("could not keep a copy of the jobs file in %s: a broken file at a later reload "
                               "would stop the scheduler", self.directory)
        state.clear_problem(self.directory)


def _reload_state() -> ModuleType:
    """``reload_state.py``, loaded by path once (the master never imports the package)."""
    global _reload_state_module
    if _reload_state_module is None:
        _reload_state_module = load_sibling("reload_state")
    return _reload_state_module


_reload_state_module: ModuleType | None = None


def capture_early_stops() -> None:
    """Note a stop signal that reaches a booting worker, to deliver it again in ``post_worker_init``.

    A new worker runs the master's signal handlers (inherited through fork)
    until gunicorn installs its own, after ``post_fork``: a SIGTERM then was
    lost and the stop waited out the graceful timeout. So this runs first
    thing in ``post_fork``, before any slow import.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda number, frame: _early_stops.append(number))


def post_fork(server: Any, worker: Any) -> None:
    """New worker: capture early stops, then stand by for the scheduler lock (worker_service's hook)."""
    capture_early_stops()
    _worker_hooks().post_fork(server, worker)


def post_worker_init(worker: Any) -> None:
    """New worker, gunicorn's handlers in place: deliver the first early stop, if any."""
    _worker_hooks().post_worker_init(worker, _early_stops[:1])


def worker_abort(worker: Any) -> None:
    """The worker is being killed (timeout): its scheduler stops without waiting for jobs."""
    _worker_hooks().worker_abort(worker)


def worker_exit(server: Any, worker: Any) -> None:
    """The worker is leaving: stop the scheduler and free the lock."""
    if os.getpid() != worker.pid:  # gunicorn also calls it in the master for a worker already gone
        return
    _worker_hooks().worker_exit(server, worker)


def _worker_hooks() -> ModuleType:
    """``worker_service.scheduler.gunicorn_hooks``: imported in a worker, after fork, never in the master."""
    return importlib.import_module("worker_service.scheduler.gunicorn_hooks")
