"""A command's way from any worker to the leader, and the bounded wait for its outcome.

Any worker takes a POST: it checks the job is published and a scheduler
leads (else 404, 503, and nothing is queued), queues the command in the
shared store, and polls it every :data:`POLL_INTERVAL` seconds until the
leader finishes it or the caller's wait ends (then 202: the command stays
queued, and the leader, or the next one, applies it).

A waiting request holds one of its worker's gthread threads, and /health
must keep answering: at most :func:`waiting_threads` requests wait per
worker; another gets its 202 at once. A worker that starts draining
(SIGTERM) stops waiting, so it never delays a stop or a reload.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from .. import readiness
from ..health.leader_status import LeaderStatus
from ..state import StateStore, StoreUnavailable
from ..state.records import Command
from .payloads import PENDING

log = logging.getLogger(__name__)

ACTIONS = ("run", "pause", "resume")
DEFAULT_WAIT = 5.0  # seconds a POST waits for the leader's outcome unless ?wait= says otherwise
MAX_WAIT = 30.0  # the longest ?wait=; longer belongs to polling the command (a gthread worker stays alive meanwhile)
# Seconds between two reads of the command (one indexed row): half the leader's own look at pending commands
# (0.1 s), so a waiting request answers within about 0.05 s of the outcome, at 20 reads a second, not 50.
POLL_INTERVAL = 0.05


class Refusal(Exception):
    """The command was not queued: ``status`` and ``message`` say why (404 unknown job, 503 no leader)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def waiting_threads(environ: Mapping[str, str] = os.environ) -> int:
    """Requests one worker lets wait at a time: half its threads (``GUNICORN_THREADS``, 4 by default)."""
    try:
        threads = int(environ.get("GUNICORN_THREADS", "4"))
    except ValueError:
        threads = 4
    return max(threads // 2, 0)


class JobControl:
    """Submits operators' commands for the leader and waits, boundedly, for their outcome."""

    def __init__(self, store: StateStore, settings: Mapping[str, Any], waiters: int | None = None,
                 draining: Callable[[], bool] | None = None) -> None:
        self._store = store
        self._leader = LeaderStatus(store, settings)
        limit = waiting_threads() if waiters is None else waiters
        self._waiters = threading.BoundedSemaphore(limit) if limit else None
        self._draining = draining or (lambda: readiness.current().state == readiness.DRAINING)

    def submit(self, job_id: str, action: str, requested_by: str, wait: float, address: str | None = None) -> Command:
        """Queue ``action`` on ``job_id`` and return the command as it stands after at most ``wait`` seconds.

        ``address`` (the client's) goes into a DEBUG line with ``requested_by``: the
        command's one INFO record is the leader's, with who asked, what and the
        outcome (:mod:`worker_service.scheduler.commands`).

        Raises :class:`Refusal` when nothing was queued, and ``StoreUnavailable``
        when the store cannot be read or written before the command is queued.
        """
        if self._store.definition(job_id) is None:
            raise Refusal(404, f"unknown job: {job_id!r}")
        problem = self._leader.problem()
        if problem is not None:
            raise Refusal(503, f"no scheduler leads: {problem}; the command was not queued")
        queued = self._store.submit_command(job_id, action, requested_by)  # stamped by the store's clock, not ours
        log.debug("job control: %s of %s requested by %s from %s (command %d)", action, job_id, requested_by,
                  address or "an unknown address", queued.id)
        return self.await_outcome(queued, wait)

    def await_outcome(self, command: Command, wait: float) -> Command:
        """``command`` as it stands once the leader finished it, or after ``wait`` seconds (then still pending)."""
        if wait <= 0 or command.state != PENDING:
            return command
        if self._waiters is None or not self._waiters.acquire(blocking=False):
            return command  # this worker's waiting threads are taken: answer 202 at once
        try:
            deadline = time.monotonic() + wait
            while command.state == PENDING and not self._draining():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                time.sleep(min(POLL_INTERVAL, remaining))
                try:
                    command = self._store.command(command.id) or command
                except StoreUnavailable as error:  # queued all the same: the caller polls later
                    log.warning("job control: command %d cannot be read: %s", command.id, error)
                    break
        finally:
            self._waiters.release()
        return command
