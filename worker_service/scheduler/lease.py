"""The fleet's scheduler lease, as the scheduler side keeps it: standby polling, renewing, self-fencing, handover.

Two levels of election pick the one process that runs the jobs. Inside a host
the POSIX lock (:class:`~.election.FileLockElection`) picks one candidate;
the candidates of all hosts then compete for one lease row in PostgreSQL
(:mod:`worker_service.state.pg_lease`: one statement per acquire or renew,
expiry by the database's clock, an epoch that grows at every change of
holder). Without ``STATE_DATABASE_URL`` there is no second level:
:class:`HostOnlyLease` grants every host candidate a term at once.

While it leads, a :class:`FleetTerm`:

* renews every TTL/3 (after a failure, sooner), on the lease's own
  connection (never queued behind the store's callers), and remembers, on the
  monotonic clock, when the request of each *successful* renewal was sent;
* writes through ``store.fenced(epoch, session)``: the database itself
  refuses a write of a stale epoch (or of another holder), in the same
  statement that makes it. This is what keeps a former leader's writes out,
  whenever they reach the database;
* also stops submitting early, by its own clock: once ``TTL - margin`` has
  passed since that send without another success, every write of the
  leader's store view is refused here, before it is sent. A run is recorded
  before it is handed to the executor, so a refused record is a run not
  started, and the service pauses submission
  (:meth:`SchedulerService._store_failed`). The monotonic clock runs on while
  a process is stopped (SIGSTOP), so a woken leader knows at once. The margin
  is at least ``STATE_DATABASE_TIMEOUT``, so a write let through just before
  the deadline has given up *on this host* (the watchdog closed its socket)
  before the lease can expire; but a statement the server already received
  may still run later, when another host may lead. Only the database's epoch
  check makes that write harmless: the local deadline just keeps a cut-off
  leader from starting runs it most likely cannot record;
* on a graceful stop of the whole host, offers a handover and keeps
  scheduling until another host has taken the lease (its next poll), so no
  run is late; its in-flight runs go on and record how they ended, while the
  new leader schedules every job at once: it leaves a run alone while its
  host's row is alive (:mod:`.host_runner`), and the run counts against its
  job's ``max_instances`` meanwhile. Those finishing writes carry no epoch any
  more (it moved on), but each names its run and counts only if it removes the
  run's live row, so a run the new leader settled first (its host's row
  expired) is counted once, by the new leader; and a run the new leader
  settled before it started is not started at all (``record_started`` says it
  is gone).

Standby candidates poll with one ``acquire`` every TTL/3, so lease traffic is
about three statements per TTL per host, and a dead leader's lease is taken
within TTL + TTL/3 of its last renewal.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from ..config import MAX_CLOCK_SKEW_DEFAULT
from ..host_identity import host_id, host_label
from ..state import StateStore, StoreUnavailable
from ..state.faults import ClockSkewed, clock_skew_reason
from ..state.protocol import LeaderView
from .leader_store import LeaderStore

log = logging.getLogger(__name__)

HANDOVER_POLL = 0.1  # seconds between renewals while a handover is offered (only during a stop)
# While the state database cannot be reached (a host that booted before it, an outage), a candidate retries after
# 0.5 s, then twice as long each time, at most this long (and never less often than it polls when the database
# answers): it joins within this many seconds of the database answering again, whatever the TTL.
UNREACHABLE_RETRY_CAP = 5.0

class LeaseGrant(Protocol):
    """What :class:`worker_service.state.pg_lease.LeaseGrant` carries."""

    epoch: int
    session: str
    ttl: float
    expires_in: float


class LeaseBackend(Protocol):
    """The database side of the lease: :class:`worker_service.state.pg_lease.PostgresLease`."""

    def acquire(self, host: str, pid: int, session: str) -> Any: ...
    def renew(self, grant: Any) -> Any: ...
    def release(self, grant: Any) -> None: ...
    def offer_handover(self, grant: Any) -> None: ...
    def withdraw_handover(self, grant: Any) -> None: ...
    def record_lost(self, grant: Any) -> None: ...


@dataclasses.dataclass(frozen=True)
class LeaseTiming:
    """Every interval of the lease, derived from ``SCHEDULER_LEASE_TTL`` and ``STATE_DATABASE_TIMEOUT``."""

    ttl: float
    timeout: float
    max_skew: float | None = None  # SCHEDULER_MAX_CLOCK_SKEW: a leader whose clock drifts further hands over

    @property
    def renew_every(self) -> float:
        """Seconds between renewals while they work."""
        return self.ttl / 3

    @property
    def sweep_every(self) -> float:
        """Seconds between the leader's looks for runs of hosts whose row expired (at most a second, at most TTL/3).

        A host's runs are settled lost within TTL + this of its last renewal;
        until then each of them holds its job (``max_instances``), so the look
        is frequent: two reads a second, by the leader only.
        """
        return min(self.ttl / 3, 1.0)

    @property
    def retry_every(self) -> float:
        """Seconds between renewals after one failed: a short outage must not cost the lease."""
        return max(min(self.ttl / 12, 1.0), 0.1)

    @property
    def poll_every(self) -> float:
        """Seconds between a standby candidate's attempts to take the lease."""
        return self.ttl / 3

    @property
    def margin(self) -> float:
        """How long before the lease runs out (by this host's reckoning) the leader stops submitting.

        At least the store's timeout: a write sent before the local deadline is
        given up on this host before the lease runs out. The server may still
        commit it later; the epoch it carries is what the database checks then
        (the fence), not this margin.
        """
        return max(self.timeout, self.ttl / 10)

    @property
    def handover_wait(self) -> float:
        """How long a stopping leader may keep scheduling while it waits for another host to take over."""
        return self.poll_every + 2 * self.timeout + 1.0

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> LeaseTiming:
        """The timing the settings ask for."""
        return cls(ttl=float(settings["SCHEDULER_LEASE_TTL"]), timeout=float(settings["STATE_DATABASE_TIMEOUT"]),
                   max_skew=float(settings.get("SCHEDULER_MAX_CLOCK_SKEW") or MAX_CLOCK_SKEW_DEFAULT))


