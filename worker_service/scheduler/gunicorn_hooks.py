"""What ``gunicorn.conf.py``'s hooks do, kept here so the config file stays declarative.

* ``on_starting`` (master): validate the settings and the jobs file, so a bad
  value stops the service before any worker starts, with one line and exit
  code 78 (EX_CONFIG); record when the service started, for uptime.
* ``on_reload`` (master, SIGHUP): re-validate and log a broken jobs file.
* ``post_fork`` (each worker): stand by for the scheduler lock.
* ``worker_abort`` / ``worker_exit`` (the worker): stop the scheduler and free
  the lock; a graceful stop lets running jobs finish.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from . import UNDER_GUNICORN

EX_CONFIG = 78
STARTED_AT = "WORKER_SERVICE_STARTED_AT"

_leadership: Any = None
_aborting = False


def on_starting(server: Any) -> None:
    """Validate configuration in the master; exit 78 with one line if it is bad."""
    os.environ[UNDER_GUNICORN] = "1"
    os.environ.setdefault(STARTED_AT, repr(time.time()))
    problem = validate_configuration()
    if problem:
        print(f"worker-service: {problem}", file=sys.stderr, flush=True)
        raise SystemExit(EX_CONFIG)


def validate_configuration() -> str | None:
    """Return one line describing what is wrong with the settings or jobs file, or ``None``."""
    from ..config import ConfigError, load_settings
    from .jobs_file import JobsFileError, load_jobs_file

    try:
        settings = load_settings()
        load_jobs_file(settings["WORKER_JOBS_FILE"], settings["SCHEDULER_TIMEZONE"])
    except (ConfigError, JobsFileError) as error:
        return str(error)
    return None


def on_reload(server: Any) -> None:
    """SIGHUP: the new workers will read the jobs file again; say loudly if it is now broken."""
    problem = validate_configuration()
    if problem:
        server.log.error("reload: %s; the new workers will run NO scheduler until this is fixed", problem)


def post_fork(server: Any, worker: Any) -> None:
    """In the new worker: stand by for the scheduler lock (never in the master)."""
    global _leadership
    from .. import runtime
    from ..logging_setup import configure_logging
    from .leadership import SchedulerLeadership

    settings = runtime.settings()
    configure_logging(settings["LOG_LEVEL"])
    os.makedirs(settings["WORKER_STATE_DIR"], exist_ok=True)
    _leadership = SchedulerLeadership(settings, runtime.store())
    _leadership.stand_by()


def worker_abort(worker: Any) -> None:
    """gunicorn is killing this worker (timeout): stop without waiting for jobs."""
    global _aborting
    _aborting = True


def worker_exit(server: Any, worker: Any) -> None:
    """The worker is leaving: stop the scheduler, then free the lock for a standby worker."""
    if _leadership is not None:
        _leadership.stop(wait=not _aborting)
