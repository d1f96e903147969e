"""gunicorn settings for worker-service. Command-line flags (-b, -w, ...) override these.

Environment: WEB_CONCURRENCY (workers, default 2), GUNICORN_THREADS (threads
per worker, default 4), GUNICORN_BIND (default 127.0.0.1:8000, for development;
in production a unix socket behind nginx, see deploy/), GUNICORN_TIMEOUT
(default 30), GUNICORN_GRACEFUL_TIMEOUT (default 30).
"""

import importlib.util
import os
import signal
import subprocess
import sys
import time

# Nothing from worker_service is imported in the master: every worker imports
# the code (and the job modules) afresh after fork, so `kill -HUP` (systemctl
# reload) brings new code. The names below mirror worker_service.scheduler.
UNDER_GUNICORN = "WORKER_SERVICE_UNDER_GUNICORN"
STARTED_AT = "WORKER_SERVICE_STARTED_AT"
STARTED_MONOTONIC = "WORKER_SERVICE_STARTED_MONOTONIC"
EX_CONFIG = 78

# Set before the app can be loaded (--preload loads it in the master before any
# hook runs), so create_app never starts a scheduler under gunicorn: post_fork does.
os.environ[UNDER_GUNICORN] = "1"


def _int_env(name: str, default: int, minimum: int = 1) -> int:
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


# gthread: a slow dependency holds one thread, never the whole worker, and the
# worker keeps telling the master it is alive, so it is not killed on timeout.
worker_class = "gthread"
workers = _int_env("WEB_CONCURRENCY", 2)
threads = _int_env("GUNICORN_THREADS", 4)
# Loopback only by default (`make run`). gthread reads requests in its worker threads,
# so slow clients can hold them all: never expose gunicorn itself; nginx goes in
# front (deploy/: a unix socket, nginx buffers every request before passing it on).
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",")
# Applied by gunicorn around the bind of a unix socket only (not systemd's UMask=, which
# it overrides there; not the files workers write): srwxrwx---, the service's user and
# group. The shipped unit makes that group nginx's (Group=www-data), so nginx can connect
# and no other local user can.
umask = 0o007
timeout = _int_env("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int_env("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = 5

# Logs: access lines on stdout, everything else on stderr, as key=value pairs.
# %(U)s is the path without its query string, so no token in a URL is logged.
accesslog = "-"
errorlog = "-"
access_log_format = (
    'ts=%(t)s level=INFO logger=gunicorn.access remote=%(h)s method=%(m)s path="%(U)s" '
    'status=%(s)s bytes=%(B)s duration_ms=%(M)s agent="%(a)s"'
)


def _logfmt_formatter():
    """worker_service/logfmt.py, loaded by path: the master must not import the package."""
    spec = importlib.util.spec_from_file_location(
        "_worker_service_logfmt", os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker_service", "logfmt.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.LogfmtFormatter


# Workers add a redacting filter to these handlers in post_fork (worker_service.logging_setup).
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"logfmt": {"()": _logfmt_formatter()}},
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
logconfig_dict["formatters"]["plain"] = {"format": "%(message)s"}


def _configuration_problem() -> str | None:
    """Run `worker-service check-config` in a child process; return its one-line complaint, if any."""
    done = subprocess.run([sys.executable, "-m", "worker_service.cli", "check-config"],
                          capture_output=True, text=True, timeout=120)
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return lines[-1] if lines else f"worker-service: check-config failed with exit code {done.returncode}"


def on_starting(server):
    """Master, before binding: a bad setting or jobs file exits 78 with one line; record the start time."""
    os.environ.setdefault(STARTED_AT, repr(time.time()))
    os.environ.setdefault(STARTED_MONOTONIC, repr(time.monotonic()))
    problem = _configuration_problem()
    if problem:
        print(problem, file=sys.stderr, flush=True)
        raise SystemExit(EX_CONFIG)


def on_reload(server):
    """Master, SIGHUP: new workers will read the jobs file again; say loudly if it is now broken."""
    problem = _configuration_problem()
    if problem:
        server.log.error("reload: %s; the new workers will run NO scheduler until this is fixed",
                         problem.removeprefix("worker-service: "))


# Worker-side hooks: see worker_service/scheduler/gunicorn_hooks.py for what each does and why.
# A new worker runs the master's signal handlers until gunicorn installs its own, after
# post_fork: a stop signal then would be lost. Note it first thing, deliver it again later.
_early_stop = []


def post_fork(server, worker):
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, lambda number, frame: _early_stop.append(number))
    from worker_service.scheduler import gunicorn_hooks

    gunicorn_hooks.post_fork(server, worker)


def post_worker_init(worker):
    from worker_service.scheduler import gunicorn_hooks

    gunicorn_hooks.post_worker_init(worker, _early_stop[:1])


def worker_abort(worker):
    from worker_service.scheduler import gunicorn_hooks

    gunicorn_hooks.worker_abort(worker)


def worker_exit(server, worker):
    if os.getpid() != worker.pid:  # gunicorn also calls it in the master for a worker already gone
        return
    from worker_service.scheduler import gunicorn_hooks

    gunicorn_hooks.worker_exit(server, worker)

# gunicorn 24+ opens a control socket at one fixed path per user; two services
# on a host would fight over it, and nothing here uses it.
control_socket_disable = True