class LeaseTerm(Protocol):
    """One period of leading: from taking the lease until it is lost, handed over or released."""

    epoch: int | None
    can_be_lost: bool

    def guard(self, store: StateStore) -> LeaderView:
        """The store view the scheduler service writes through during this term."""
        ...

    def hand_over(self, timeout: float) -> bool:
        """Offer the lease to another host and keep leading until it is taken (at most ``timeout`` s)."""
        ...

    def end(self, release: bool) -> None:
        """The service has stopped: stop keeping the lease; give it up at once if ``release`` and still held."""
        ...


class SchedulerLease(Protocol):
    """The second level of the election, as :class:`~.leadership.SchedulerLeadership` uses it."""

    fleet: bool
    handover_wait: float

    @property
    def fencing_token(self) -> int | None:
        """The epoch this process leads with, or ``None`` (host-only mode, or not leading)."""
        ...

    def wait_for_term(self, stopping: threading.Event, on_lost: Callable[[], None]) -> LeaseTerm | None:
        """Block until this host candidate leads (a term), or ``None`` once ``stopping`` is set."""
        ...


# -- one host: the POSIX lock is the whole election ------------------------------------------------------------------
class HostTerm:
    """A term that only ends with the process or a stop: the host lock is the whole election."""

    epoch: int | None = None
    can_be_lost = False

    def guard(self, store: StateStore) -> LeaderView:
        return store

    def hand_over(self, timeout: float) -> bool:
        return False

    def end(self, release: bool) -> None:
        pass


class HostOnlyLease:
    """Single-host mode (no ``STATE_DATABASE_URL``): the host's candidate leads at once; nothing changes."""

    fleet = False
    handover_wait = 0.0

    @property
    def fencing_token(self) -> int | None:
        return None

    def wait_for_term(self, stopping: threading.Event, on_lost: Callable[[], None]) -> LeaseTerm | None:
        return None if stopping.is_set() else HostTerm()


