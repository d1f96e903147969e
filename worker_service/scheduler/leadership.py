"""Stand by for the scheduler lock in the background; run the scheduler while holding it.

Why a background wait and not one try at fork time: on SIGHUP gunicorn forks
the new workers while the old leader still holds the lock. A single
non-blocking try would find it busy in every new worker and leave NO
scheduler once the old workers exit. A blocking wait in a daemon thread takes
over the moment the holder releases the lock or dies.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from ..state import StateStore, StoreUnavailable
from .crash_policy import CrashPolicy
from .election import LeaderElection
from .handover import StandbyMarks
from .jobs_file import JobsFileError, load_jobs_file
from .service import SchedulerService

log = logging.getLogger(__name__)
RETRY_FIRST, RETRY_MAX = 5.0, 60.0  # seconds between attempts after the scheduler failed to start


class SchedulerLeadership:
    """One per process: waits to lead, then starts a :class:`SchedulerService`."""

    def __init__(self, settings: dict[str, Any], store: StateStore, election: LeaderElection) -> None:
        self._settings = settings
        self._store = store
        self._election = election  # chosen with the store in worker_service.resources.coordination
        self._service: SchedulerService | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._marks = StandbyMarks(settings["WORKER_STATE_DIR"])

    @property
    def is_leader(self) -> bool:
        """Whether this process runs the scheduler now."""
        return self._service is not None

    def stand_by(self) -> None:
        """Start the background thread that waits for the lock (returns at once)."""
        self._thread = threading.Thread(target=self._wait_and_lead, name="scheduler-election", daemon=True)
        self._thread.start()

    def _wait_and_lead(self) -> None:
        backoff = RETRY_FIRST
        while not self._stopping.is_set():
            try:
                self._lead_once()
                return
            except JobsFileError as error:
                log.error("the scheduler cannot start: %s (fix it, check with `worker-service check-config`, reload)",
                          error)
                self._election.release()
                return
            except Exception as error:
                # The lock is kept: nothing ran (the scheduler starts paused), and another
                # worker would only meet the same fault. Retried here, with a back-off.
                if isinstance(error, StoreUnavailable):
                    log.error("the scheduler cannot start in pid %d: %s; trying again in %.0f s", os.getpid(),
                              error, backoff)
                else:
                    log.exception("the scheduler could not start in pid %d; trying again in %.0f s", os.getpid(),
                                  backoff)
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, RETRY_MAX)

    def _lead_once(self) -> None:
        if not self._election.acquire(blocking=False):
            log.info("pid %d stands by: another process runs the scheduler", os.getpid())
            self._warm_up()
            with self._marks.ready():
                self._election.acquire(blocking=True)
        with self._lock:
            if self._stopping.is_set():
                self._election.release()
                return
            specs = load_jobs_file(self._settings["WORKER_JOBS_FILE"], self._settings["SCHEDULER_TIMEZONE"])
            service = SchedulerService(
                specs, self._store, self._settings["SCHEDULER_TIMEZONE"],
                self._settings["SCHEDULER_HEARTBEAT_INTERVAL"],
                CrashPolicy.from_settings(self._settings),
            )
            service.start()
            self._service = service

    def _warm_up(self) -> None:
        """Import the job modules while standing by, so a handover (SIGHUP) loses no time on it."""
        try:
            load_jobs_file(self._settings["WORKER_JOBS_FILE"], self._settings["SCHEDULER_TIMEZONE"])
        except Exception:
            pass  # reported when this worker leads and loads it for real

    def retire(self) -> None:
        """This process is going away (SIGTERM): never start leading from now on; a running scheduler goes on."""
        self._stopping.set()
        self._marks.withdraw()

    def stop(self, wait: bool = True, successor_wait: float = 0.0, workers: int = 0) -> None:
        """Stop leading: shut the scheduler down (letting running jobs finish if ``wait``), then free the lock.

        With ``successor_wait``, a leader stopping during a reload first keeps
        scheduling until a newer worker is ready to take over (see
        :mod:`.handover`), for at most that many seconds.
        """
        self._stopping.set()
        if wait and self.is_leader and successor_wait > 0:
            waited = self._marks.await_successor(successor_wait, workers)
            if waited:
                log.info("handed over after %.2f s: a new worker was ready to lead", waited)
        with self._lock:
            service, self._service = self._service, None
        if service is not None:
            service.shutdown(wait=wait)
        if service is not None and not wait:
            # gunicorn is killing this worker: its job threads may still run until the process dies, so the lock
            # stays held until then (the kernel frees it), and no standby can start the same jobs meanwhile.
            log.warning("pid %d is being killed: the scheduler lock is freed when the process is gone", os.getpid())
            return
        if self._election.held:
            self._election.release()
