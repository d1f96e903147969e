"""Each worker refreshes its health checks on a timer of one HEALTH_CACHE_TTL, from the moment it boots.

Started by gunicorn's ``post_worker_init`` hook in each worker (after fork,
never in the master: a thread does not survive a fork), once the app is
loaded. By then ``post_fork`` has built this worker's resources, so its own
opening of the state store and of the embedded database has settled and the
first checks do not race it. The first round of checks makes the worker
``ready`` (:mod:`worker_service.readiness`), so a load balancer's first probe
of a new worker is normally answered ``ready``, not ``starting``.

Probes then answer from memory (see :mod:`common.helpers.health.refresher`).
The thread is a daemon and is stopped by ``worker_exit``. Without gunicorn
(tests, ``flask run``) nothing starts it and the engine refreshes on demand.
"""

from __future__ import annotations

import logging
import os

from common.helpers.health import HealthEngine
from common.helpers.health.refresher import Refresher

from . import readiness

log = logging.getLogger(__name__)

_refresher: Refresher | None = None


def install(engine: HealthEngine) -> None:
    """The engine of the app this process serves (the last app built): the one :func:`start` refreshes."""
    global _refresher
    if _refresher is not None and _refresher.engine is not engine:
        _refresher.stop(timeout=0)
    _refresher = Refresher(engine, on_first_round=_ready)


def start(wait: float = 0.0) -> bool:
    """Start refreshing in this worker (``post_worker_init``); ``False`` when there is nothing to do (TTL 0).

    With ``wait``, return once the first round is done, or after at most
    ``wait`` seconds (a hung dependency: the worker then answers ``starting``
    until its check times out).
    """
    if _refresher is None or not _refresher.start():
        return False
    if wait > 0:
        _refresher.first_round.wait(wait)
    return True


def stop(timeout: float = 1.0) -> None:
    """Stop refreshing (``worker_exit``)."""
    if _refresher is not None:
        _refresher.stop(timeout)


def running() -> bool:
    """Whether this worker's checks are refreshed in the background."""
    return _refresher is not None and _refresher.running


def _ready() -> None:
    readiness.current().mark_ready()
    log.info("worker %d is ready: its first checks are done", os.getpid())