# -- a fleet: the PostgreSQL lease --------------------------------------------------------------------------------------
class FleetTerm:
    """A term under the fleet's lease: the keeper thread, the local self-fence and the handover.

    :param backend: the database's lease.
    :param grant: the grant that started the term.
    :param sent_at: when (monotonic) the request that returned ``grant`` was sent.
    :param on_lost: called once, in the keeper thread, when the lease is found taken.
    """

    can_be_lost = True

    def __init__(self, backend: LeaseBackend, grant: LeaseGrant, timing: LeaseTiming, sent_at: float,
                 on_lost: Callable[[], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.epoch: int | None = grant.epoch
        self.session = grant.session  # the lease session: fenced writes also check that it holds the lease
        self._backend = backend
        self._timing = timing
        self._clock = clock
        self._on_lost = on_lost
        self._lock = threading.Lock()
        self._grant = grant
        self._deadline = self._deadline_after(sent_at, grant)
        self._wake = threading.Event()  # a handover offer or the end: the keeper looks again now
        self.lost = threading.Event()
        self.ended = threading.Event()
        self._offered = False  # a handover was offered (set before the offer is sent)
        self.handed_over = False  # lost to the host this process offered it to
        self._lapse_logged = False
        self._skew_offered_at: float | None = None  # when a handover was offered because of this host's clock
        self._keeper = threading.Thread(target=self._keep, name="scheduler-lease", daemon=True)

    def start(self) -> FleetTerm:
        """Start renewing in the background."""
        self._keeper.start()
        return self

    # -- validity: the local self-fence -------------------------------------------------------------------------------
    def _deadline_after(self, sent_at: float, grant: LeaseGrant) -> float:
        # expires_in is the database's own count at the statement, which ran after ``sent_at``: sent_at + expires_in
        # is never later than the real expiry (both clocks run at the same rate).
        return sent_at + min(grant.expires_in, self._timing.ttl) - self._timing.margin

    def valid(self) -> bool:
        """Whether this term may still submit: not lost, and the self-fence deadline has not passed."""
        return not self.lost.is_set() and self._clock() < self._deadline

    def remaining(self) -> float:
        """Seconds until the self-fence deadline (negative once past)."""
        return self._deadline - self._clock()

    def refusal(self, finishing: bool) -> str | None:
        """Why a store write must be refused now, or ``None`` if it may go (see :class:`~.leader_store.LeaderStore`).

        ``finishing``: it records how a run this leader started ended, which
        may still be written after a handover.
        """
        if self.valid():
            return None
        if self.lost.is_set():
            if self.handed_over and finishing:
                return None
            return f"scheduler lease: epoch {self.epoch} is held by another host now"
        return (f"scheduler lease: not renewed in time (TTL {self._timing.ttl:g} s); job submission stopped "
                f"before the lease runs out")

    # -- the keeper ----------------------------------------------------------------------------------------------------
    def _keep(self) -> None:
        failing = False  # the last renewal failed
        unexpected = False  # a fault other than StoreUnavailable was logged (with its traceback) since the last success
        while not self.ended.is_set():
            if self._offered:
                pause = HANDOVER_POLL
            elif failing:
                pause = self._timing.retry_every
            else:
                pause = self._timing.renew_every
            self._wake.wait(pause)
            self._wake.clear()
            if self.ended.is_set():
                return
            sent = self._clock()
            try:
                grant = self._backend.renew(self._grant)
                taken = grant is None or grant.epoch != self.epoch
                if not taken:
                    deadline = self._deadline_after(sent, grant)
            except Exception as error:  # noqa: BLE001 - any fault is a failed renewal; the keeper must live on
                # Not renewed: the self-fence deadline runs on as it was. A fault other than the store's is a bug:
                # its traceback once (until a renewal works again), never one per retry.
                if not isinstance(error, StoreUnavailable) and not unexpected:
                    unexpected = True
                    log.exception("renewing the scheduler lease (epoch %s) failed unexpectedly; treated as a failed "
                                  "renewal, retrying every %.1f s", self.epoch, self._timing.retry_every)
                elif not failing and isinstance(error, StoreUnavailable):
                    log.error("could not renew the scheduler lease (epoch %s): %s; retrying every %.1f s, job "
                              "submission stops in %.1f s", self.epoch, error, self._timing.retry_every,
                              max(self.remaining(), 0.0))
                failing = True
                self._log_lapse()
                continue
            if taken:
                self._lose()
                return
            with self._lock:
                self._grant = grant
                self._deadline = deadline
            if failing or self._lapse_logged:
                log.warning("the scheduler lease (epoch %s) is renewed again: this host still leads", self.epoch)
            failing, unexpected, self._lapse_logged = False, False, False
            try:
                if self._skewed(grant):
                    if self._resign_for_skew(grant):
                        return
                elif self._skew_offered_at is not None:
                    self._withdraw_skew_offer()
            except Exception:  # noqa: BLE001 - the keeper must live on: a dead keeper loses the lease
                log.exception("checking this host's clock against the state database's failed")

    def _skewed(self, grant: LeaseGrant) -> bool:
        bound = self._timing.max_skew
        return bound is not None and abs(getattr(grant, "clock_skew", 0.0)) > bound

    def _resign_for_skew(self, grant: LeaseGrant) -> bool:
        """This host's clock drifted past the bound while it leads: hand over, or give the lease up; True once done.

        A leader runs jobs at its own wall clock's times, so a skewed one runs
        them early, late or never. It offers the lease to the other hosts and
        keeps leading until one takes it (at their next poll, as at a graceful
        stop); if none does within the handover wait, it releases the lease:
        a fleet with no leader says so, where a leader with a wrong clock would
        silently run nothing on time.
        """
        if self._skew_offered_at is not None:
            if self._clock() - self._skew_offered_at < self._timing.handover_wait:
                return False
            log.error("no other host took the scheduler over within %.1f s: releasing the lease (epoch %s) because %s",
                      self._timing.handover_wait, self.epoch, clock_skew_reason(grant.clock_skew,
                                                                                self._timing.max_skew or 0.0))
            with self._lock:
                self._deadline = float("-inf")  # no write of this term goes out any more, before the lease is let go
            try:
                self._backend.release(self._grant)
            except StoreUnavailable as error:
                log.error("could not release the scheduler lease (epoch %s): %s; it runs out by itself", self.epoch,
                          error)
            self._offered = True
            self._lose()
            return True
        log.error("the scheduler lease (epoch %s): %s; handing the scheduler over to another host", self.epoch,
                  clock_skew_reason(grant.clock_skew, self._timing.max_skew or 0.0))
        self._offered = True
        self._skew_offered_at = self._clock()
        try:
            self._backend.offer_handover(self._grant)
        except StoreUnavailable as error:
            log.error("could not offer the scheduler to another host: %s", error)
        return False

    def _withdraw_skew_offer(self) -> None:
        """The clock is back within the bound before another host took over: lead on, as before the offer."""
        log.warning("the scheduler lease (epoch %s): this host's clock is within SCHEDULER_MAX_CLOCK_SKEW again; "
                    "handover withdrawn", self.epoch)
        try:
            self._backend.withdraw_handover(self._grant)
        except StoreUnavailable as error:
            log.error("could not withdraw the scheduler's handover: %s; another host may take it over", error)
            return
        self._skew_offered_at = None
        self._offered = False

    def _log_lapse(self) -> None:
        if not self.valid() and not self._lapse_logged:
            self._lapse_logged = True
            log.error("the scheduler lease (epoch %s) was not renewed in time: no job is submitted from now on; "
                      "another host takes over once it runs out", self.epoch)

    def _lose(self) -> None:
        self.handed_over = self._offered
        self.lost.set()
        if self.handed_over:
            log.info("another host took over the scheduler (lease epoch %s handed over)", self.epoch)
        else:
            log.error("the scheduler lease (epoch %s) was taken by another host: standing down", self.epoch)
        try:
            self._on_lost()
        except Exception:
            log.exception("standing down after losing the scheduler lease failed")

    # -- the end of the term -------------------------------------------------------------------------------------------
    def hand_over(self, timeout: float) -> bool:
        """Offer the lease to the next host that asks and keep leading until it is taken; whether it was."""
        if self.lost.is_set():
            return self.handed_over
        self._offered = True
        try:
            self._backend.offer_handover(self._grant)
        except StoreUnavailable as error:
            self._offered = False
            log.error("could not offer the scheduler to another host: %s", error)
            return False
        self._wake.set()  # renew every HANDOVER_POLL from now on: notice the taker at once
        started = self._clock()
        taken = self.lost.wait(timeout)
        if taken:
            log.info("handed the scheduler over to another host after %.2f s", self._clock() - started)
        else:
            log.warning("no other host took the scheduler over within %.1f s", timeout)
        return taken and self.handed_over

    @property
    def offered(self) -> bool:
        """A handover is offered and not yet taken."""
        return self._offered and not self.lost.is_set()

    def end(self, release: bool) -> None:
        """Stop renewing; release the lease (graceful stop) or note it lost (once)."""
        self.ended.set()
        self._wake.set()
        if self._keeper.is_alive() and self._keeper is not threading.current_thread():
            self._keeper.join(timeout=self._timing.timeout + 1.0)
        try:
            if self.lost.is_set():
                if not self.handed_over:
                    self._backend.record_lost(self._grant)
            elif release:
                self._backend.release(self._grant)
                log.info("released the scheduler lease (epoch %s)", self.epoch)
        except StoreUnavailable as error:
            log.error("could not give up the scheduler lease (epoch %s): %s; it runs out by itself within %g s",
                      self.epoch, error, self._timing.ttl)

    def guard(self, store: StateStore) -> LeaderView:
        """``store`` as the leader writes it in this term: fenced by the database and by this term's deadline."""
        return LeaderStore(store, self)


class FleetLease:
    """The scheduler side of the PostgreSQL lease for this process: standby polling and the current term."""

    fleet = True

    def __init__(self, backend: LeaseBackend, store: StateStore, timing: LeaseTiming, host: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._backend = backend
        self._store = store
        self.timing = timing
        self.host = host or host_id()  # compared whole: two hosts may share a host name
        self._clock = clock
        self._term: FleetTerm | None = None
        self._session: tuple[int, str] | None = None
        self.clock_skew: float | None = None  # set while this host may not lead because of its clock (seconds ahead)

    @property
    def handover_wait(self) -> float:
        return self.timing.handover_wait

    @property
    def fencing_token(self) -> int | None:
        """The epoch while this process's term may still submit (not lost, not past its self-fence deadline)."""
        term = self._term
        return term.epoch if term is not None and not term.ended.is_set() and term.valid() else None

    def _session_id(self) -> str:
        """This process's lease session: one per process (a fork gets its own)."""
        if self._session is None or self._session[0] != os.getpid():
            self._session = (os.getpid(), uuid.uuid4().hex)
        return self._session[1]

    def wait_for_term(self, stopping: threading.Event, on_lost: Callable[[], None]) -> LeaseTerm | None:
        failing = False
        retry = 0.5  # the next pause while the database cannot be reached
        while not stopping.is_set():
            sent = self._clock()
            try:
                grant = self._backend.acquire(self.host, os.getpid(), self._session_id())
            except ClockSkewed as skewed:
                if self.clock_skew is None:
                    log.error("pid %d stays a standby: %s", os.getpid(), skewed)
                self.clock_skew = skewed.skew
                stopping.wait(self.timing.poll_every * random.uniform(0.8, 1.0))
                continue
            except StoreUnavailable as error:
                if not failing:
                    log.error("pid %d cannot reach the scheduler lease: %s; trying again with a backoff of at most "
                              "%.1f s", os.getpid(), error, min(self.timing.poll_every, UNREACHABLE_RETRY_CAP))
                failing = True
                stopping.wait(min(retry, self.timing.poll_every) * random.uniform(0.8, 1.0))
                retry = min(retry * 2, UNREACHABLE_RETRY_CAP)
                continue
            else:
                if failing:
                    log.warning("pid %d reaches the scheduler lease again", os.getpid())
                if self.clock_skew is not None:
                    log.warning("pid %d: this host's clock is within SCHEDULER_MAX_CLOCK_SKEW of the state database's"
                                " again; it may lead", os.getpid())
                    self.clock_skew = None
                failing, retry = False, 0.5
                if grant is not None:
                    return self._begin(grant, sent, on_lost)
            stopping.wait(self.timing.poll_every * random.uniform(0.8, 1.0))  # spread the hosts' polls
        return None

    def _begin(self, grant: LeaseGrant, sent: float, on_lost: Callable[[], None]) -> FleetTerm:
        reason = self._reason(grant.epoch)
        term = FleetTerm(self._backend, grant, self.timing, sent, on_lost, clock=self._clock)
        self._term = term.start()
        log.info("pid %d on %s leads the fleet's scheduler: lease epoch %d (%s)", os.getpid(), host_label(self.host),
                 grant.epoch, reason or "taken")
        return term

    def _reason(self, epoch: int) -> str | None:
        """Why the lease came to this epoch (``first``, ``released``, ``handover``, ``expired``), if recorded."""
        try:
            for change in self._store.leadership_changes(3):
                if change.epoch == epoch:
                    return change.reason
        except StoreUnavailable:
            pass
        return None
