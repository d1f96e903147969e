"""This worker's readiness: starting -> ready -> draining, the state /health/ready answers from.

* ``starting``: the first check of every critical component has not completed
  in this worker yet. Under gunicorn the worker's first round of checks, started
  at boot by :mod:`worker_service.health_refresh`, ends it; without that timer
  (tests, ``flask run``) the first probe starts them (:meth:`Readiness.warm_up`,
  once, in a thread).
* ``ready``: it has; /health/ready now follows the components, as /health does.
* ``draining``: SIGTERM arrived (gunicorn's graceful stop, or the old workers of
  a reload); in-flight requests and running jobs still finish. It never ends.

:func:`begin_draining` runs inside a signal handler, so it takes no lock: one
attribute store, atomic under the GIL, wins over any later ``ready``.

This module is readiness's home; :mod:`worker_service.health.ready` is only its
endpoint. It stays in the base layer, outside ``health/``: the SIGTERM hook
(:mod:`worker_service.gunicorn.hooks`), the boot checks
(:mod:`worker_service.health_refresh`) and job control's refusal while draining
(:mod:`worker_service.control.submission`) set or read it, and none of them
should import the health package (Flask, the engine, the checks) to do so.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

STARTING = "starting"
READY = "ready"
DRAINING = "draining"

log = logging.getLogger(__name__)


class Readiness:
    """One process's readiness state; thread-safe, and safe to drain from a signal handler."""

    def __init__(self) -> None:
        self._draining = False
        self._ready = False
        self._warming: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        """``draining``, ``ready`` or ``starting``, in that order of precedence."""
        if self._draining:
            return DRAINING
        return READY if self._ready else STARTING

    def begin_draining(self) -> None:
        """Answer ``draining`` from now on (called from the SIGTERM handler: no lock, no allocation)."""
        self._draining = True

    def mark_ready(self) -> None:
        """The first checks have completed: ``ready`` unless draining."""
        self._ready = True

    def warm_up(self, first_checks: Callable[[], object]) -> None:
        """Run ``first_checks`` once, in a daemon thread, then :meth:`mark_ready`; later calls do nothing."""
        with self._lock:
            if self._warming is not None or self._ready:
                return
            self._warming = threading.Thread(target=self._run_first, args=(first_checks,),
                                             name="readiness-warm-up", daemon=True)
        self._warming.start()

    def _run_first(self, first_checks: Callable[[], object]) -> None:
        try:
            first_checks()  # the engine turns every failure into a result; it completes within its max_wait
        except Exception:  # a broken check must not pin `starting`: /health/ready then reports what it finds
            log.exception("readiness: the first checks raised")
        self.mark_ready()
        log.info("worker %d is ready: its first checks are done", os.getpid())


_process = Readiness()
_owner = os.getpid()


def current() -> Readiness:
    """This process's readiness (one per worker; the SIGTERM hook and the /health/ready view share it).

    A new one after a fork: under ``--preload`` the app (and its warm-up) is
    made in the master, whose warm-up thread does not survive into the workers.
    """
    global _process, _owner
    if _owner != os.getpid():
        _process, _owner = Readiness(), os.getpid()
    return _process
