"""gunicorn settings for worker-service. Command-line flags (-b, -w, ...) override these.

Environment: WEB_CONCURRENCY (workers, default 2), GUNICORN_THREADS (threads
per worker, default 4), GUNICORN_BIND (default 127.0.0.1:8000),
GUNICORN_TIMEOUT (default 30), GUNICORN_GRACEFUL_TIMEOUT (default 30).
"""

import os
import sys

from worker_service.scheduler import UNDER_GUNICORN, gunicorn_hooks

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
        raise SystemExit(gunicorn_hooks.EX_CONFIG)
    return value


# gthread: a slow dependency holds one thread, never the whole worker, and the
# worker keeps telling the master it is alive, so it is not killed on timeout.
worker_class = "gthread"
workers = _int_env("WEB_CONCURRENCY", 2)
threads = _int_env("GUNICORN_THREADS", 4)
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").split(",")
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
logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"logfmt": {"()": "worker_service.logging_setup.LogfmtFormatter"}},
    "filters": {"redact": {"()": "common.helpers.health.RedactingFilter"}},
    "handlers": {
        "error": {"class": "logging.StreamHandler", "formatter": "logfmt", "filters": ["redact"], "stream": "ext://sys.stderr"},
        "access": {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stdout"},
    },
    "root": {"level": "WARNING", "handlers": ["error"]},
    "loggers": {
        "gunicorn.error": {"level": "INFO", "handlers": ["error"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
    },
}
logconfig_dict["formatters"]["plain"] = {"format": "%(message)s"}


# Hooks: see worker_service/scheduler/gunicorn_hooks.py for what each does and why.
on_starting = gunicorn_hooks.on_starting
on_reload = gunicorn_hooks.on_reload
post_fork = gunicorn_hooks.post_fork
worker_abort = gunicorn_hooks.worker_abort
worker_exit = gunicorn_hooks.worker_exit

# gunicorn 24+ opens a control socket at one fixed path per user; two services
# on a host would fight over it, and nothing here uses it.
control_socket_disable = True
