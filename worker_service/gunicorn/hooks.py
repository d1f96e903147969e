"""What the gunicorn configuration's worker-side hooks do, once a new worker hands over to the package.

The configuration is :mod:`worker_service.gunicorn.conf`. The master-side hooks
(``on_starting``, ``on_reload``) live in :mod:`worker_service.gunicorn.master`,
loaded by path, and run ``worker-service check-config`` in a child process, so
the master never keeps this package and a reload brings new code.

* ``post_fork`` (each worker): keep the listening sockets out of children that
  jobs fork, and stand by for the scheduler lock (and, in a fleet, the lease).
* ``post_worker_init`` (each worker): start refreshing the health checks on a
  timer (the app is loaded, the worker's store and database are open);
  deliver a stop signal that came while it booted; on SIGTERM, stop standing by.
* ``worker_abort`` / ``worker_exit`` (the worker): stop refreshing the checks,
  stop the scheduler and free the lock; a graceful stop lets running jobs
  finish, and during a reload the leader first waits (bounded) for a new worker ready to take over. At a stop
  of the whole host, a fleet's leader first offers the lease to another host
  and keeps scheduling until one took it (bounded by half the graceful timeout).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

from .. import readiness
from .master import EX_CONFIG, STARTED_AT  # noqa: F401 (cli and the uptime import them from here)

SUCCESSOR_WAIT = 5.0  # seconds a leader stopping in a reload waits for a new worker ready to lead
# Seconds a new worker waits for its first health checks before it accepts connections: a first check that misses
# its deadline is retried once (2 x HEALTH_CHECK_TIMEOUT, 1 s by default), with room for a loaded host.
FIRST_CHECKS_WAIT = 1.5

_leadership: Any = None
_aborting = False


def validate_configuration(at_start: Callable[[str], None] | None = None) -> str | None:
    """Return one line describing what is wrong with the settings (gunicorn's too) or jobs file, or ``None``.

    ``at_start``: the service's own start, where a state database that does not
    answer yet is a warning passed to it, not a problem (a VM may boot first).
    """
    from common.helpers.health import redact

    from ..config import ConfigError, check_cleanup_dir, load_settings
    from ..scheduler.jobs_file import JobsFileError, load_jobs_file
    from ..state.setup import check_state_store
    from .master import ServerConfigError, server_settings

    try:
        settings = load_settings()
        server_settings()  # conf.py reads them in the master; check-config must refuse what it refuses
        load_jobs_file(settings["WORKER_JOBS_FILE"], settings["SCHEDULER_TIMEZONE"])
    except (ConfigError, ServerConfigError, JobsFileError) as error:
        return redact(str(error))  # an import error of a job module may quote anything
    problem = check_state_store(settings, at_start) or check_cleanup_dir(settings)
    return redact(problem) if problem else None  # a driver's reason may quote a host or a URL


def post_fork(server: Any, worker: Any) -> None:
    """In the new worker: build the process's resources and stand by for the scheduler lock (never in the master)."""
    global _leadership
    from .. import resources
    from ..alerts.component_checks import alert_component_checks
    from ..fork_safety import protect_listeners
    from ..scheduler.leadership import SchedulerLeadership

    protect_listeners(getattr(worker, "sockets", ()))
    owned = resources.current()  # the app this worker loads next takes this same set (create_app)
    _leadership = SchedulerLeadership(owned.settings, owned.store, owned.coordination.election,
                                      owned.coordination.lease,
                                      alert_component_checks(owned.settings, owned.cache, owned.database))
    _leadership.stand_by()


def post_worker_init(worker: Any, early_stop: list[int]) -> None:
    """gunicorn's handlers are in place: deliver a stop that came during boot; on SIGTERM, stop standing by.

    gunicorn installs a worker's own signal handlers only after ``post_fork``;
    until then the master's handlers, inherited through fork, would swallow a
    SIGTERM (a stop during a reload then waited out the whole graceful
    timeout). conf.py notes such a signal (``early_stop``); it is
    delivered again here.
    """
    original = signal.getsignal(signal.SIGTERM)

    def retire_then_exit(signum: int, frame: Any) -> None:
        readiness.current().begin_draining()  # /health/ready says 503 draining before gunicorn's handler runs
        if _leadership is not None:
            _leadership.retire()  # a worker on its way out must not become the leader
        if callable(original):
            original(signum, frame)

    signal.signal(signal.SIGTERM, retire_then_exit)
    from .. import health_refresh as refresh

    # The first checks begin now, not at the first probe (then once per HEALTH_CACHE_TTL), and the worker accepts
    # its first connection once they are done (a few ms) or FIRST_CHECKS_WAIT passed: a load balancer's first probe
    # of a new worker is answered `ready`, not `starting` (two of those in a row took a host out, fall 2).
    refresh.start(wait=0.0 if early_stop else FIRST_CHECKS_WAIT)
    for signum in early_stop:
        os.kill(os.getpid(), signum)


# Seconds before gunicorn's graceful timeout by which a stopping worker gives up waiting for its last runs (it is
# killed at the timeout; a run still going then is recorded as killed at the stop by the next scheduler).
FINISH_MARGIN = 1.0


def worker_abort(worker: Any) -> None:
    """gunicorn is killing this worker (timeout): stop without waiting for jobs."""
    global _aborting
    _aborting = True


def worker_exit(server: Any, worker: Any) -> None:
    """The worker is leaving: stop refreshing the checks and the scheduler, then free the lock for a standby worker."""
    from .. import health_refresh as refresh

    refresh.stop()
    if _leadership is not None:
        graceful = float(getattr(worker.cfg, "graceful_timeout", 30))
        _leadership.stop(wait=not _aborting, successor_wait=min(SUCCESSOR_WAIT, graceful / 2),
                         workers=int(getattr(worker.cfg, "workers", 1)), handover_wait=graceful / 2,
                         finish_wait=max(graceful - FINISH_MARGIN, 0.0))
