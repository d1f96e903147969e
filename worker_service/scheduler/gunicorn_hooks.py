"""What ``gunicorn.conf.py``'s worker-side hooks do.

The master-side hooks (``on_starting``, ``on_reload``) live in gunicorn.conf.py
and run ``worker-service check-config`` in a child process, so the master never
imports this package and a reload brings new code.

* ``post_fork`` (each worker): keep the listening sockets out of children that
  jobs fork, and stand by for the scheduler lock.
* ``worker_abort`` / ``worker_exit`` (the worker): stop the scheduler and free
  the lock; a graceful stop lets running jobs finish.
"""

from __future__ import annotations

from typing import Any

EX_CONFIG = 78
STARTED_AT = "WORKER_SERVICE_STARTED_AT"

_leadership: Any = None
_aborting = False


def validate_configuration() -> str | None:
    """Return one line describing what is wrong with the settings or jobs file, or ``None``."""
    from ..config import ConfigError, load_settings
    from ..state.setup import check_state_store
    from .jobs_file import JobsFileError, load_jobs_file

    try:
        settings = load_settings()
        load_jobs_file(settings["WORKER_JOBS_FILE"], settings["SCHEDULER_TIMEZONE"])
    except (ConfigError, JobsFileError) as error:
        from common.helpers.health import redact

        return redact(str(error))  # an import error of a job module may quote anything
    return check_state_store(settings)


def post_fork(server: Any, worker: Any) -> None:
    """In the new worker: stand by for the scheduler lock (never in the master)."""
    global _leadership
    from .. import runtime
    from ..fork_safety import protect_listeners
    from ..logging_setup import configure_logging
    from .leadership import SchedulerLeadership

    protect_listeners(getattr(worker, "sockets", ()))
    settings = runtime.settings()
    configure_logging(settings["LOG_LEVEL"])
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
