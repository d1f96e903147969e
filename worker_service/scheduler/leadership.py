"""Stand by for the scheduler in the background; run the scheduler while this process leads.

Why a background wait and not one try at fork time: on SIGHUP gunicorn forks
the new workers while the old leader still holds the lock. A single
non-blocking try would find it busy in every new worker and leave NO
scheduler once the old workers exit. A blocking wait in a daemon thread takes
over the moment the holder releases the lock or dies.

Leading takes two steps. The host lock (``election``) picks this host's
candidate; the lease (:mod:`.lease`) then says whether the candidate leads:
at once on a single host, and in a fleet once it holds the PostgreSQL lease.
A fleet term can be lost (another host took the lease while this one could
not renew): the process then stands down (running jobs finish) and, still
its host's candidate, competes again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from typing import Any

from common.helpers.health import HealthEngine

from ..alerts import AlertSettings, build_channels
from ..alerts.deliverer import Deliverer
from ..alerts.watch import SchedulerWatch
from ..config import EXECUTOR_THREADS_DEFAULT, MAX_CLOCK_SKEW_DEFAULT, fleet_mode
from ..host_identity import host_id, host_label
from ..state import StateStore, StoreUnavailable
from ..state.protocol import FleetLedger
from .crash_policy import CrashPolicy
from .election import LeaderElection
from .handover import StandbyMarks, newer_siblings
from .host_runner import HostRunner, claims_supported
from .jobs_file import JobsFileError, load_jobs_file
from .jobs_source import load_schedule
from .lease import HostOnlyLease, LeaseTerm, SchedulerLease
from .service import SchedulerService

log = logging.getLogger(__name__)
RETRY_FIRST, RETRY_MAX = 5.0, 60.0  # seconds between attempts after the scheduler failed to start


class SchedulerLeadership:
    """One per process: waits to lead, then starts a :class:`SchedulerService`.

    ``lease`` is the second level of the election, chosen with the store and
    the host lock in :func:`worker_service.resources.coordination`; without
    it the host lock decides alone (single-host mode).
    """

    def __init__(self, settings: dict[str, Any], store: StateStore, election: LeaderElection,
                 lease: SchedulerLease | None = None, checks: HealthEngine | None = None) -> None:
        self._settings = settings
        self._store = store
        self._election = election
        self._lease: SchedulerLease = lease if lease is not None else HostOnlyLease()
        self._service: SchedulerService | None = None
        self._checks = checks  # the components the leader's alerts look at (cache, database)
        self._watch: SchedulerWatch | None = None
        self._deliverer: Deliverer | None = None
        self._term: LeaseTerm | None = None
        self._runner: HostRunner | None = None  # this host's share of the fleet's runs, once it is the candidate
        self._stopping = threading.Event()
        self._attention = threading.Event()  # the term was lost, or the process stops
        self._lock = threading.Lock()
        self._transition = threading.RLock()  # standing down after a loss and stopping never overlap
        self._thread: threading.Thread | None = None
        self._warmed = False
        self._marks = StandbyMarks(settings["WORKER_STATE_DIR"])
        # Never run jobs unfenced in a fleet: a caller that passes no lease there gets no scheduler.
        self._unfenced = lease is None and fleet_mode(settings)

    @property
    def is_leader(self) -> bool:
        """Whether this process runs the scheduler now."""
        return self._service is not None

    def stand_by(self) -> None:
        """Start the background thread that waits to lead (returns at once)."""
        if self._unfenced:
            log.error("STATE_DATABASE_URL is set but no fleet lease was given: this process never runs the scheduler")
            return
        self._thread = threading.Thread(target=self._wait_and_lead, name="scheduler-election", daemon=True)
        self._thread.start()
        alerts = AlertSettings.from_settings(self._settings)
        if alerts.enabled:
            channels = build_channels(alerts)
            # Every process delivers (claims are exclusive), and every one that does not lead tells when none does.
            self._deliverer = Deliverer(self._store, channels, alerts.retry_for, alerts.timeout)
            self._deliverer.start()
            self._watch = SchedulerWatch(alerts, self._store, [c.id for c in channels],
                                         self._settings["SCHEDULER_HEARTBEAT_INTERVAL"], alerts.fleet,
                                         lambda: self.is_leader, host_label(host_id()) or "")
            self._watch.start()

    def _wait_and_lead(self) -> None:
        backoff = RETRY_FIRST
        while not self._stopping.is_set():
            try:
                term = self._lead_once()
                if term is None or not term.can_be_lost:
                    return  # stopping, or a host-only term: it lasts until the process stops
                if not self._await_loss():
                    return  # stopping: stop() stands the scheduler down
                self._stand_down()
                backoff = RETRY_FIRST
                continue
            except JobsFileError as error:
                log.error("the scheduler cannot start: %s (fix it, check with `worker-service check-config`, reload)",
                          error)
                self._give_up_term()
                if self._runner is not None:  # no longer its host's candidate: the next one claims instead
                    self._runner.stop_claiming()
                    self._runner.leave(drained=self._runner.drain(0.0))
                self._election.release()
                return
            except Exception as error:
                # The host lock is kept: nothing ran (the scheduler starts paused), and another worker would only
                # meet the same fault. A fleet lease is given up, so another host may try. Retried with a back-off.
                self._give_up_term()
                if isinstance(error, StoreUnavailable):
                    log.error("the scheduler cannot start in pid %d: %s; trying again in %.0f s", os.getpid(),
                              error, backoff)
                else:
                    log.exception("the scheduler could not start in pid %d; trying again in %.0f s", os.getpid(),
                                  backoff)
            if self._stopping.wait(backoff):
                return
            backoff = min(backoff * 2, RETRY_MAX)

    def _lead_once(self) -> LeaseTerm | None:
        """Become the host's candidate, then take a term, then start the service; the term, or None if stopping."""
        if not self._election.acquire(blocking=False):
            log.info("pid %d stands by: another process of this host runs for the scheduler", os.getpid())
            self._warm_up()
            with self._marks.ready():
                self._election.acquire(blocking=True)
        if self._lease.fleet:
            self._warm_up()  # a takeover from another host must lose no time on imports either
            self._start_runner()
        term = self._lease.wait_for_term(self._stopping, self._attention.set)
        if term is None:
            return None
        with self._lock:
            if self._stopping.is_set():
                term.end(release=True)  # stop() frees the host lock
                return None
            self._term = term
            specs = load_schedule(self._settings)  # the file, or its last good copy while it is broken
            service = SchedulerService(
                specs, term.guard(self._store), self._settings["SCHEDULER_TIMEZONE"],
                self._settings["SCHEDULER_HEARTBEAT_INTERVAL"],
                CrashPolicy.from_settings(self._settings), fleet=term.can_be_lost,
                executor_threads=int(self._settings.get("JOB_EXECUTOR_THREADS") or EXECUTOR_THREADS_DEFAULT),
                max_clock_skew=float(self._settings.get("SCHEDULER_MAX_CLOCK_SKEW") or MAX_CLOCK_SKEW_DEFAULT),
                alerts=AlertSettings.from_settings(self._settings), checks=self._checks, deliverer=self._deliverer,
                ledger=self._store if isinstance(self._store, FleetLedger) else None,
                session=self._runner.session if self._runner is not None else None, runner=self._runner,
                sweep_every=self._lease.timing.sweep_every if self._runner is not None else None,  # type: ignore[attr-defined]
            )
            service.start()
            self._service = service
        return term

    def _start_runner(self) -> None:
        """As its host's candidate in a fleet, claim and run this host's share of the planned runs (once)."""
        if self._runner is not None or not claims_supported(self._store):
            return
        specs = load_schedule(self._settings)  # the file, or its last good copy while it is broken
        self._runner = HostRunner(
            self._store, specs, int(self._settings.get("JOB_EXECUTOR_THREADS") or EXECUTOR_THREADS_DEFAULT),
            self._lease.timing, host_id(), uuid.uuid4().hex,  # type: ignore[attr-defined]
            on_run_ended=self._run_ended).start()

    def _run_ended(self) -> None:
        service = self._service
        if service is not None and service.alerts is not None:
            service.alerts.poke()  # the leader's alerts look now rather than at the next interval

    def _await_loss(self) -> bool:
        """Wait until the term is lost (True) or the process stops (False)."""
        while not self._stopping.is_set():
            self._attention.wait()
            if self._stopping.is_set():
                return False
            self._attention.clear()
            return True
        return False

    def _stand_down(self) -> None:
        """The lease was taken: stop submitting, let running jobs finish, and end the term."""
        with self._transition:
            with self._lock:
                service, self._service = self._service, None
                term, self._term = self._term, None
            if service is not None:
                if service.scheduler.running:
                    service.scheduler.pause()  # the store refuses every submission already; the state says so too
                service.shutdown(wait=True)
            if term is not None:
                term.end(release=False)
            log.warning("pid %d stood down; it stays its host's candidate for the scheduler", os.getpid())

    def _give_up_term(self) -> None:
        with self._lock:
            term, self._term = self._term, None
        if term is not None:
            term.end(release=True)

    def _warm_up(self) -> None:
        """Import the job modules while standing by, so a takeover loses no time on it.

        In a fleet, also read the lease once: the store's connection and schema
        check are then ready, and a reload's new worker takes the lease its
        predecessor released before another host's next poll can.
        """
        if self._warmed:
            return
        self._warmed = True
        try:
            load_jobs_file(self._settings["WORKER_JOBS_FILE"], self._settings["SCHEDULER_TIMEZONE"])
        except Exception:
            pass  # reported when this worker leads and loads it for real
        if self._lease.fleet:
            try:
                self._store.lease()
            except StoreUnavailable:
                pass  # the candidate's own attempts report it

    def retire(self) -> None:
        """This process is going away (SIGTERM): never start leading from now on; a running scheduler goes on."""
        if self._watch is not None:
            self._watch.stop()
        self._stopping.set()
        self._attention.set()
        self._marks.withdraw()

    def stop(self, wait: bool = True, successor_wait: float = 0.0, workers: int = 0,
             handover_wait: float = 0.0, finish_wait: float = 0.0) -> None:
        """Stop leading and executing: hand the scheduler over at once, then let this process's runs finish.

        With ``successor_wait``, a leader stopping during a reload first keeps
        scheduling until a newer worker of this host is ready to take over
        (see :mod:`.handover`), for at most that many seconds. Otherwise, with
        ``handover_wait`` and a fleet lease, it offers the lease to another
        host and keeps scheduling until one took it, for at most that long.

        Then (a graceful stop, ``wait``) the handover is per job: this process
        submits and claims nothing more and frees the lock and the lease, so
        the next scheduler schedules every job at once; only a job whose run
        is still going here waits for it (the run counts against its
        ``max_instances`` until it ends). The runs get up to ``finish_wait`` s
        (the graceful timeout less a margin); one still going then is killed
        with the process and recorded as killed at the stop.
        """
        started = time.monotonic()
        self._stopping.set()
        self._attention.set()
        if self._watch is not None:
            self._watch.stop()
        with self._transition:
            if wait and self.is_leader:
                self._hand_over(successor_wait, workers, handover_wait)
            with self._lock:
                service, self._service = self._service, None
                term, self._term = self._term, None
            if service is not None and not wait:
                service.shutdown(wait=False)
                # gunicorn is killing this worker: its job threads may still run until the process dies, so the lock
                # (and a fleet lease, renewed until then) stays held until it is gone, and no standby can start the
                # same jobs meanwhile.
                log.warning("pid %d is being killed: the scheduler lock is freed when the process is gone",
                            os.getpid())
                return
            if service is not None:
                service.stop_submitting()
            if self._runner is not None:
                self._runner.stop_claiming()
            if term is not None:
                term.end(release=True)
            if self._election.held:
                self._election.release()  # the next scheduler of this host starts now, while these runs finish
            left = lambda: max(finish_wait - (time.monotonic() - started), 0.0)  # noqa: E731
            finished = service.finish_runs(left()) if service is not None else True
            if self._runner is not None:
                # The row goes only once every run of this process ended: a run still going keeps it alive (not lost).
                self._runner.leave(drained=self._runner.drain(left()) and finished)
            if self._deliverer is not None:  # after the scheduler: its last changes may still be sent meanwhile
                self._deliverer.stop()

    def _other_hosts_alive(self) -> bool:
        """Whether another host of the fleet has a live row (could take the lease); unknown counts as yes."""
        if self._runner is None:
            return True
        try:
            return any(row.alive and not row.stopping and row.host != self._runner.host for row in self._store.hosts())
        except StoreUnavailable:
            return True

    def _hand_over(self, successor_wait: float, workers: int, handover_wait: float) -> None:
        """Keep scheduling until a successor is ready: a newer worker here (reload), else another host (fleet)."""
        if successor_wait > 0 and newer_siblings(workers):
            waited = self._marks.await_successor(successor_wait, workers)
            if waited:
                log.info("handed over after %.2f s: a new worker was ready to lead", waited)
            return
        term, service = self._term, self._service
        if handover_wait <= 0 or term is None or not term.can_be_lost or service is None:
            return
        if not self._other_hosts_alive():
            log.info("no other host of the fleet is alive: the scheduler lease is released without a handover wait")
            return
        try:  # a run the next leader finds still going was killed at this stop, never a crash
            service.store.mark_stopping(service.session)
        except StoreUnavailable as error:
            log.warning("could not mark running jobs as stopping before the handover: %s", error)
        term.hand_over(min(handover_wait, self._lease.handover_wait))
