"""gunicorn settings for worker-service. Command-line flags (-b, -w, ...) override these.

Environment: WEB_CONCURRENCY (workers, default 2), GUNICORN_THREADS (threads
per worker, default 4), GUNICORN_BIND (default 127.0.0.1:8000, for development;
in production a unix socket behind nginx, see deploy/), GUNICORN_TIMEOUT
(default 30), GUNICORN_GRACEFUL_TIMEOUT (default 30).

The master never imports the worker_service package (a reload must bring new
code): the hooks live in worker_service/gunicorn_master.py, loaded by path.
"""

import importlib.util
import os


def _load_by_path(relative):
    spec = importlib.util.spec_from_file_location(
        "_worker_service_gunicorn_master", os.path.join(os.path.dirname(os.path.abspath(__file__)), relative))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


master = _load_by_path("worker_service/gunicorn_master.py")
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
# each worker hands over to worker_service.scheduler.gunicorn_hooks after fork.
on_starting = master.on_starting
on_reload = master.on_reload
post_fork = master.post_fork
post_worker_init = master.post_worker_init
worker_abort = master.worker_abort
worker_exit = master.worker_exit
