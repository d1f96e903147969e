"""gunicorn settings for worker-service. Command-line flags (-b, -w, ...) override these.

Loaded as ``gunicorn -c python:worker_service.gunicorn.conf`` (what
``worker-service serve`` runs, from any directory) or by path through the
source tree's top-level gunicorn.conf.py (``make run``): one configuration.

Environment: WEB_CONCURRENCY (workers, default 2), GUNICORN_THREADS (threads
per worker, default 4), GUNICORN_BIND (default 127.0.0.1:8000, for development;
in production a unix socket behind nginx, see deploy/), GUNICORN_TIMEOUT
(default 30), GUNICORN_GRACEFUL_TIMEOUT (default 30).

The master never keeps the worker_service package (a reload must bring new
code): the master's hooks live in master.py, loaded by path (standard library
only); each worker hands over to :mod:`worker_service.gunicorn.hooks` after fork.
Imported as a module, this file brings the package's (light) ``__init__`` into
the master; ``on_starting`` and ``on_reload`` drop it again before any worker is
forked (``master.forget_package``). Standard library only, no relative import:
gunicorn may load this file by path, outside the package.
"""

import importlib
import importlib.util
import os
from types import ModuleType
from typing import Any


def _load_master() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "_worker_service_gunicorn_master", os.path.join(os.path.dirname(os.path.abspath(__file__)), "master.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


master = _load_master()
# The variables below, validated (empty = unset; a bad value: one line, exit 78), as check-config does.
_server = master.server_settings_or_exit()

# Before the app can be loaded (--preload loads it in the master before any hook runs).
master.mark_under_gunicorn()

# gthread: a slow dependency holds one thread, never the whole worker, and the
# worker keeps telling the master it is alive, so it is not killed on timeout.
worker_class = "gthread"
workers = _server["workers"]
threads = _server["threads"]
# Loopback only by default (`make run`). gthread reads requests in its worker threads,
# so slow clients can hold them all: never expose gunicorn itself; nginx goes in
# front (deploy/: a unix socket, nginx buffers every request before passing it on).
bind = _server["bind"]
# Applied by gunicorn around the bind of a unix socket only (not systemd's UMask=, which
# it overrides there; not the files workers write): srwxrwx---, the service's user and
# group. The shipped unit makes that group nginx's (Group=www-data), so nginx can connect
# and no other local user can.
umask = 0o007
timeout = _server["timeout"]
graceful_timeout = _server["graceful_timeout"]
keepalive = 5
# gunicorn 24+ opens a control socket at one fixed path per user; two services
# on a host would fight over it, and nothing here uses it.
control_socket_disable = True

# Logs: access lines on stdout, everything else on stderr, as key=value pairs.
# %(U)s is the path without its query string, so no token in a URL is logged.
# The logger class (worker_service/logfmt.py) writes %(t)s as ISO 8601 and escapes every value.
accesslog = "-"
errorlog = "-"
access_log_format = (
    'ts=%(t)s level=INFO logger=gunicorn.access remote=%(h)s method=%(m)s path="%(U)s" '
    'status=%(s)s bytes=%(B)s duration_ms=%(M)s agent="%(a)s"'
)
logger_class = master.logger_class()
logconfig_dict = master.logconfig()

# Hooks: the master checks the configuration in a child process (exit 78 on a bad one);
# each worker hands over to worker_service.gunicorn.hooks after fork.
on_starting = master.on_starting
on_reload = master.on_reload


def _worker_hooks() -> ModuleType:
    """``worker_service.gunicorn.hooks``: imported in a worker, after fork, never in the master."""
    return importlib.import_module("worker_service.gunicorn.hooks")


def post_fork(server: Any, worker: Any) -> None:
    """New worker: capture early stops, then stand by for the scheduler lock (worker_service's hook)."""
    master.capture_early_stops()
    _worker_hooks().post_fork(server, worker)


def post_worker_init(worker: Any) -> None:
    """New worker, gunicorn's handlers in place: deliver the first early stop, if any."""
    _worker_hooks().post_worker_init(worker, master.early_stops())


def worker_abort(worker: Any) -> None:
    """The worker is being killed (timeout): its scheduler stops without waiting for jobs."""
    _worker_hooks().worker_abort(worker)


def worker_exit(server: Any, worker: Any) -> None:
    """The worker is leaving: stop the scheduler and free the lock."""
    if os.getpid() != worker.pid:  # gunicorn also calls it in the master for a worker already gone
        return
    _worker_hooks().worker_exit(server, worker)
