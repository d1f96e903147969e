"""What the gunicorn master runs before the package may be imported. Standard library only.

:mod:`worker_service.gunicorn.conf` (gunicorn's configuration) loads this file
by path (:func:`importlib.util.spec_from_file_location`), because the gunicorn
master must never hold the ``worker_service`` package: every worker then
imports the code and the job modules afresh after fork, so ``kill -HUP``
(``systemctl reload``) brings new code. Nothing here imports ``worker_service``;
the worker-side hooks hand over to :mod:`worker_service.gunicorn.hooks` inside
the new worker only (conf.py does that, so this module knows nothing above it).

The package imports the names below (``worker_service.gunicorn.master``), so
each is defined once.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

UNDER_GUNICORN = "WORKER_SERVICE_UNDER_GUNICORN"  # set in the master: post_fork runs the election, never create_app
STARTED_AT = "WORKER_SERVICE_STARTED_AT"  # the master's wall-clock start, epoch seconds
STARTED_MONOTONIC = "WORKER_SERVICE_STARTED_MONOTONIC"  # the master's time.monotonic() at start
INSTANCE = "WORKER_SERVICE_INSTANCE"  # worker_service.host_identity.INSTANCE_VARIABLE (this file imports no package)
EX_CONFIG = 78  # sysexits.h: configuration error

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
CHECK_CONFIG_TIMEOUT = 120.0  # seconds; a jobs file imports job modules, which may be slow

_PACKAGE = Path(__file__).resolve().parent.parent  # worker_service/
_early_stops: list[int] = []


def mark_under_gunicorn() -> None:
    """Tell ``create_app`` it runs under gunicorn, so it never starts a scheduler (post_fork does).

    Called while gunicorn reads its config file: ``--preload`` loads the app in
    the master before any hook runs. Not ``raw_env``: a ``-e`` flag on the
    command line would replace it.
    """
    os.environ[UNDER_GUNICORN] = "1"


# gunicorn's own variables, read by worker_service/gunicorn/conf.py and checked by ``check-config``. An empty value counts as
# unset, as for every other variable (the env example says so).
DEFAULT_BIND = "127.0.0.1:8000"
SERVER_NUMBERS = {  # variable -> (gunicorn setting, default); each a whole number of at least 1
    "WEB_CONCURRENCY": ("workers", 2),
    "GUNICORN_THREADS": ("threads", 4),
    "GUNICORN_TIMEOUT": ("timeout", 30),
    "GUNICORN_GRACEFUL_TIMEOUT": ("graceful_timeout", 30),
}


class ServerConfigError(ValueError):
    """A bad gunicorn variable; ``str(error)`` is one line, ``configuration error: NAME='value' ...``."""


def whole_number(environ: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    """The whole number in variable ``name``: ``default`` if unset or empty, else at least ``minimum``."""
    raw = environ.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise ServerConfigError(f"configuration error: {name}={raw!r} must be a whole number of at least {minimum}")
    return value


def bind_addresses(environ: Mapping[str, str], name: str = "GUNICORN_BIND") -> list[str]:
    """The comma-separated addresses in ``name``: :data:`DEFAULT_BIND` if unset or empty.

    gunicorn reads an empty address (``"".split(",")`` is ``[""]``) or one with
    no host (``:8000``) as every interface, 0.0.0.0: both are refused, as is a
    port that is not one, so a slip never exposes gunicorn.
    """
    raw = environ.get(name, "")
    if raw == "":
        return [DEFAULT_BIND]
    addresses = [address.strip() for address in raw.split(",") if address.strip()]
    if not addresses:
        raise ServerConfigError(f"configuration error: {name}={raw!r} names no address "
                                f"(e.g. {DEFAULT_BIND} or unix:/run/worker-service/gunicorn.sock)")
    for address in addresses:
        problem = _address_problem(address)
        if problem:
            raise ServerConfigError(f"configuration error: {name}={raw!r}: {address!r} {problem}")
    return addresses


def _address_problem(address: str) -> str | None:
    """What is wrong with one gunicorn address (``unix:PATH``, ``fd://N``, ``HOST[:PORT]``, ``[IPv6][:PORT]``)."""
    if address.startswith("unix:"):
        return None if address.removeprefix("unix:").removeprefix("//") else "has no socket path"
    if address.startswith("fd://"):
        return None if address[5:].isdigit() else "is not a file descriptor number"
    netloc = address.removeprefix("tcp://")
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else (None if not rest else "")
    elif netloc.count(":") > 1:
        return "is an IPv6 address without brackets (e.g. [::1]:8000)"
    else:
        host, colon, port = netloc.partition(":")
        port = port if colon else None
    if not host:
        return "has no host: gunicorn would listen on every interface (write 0.0.0.0 if that is meant)"
    if port is not None and not (port.isdigit() and 1 <= int(port) <= 65535):
        return "has no valid port (1-65535)"
    return None


def server_settings(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """gunicorn's settings from its variables: ``workers``, ``threads``, ``timeout``, ``graceful_timeout``, ``bind``.

    Raises :class:`ServerConfigError` (one line) on a bad value.
    """
    environ = os.environ if environ is None else environ
    settings: dict[str, Any] = {setting: whole_number(environ, name, default)
                                for name, (setting, default) in SERVER_NUMBERS.items()}
    settings["bind"] = bind_addresses(environ)
    return settings


def server_settings_or_exit() -> dict[str, Any]:
    """:func:`server_settings` for the gunicorn configuration: a bad value prints one line and exits ``EX_CONFIG``."""
    try:
        return server_settings()
    except ServerConfigError as error:
        print(f"worker-service: {error}", file=sys.stderr)
        raise SystemExit(EX_CONFIG) from None


@functools.cache
def load_sibling(name: str) -> ModuleType:
    """The package's ``worker_service/<name>.py``, loaded by path (never through the package), once per process."""
    spec = importlib.util.spec_from_file_location(f"_worker_service_{name}", _PACKAGE / f"{name}.py")
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


def logger_class() -> type:
    """gunicorn's ``logger_class``: its own Logger, with logfmt access lines (an ISO ``ts``, escaped values)."""
    return load_sibling("logfmt").gunicorn_logger_class()


def configuration_problem(*options: str, warn: Callable[[str], None] | None = None) -> str | None:
    """Run ``worker-service check-config`` in a child process; return its one-line complaint, if any.

    Warnings it prints on success (a state database that does not answer yet,
    with ``--at-start``) go to ``warn`` (the master's log, so they read like its
    other lines), or to stderr as they are.
    """
    done = subprocess.run([sys.executable, "-m", "worker_service.cli", "check-config", *options],
                          capture_output=True, text=True, timeout=CHECK_CONFIG_TIMEOUT)
    if done.returncode == 0:
        for line in done.stderr.splitlines():
            if not line.strip():
                continue
            if warn is not None:
                warn(line.removeprefix("worker-service: "))
            else:
                print(line, file=sys.stderr, flush=True)
        return None
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"worker-service: check-config failed with exit code {done.returncode}"


def on_starting(server: Any) -> None:
    """Master, before binding: a bad setting or jobs file exits 78 with one line; record the start time.

    A state database that does not answer yet is a warning, not exit 78: the
    host starts and joins the fleet once it answers. A good jobs file is kept
    as the last good copy (see :func:`on_reload`).
    """
    os.environ.setdefault(STARTED_AT, repr(time.time()))
    os.environ.setdefault(STARTED_MONOTONIC, repr(time.monotonic()))
    os.environ[INSTANCE] = uuid.uuid4().hex[:12]  # worker_service.host_identity: new for every running master
    jobs = _JobsFileCheck()
    problem = configuration_problem("--at-start", warn=lambda line: server.log.warning("%s", line))
    if problem:
        print(problem, file=sys.stderr, flush=True)
        raise SystemExit(EX_CONFIG)
    jobs.found_good(server)
    forget_package(server)  # before the first worker is forked


def on_reload(server: Any) -> None:
    """Master, SIGHUP: check the configuration as the new workers will read it, as ``nginx -s reload`` does.

    A good jobs file becomes the last good copy and clears any earlier
    problem. A broken one is logged and recorded with the time it was first
    found broken (``reload_state``): the new workers schedule the last good
    copy instead, and every worker's ``/health`` says ``degraded`` and why,
    until a reload with a good file. A state database that does not answer is
    no reason to stop the scheduler either (the new workers join once it does).
    """
    forget_package(server)  # gunicorn has just read its configuration again; the new workers are forked next
    jobs = _JobsFileCheck()
    problem = configuration_problem("--at-start", warn=lambda line: server.log.warning("reload: %s", line))
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
        self.directory = load_sibling("state_dir").resolved_state_dir()
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
    """``worker_service/reload_state.py``, loaded by path once (the master never imports the package)."""
    return load_sibling("reload_state")


def capture_early_stops() -> None:
    """Note a stop signal that reaches a booting worker, to deliver it again in ``post_worker_init``.

    A new worker runs the master's signal handlers (inherited through fork)
    until gunicorn installs its own, after ``post_fork``: a SIGTERM then was
    lost and the stop waited out the graceful timeout. So this runs first
    thing in ``post_fork``, before any slow import.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda number, frame: _early_stops.append(number))


def early_stops() -> list[int]:
    """The first stop signal :func:`capture_early_stops` noted in this worker, if any (a list of at most one)."""
    return _early_stops[:1]


def forget_package(server: Any) -> None:
    """Drop every ``worker_service`` module from the master's ``sys.modules``, so the next workers import it afresh.

    ``gunicorn -c python:worker_service.gunicorn.conf`` (``worker-service
    serve``) imports the package's ``__init__`` and version to reach the
    configuration: a worker forked with them in ``sys.modules`` would keep the
    old ``create_app`` and the old version after an upgrade and a reload. The
    configuration module goes too, so that a reload, which imports it again,
    reads the new one. Loaded by path (the top-level gunicorn.conf.py), there
    is nothing to drop. With ``--preload`` the master holds the app itself,
    whose modules must stay the ones its workers use: then nothing is dropped
    (and, as gunicorn documents, a reload does not bring new code).
    """
    if getattr(getattr(server, "cfg", None), "preload_app", False):
        return
    for name in [name for name in sys.modules if name == "worker_service" or name.startswith("worker_service.")]:
        del sys.modules[name]
