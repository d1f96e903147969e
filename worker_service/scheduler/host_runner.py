"""This host's share of the fleet's work: claim the runs the leader planned, run them, record how each ended.

In fleet mode the leader decides, once and fenced, that a slot is due, and
plans it as a row with no owner (:meth:`StateStore.record_submitted` with
``run_on``). Every host's candidate process (the worker holding its host
lock, leader or not) runs a :class:`HostRunner`:

* **its row** (:meth:`RunClaims.renew_host`), renewed every TTL/3 on the
  database's clock: while it is alive, the runs this process holds are its
  own, and no leader settles them. A process that dies, freezes or is cut off
  stops renewing; within TTL + TTL/3 the leader settles its runs ``lost``
  (:meth:`SchedulerService._judge`). Like the leader's lease, a local deadline
  (the last renewal sent + TTL - margin, on the monotonic clock) stops this
  host from starting a run once its row may have expired, before anyone
  settles it;
* **claims**: while it has free threads (``JOB_EXECUTOR_THREADS``), one
  statement (``FOR UPDATE SKIP LOCKED``) takes up to that many planned runs,
  oldest slot first; no two hosts get one run. It polls every
  :data:`CLAIM_POLL` seconds (jittered), and at once when a run of its own
  ends (no LISTEN/NOTIFY: it would not pass a transaction pooler). The
  leader's own host is woken when it plans, but then takes only its share
  (its free threads divided by the live hosts): a run starts at once, and the
  work still spreads instead of filling the leader's host first;
* **runs**: a claimed run starts at once (the claim recorded its start); its
  end is written with the claim (``owner``): counted only if this process
  still holds it. A run claimed later than its misfire grace time after it was
  planned is recorded as missed instead;
* **a stop or a reload**: it stops claiming, keeps renewing its row (marked
  stopping) while its runs finish, within the graceful timeout, and then
  removes the row. The new process of the host claims at once meanwhile;
  a job whose run is still going here has that run counted against its
  ``max_instances`` until it ends (the leader's plan counts it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..host_identity import process_alive, same_machine
from ..state import StateStore, StoreUnavailable
from ..state.records import ClaimedRun, ClaimStats
from .jobs_file import RUN_ON_LEADER, JobSpec
from .lease import LeaseTiming
from .tracking import CurrentRun, ExecutionTracker

log = logging.getLogger(__name__)

CLAIM_POLL = 0.5  # seconds between claims while nothing wakes the runner: a due run starts within this (plus jitter)


class _ClaimedStore:
    """The store as a host's claimed runs write it: each end fenced by the claim (``owner``)."""

    def __init__(self, store: StateStore, runner: HostRunner) -> None:
        self._store = store
        self._runner = runner

    def record_started(self, run_id: int, at: float) -> bool:
        return True  # the claim recorded the start; HostRunner._run already checked the row's deadline

    def record_run(self, job_id: str, outcome: str, at: float, duration: float | None, error_type: str | None = None,
                   error_message: str | None = None, run_id: int | None = None) -> bool:
        return self._store.record_run(job_id, outcome, at, duration, error_type, error_message, run_id,
                                      owner=self._runner.session)

    def record_missed(self, job_id: str, at: float, run_id: int | None = None) -> bool:
        return self._store.record_missed(job_id, at, run_id, owner=self._runner.session)

    def forget_run(self, run_id: int) -> None:
        try:
            self._store.forget_run(run_id)
        except StoreUnavailable:
            self._runner.forget_later(run_id)  # else it would hold its job's max_instances while this host lives
            raise


class HostRunner:
    """Claims and runs this host's share of the fleet's planned runs (see the module docstring)."""

    def __init__(self, store: StateStore, specs: Sequence[JobSpec], threads: int, timing: LeaseTiming, host: str,
                 session: str, on_run_ended: Callable[[], None] | None = None, poll: float = CLAIM_POLL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.host = host
        self.session = session
        self.threads = threads
        self._timing = timing
        self._poll = poll
        self._clock = clock
        self._on_run_ended = on_run_ended
        self._specs = {spec.id: spec for spec in specs if spec.placement(fleet=True) != RUN_ON_LEADER}
        self._leader_only = {spec.id for spec in specs if spec.placement(fleet=True) == RUN_ON_LEADER}
        self._unknown: set[str] = set()  # jobs planned in the fleet that this host cannot run (its file lacks them)
        self._pid = os.getpid()
        self._tracker = ExecutionTracker(_ClaimedStore(store, self), session, lambda job_id: (None, False),
                                         self._store_failed, host=host)  # type: ignore[arg-type]
        self._wrapped = {job_id: self._tracker.wrap(job_id, spec.func) for job_id, spec in self._specs.items()}
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fleet-run")
        self._busy = 0
        self._idle = threading.Condition()
        self._deadline = float("-inf")  # no run starts before the first renewal
        self._wake = threading.Event()
        self._claiming = threading.Event()  # set while it claims (cleared at a stop)
        self._claim_lock = threading.Lock()  # held by a claim in flight: a stop waits for it to come back
        self._renew_lock = threading.Lock()  # the keeper and a stop renew; one at a time, in order
        self._ended = threading.Event()
        self._failing: str | None = None
        self._unforgotten: set[int] = set()  # runs that ended here but whose row the store could not remove
        self._unreleased: set[int] = set()  # runs given back whose release the store did not take yet
        self._share: int | None = None  # woken by the leader's plan: take 1/share of the free threads now
        self._stats = ClaimStats()  # this process's claims, written with each renewal
        self._claimer = threading.Thread(target=self._claim_forever, name="fleet-claims", daemon=True)
        self._keeper = threading.Thread(target=self._keep_forever, name="fleet-host-row", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------------------------------
    def start(self) -> HostRunner:
        """Register this host's row (best effort: the keeper retries), then keep it and claim in the background."""
        self._claiming.set()  # before the first renewal: the row says it claims (not stopping) from the start
        self._renew()
        self._keeper.start()
        self._claimer.start()
        log.info("pid %d runs the fleet's planned runs on this host: %d threads, jobs %s", self._pid, self.threads,
                 ", ".join(sorted(self._specs)) or "(none: every job runs on the leader)")
        return self

    def wake(self, hosts: int = 1) -> None:
        """Claim now: a thread freed, or the leader in this process planned runs for ``hosts`` live hosts to share."""
        with self._idle:
            self._share = max(hosts, 1) if self._share is None else min(self._share, max(hosts, 1))
        self._wake.set()

    def stop_claiming(self) -> None:
        """A stop or reload: claim nothing more; the runs going on finish (the row says stopping).

        Returns once no claim is in flight: a run claimed by a statement sent
        before the stop is in the pool (counted busy) by then, so a drain that
        follows waits for it too.
        """
        if self._claiming.is_set():
            self._claiming.clear()
            self._wake.set()
            with self._claim_lock:
                pass
            self._renew()
            try:  # one still going when the process is killed at the graceful timeout was killed at the stop
                self.store.mark_stopping(self.session)
            except StoreUnavailable as error:
                log.warning("could not mark this host's running jobs as stopping: %s", error)

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for this process's runs to end; whether they all did."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def running(self) -> int:
        """Runs this process holds now."""
        with self._idle:
            return self._busy

    def leave(self, drained: bool) -> None:
        """Stop keeping the row; remove it if every run ended (else it expires: the leader settles what is left)."""
        self.stop_claiming()
        self._ended.set()
        self._wake.set()
        self._pool.shutdown(wait=False)
        if drained:
            try:
                self.store.leave_host(self.session)  # type: ignore[attr-defined]
            except StoreUnavailable as error:
                log.warning("could not remove this host's row from the fleet: %s; it expires by itself", error)

    # -- the row and its local deadline --------------------------------------------------------------------------------
    def valid(self) -> bool:
        """Whether this host may start a run: its row was renewed within TTL - margin (the monotonic clock)."""
        return self._clock() < self._deadline

    def _renew(self) -> bool:
        with self._renew_lock:
            return self._renew_now()

    def _renew_now(self) -> bool:
        sent = self._clock()
        try:
            left = self.store.renew_host(self.session, self.host, self._pid, self.threads,  # type: ignore[attr-defined]
                                         self._timing.ttl, stopping=not self._claiming.is_set(), claims=self._stats)
        except StoreUnavailable as error:
            if self._failing is None:
                log.error("could not renew this host's row in the fleet: %s; it starts no run %s", error,
                          "from now on" if not self.valid() else
                          f"once {max(self._deadline - self._clock(), 0.0):.1f} s have passed without a renewal")
            self._failing = str(error)
            return False
        self._deadline = sent + min(left, self._timing.ttl) - self._timing.margin
        if self._failing is not None:
            log.warning("this host's row in the fleet is renewed again: it claims runs again")
            self._failing = None
        return True

    def _keep_forever(self) -> None:
        while not self._ended.is_set():
            pause = self._timing.retry_every if self._failing else self._timing.renew_every
            if self._ended.wait(pause):
                return
            try:
                if self._renew():
                    self._forget_unforgotten()
                    if self._claiming.is_set():
                        self._note_dead_processes_here()
            except Exception:  # noqa: BLE001 - the keeper must live on: without it the row expires, the runs are lost
                log.exception("keeping this host's row in the fleet failed unexpectedly; trying again")

    def forget_later(self, run_id: int) -> None:
        """A run ended here but its row could not be removed: the keeper removes it once the store answers."""
        with self._idle:
            self._unforgotten.add(run_id)

    def _forget_unforgotten(self) -> None:
        with self._idle:
            pending, self._unforgotten = self._unforgotten, set()
            releasing, self._unreleased = self._unreleased, set()
        for run_id in sorted(pending):
            try:
                self.store.forget_run(run_id)
            except StoreUnavailable:
                self.forget_later(run_id)
        for run_id in sorted(releasing):
            self._release(run_id)

    def _note_dead_processes_here(self) -> None:
        """Rows of processes of this machine whose pid is gone (a killed worker): say so, for the leader.

        Only this machine can tell: the leader, maybe on another host, sees
        only that the dead process's row stops being renewed, and would say
        its runs were lost. Marked gone, they are settled as crashed (or
        killed at a stop), and the job's crash hold and quarantine apply.
        """
        try:
            for row in self.store.hosts():  # type: ignore[attr-defined]
                if (row.session != self.session and not row.gone and same_machine(row.host, self.host)
                        and not process_alive(row.pid)):
                    self.store.mark_host_gone(row.session)  # type: ignore[attr-defined]
                    log.warning("pid %d of this host is gone: its runs are recorded by the leader as crashed",
                                row.pid)
        except StoreUnavailable as error:
            log.debug("could not look at this host's dead processes: %s", error)

    # -- claims ----------------------------------------------------------------------------------------------------------
    def _claim_forever(self) -> None:
        while not self._ended.is_set():
            self._wake.wait(self._poll * random.uniform(0.8, 1.2))  # spread the hosts' polls
            self._wake.clear()
            with self._claim_lock:
                if self._claiming.is_set():
                    try:
                        self._claim_once()
                    except Exception:  # noqa: BLE001 - a dead claimer would leave this host idle for good
                        log.exception("claiming runs failed unexpectedly; trying again")

    def _claim_once(self) -> None:
        with self._idle:
            free = self.threads - self._busy
            share, self._share = self._share, None
        if share is not None and share > 1:
            free = max(free // share, 1) if free > 0 else 0  # the other hosts take the rest at their next look
        if free <= 0 or not self._specs or not self.valid():
            return
        try:
            claimed = self.store.claim_runs(self.session, self.host, self._pid, free,  # type: ignore[attr-defined]
                                            sorted(self._unknown), time.time())
        except StoreUnavailable as error:
            log.debug("could not claim runs: %s", error)
            return
        self._stats = self._stats.plus([run.waited for run in claimed])
        for run in [run for run in claimed if run.job_id not in self._specs]:
            self._give_back(run)
        claimed = [run for run in claimed if run.job_id in self._specs]
        for run in claimed:
            with self._idle:
                self._busy += 1
            try:
                self._pool.submit(self._run, run)
            except RuntimeError:  # the pool is shut down (the process stops): the row expires, the leader settles it
                self._ended_one()
        if len(claimed) == free and (share is None or share <= 1):
            self._wake.set()  # there may be more: claim again at once

    def _give_back(self, run: ClaimedRun) -> None:
        """A run of a job this host's file does not have (or keeps on the leader): planned again, skipped from now."""
        self._unknown.add(run.job_id)
        log.warning("job %s is planned in the fleet but this host's jobs file %s: left to the other hosts", run.job_id,
                    "runs it on the leader only" if run.job_id in self._leader_only else "does not have it")
        self._release(run.run_id)

    def _release(self, run_id: int) -> None:
        """Give a claimed run back for another host; if the store does not answer, the keeper tries again."""
        try:
            self.store.release_claim(run_id, self.session)  # type: ignore[attr-defined]
        except StoreUnavailable as error:
            log.debug("could not give run %d back: %s", run_id, error)
            with self._idle:
                self._unreleased.add(run_id)

    def _run(self, claimed: ClaimedRun) -> None:
        try:
            spec = self._specs[claimed.job_id]
            run = CurrentRun(claimed.job_id, claimed.run_id, claimed.scheduled_at, claimed.trigger,
                             claimed.requested_by, claimed.command_id, self.session, claimed.epoch)
            late = (claimed.trigger == "scheduled" and claimed.retry_of is None
                    and spec.misfire_grace_time is not None and claimed.waited > spec.misfire_grace_time)
            if late:
                self._missed(claimed, spec)
                return
            if not self.valid():
                # Its row may have expired: starting it here could run it beside a host the leader gave it to.
                log.warning("job %s: run %d not started: this host's row was not renewed in time; given back",
                            claimed.job_id, claimed.run_id)
                self._release(claimed.run_id)
                self._tracker.settled(claimed.run_id)
                return
            with self._tracker.executing(run), contextlib.suppress(Exception):
                self._wrapped[claimed.job_id](*spec.args, **spec.kwargs)  # the tracker logged and recorded it
        finally:
            self._tracker.done(claimed.run_id)
            self._ended_one()

    def _missed(self, claimed: ClaimedRun, spec: JobSpec) -> None:
        try:
            self.store.record_missed(claimed.job_id, claimed.scheduled_at, claimed.run_id, owner=self.session)
        except StoreUnavailable as error:
            self._store_failed(error)
        log.warning("job %s missed its run at %.3f: claimed %.1f s after it was planned (misfire grace %s s)",
                    claimed.job_id, claimed.scheduled_at, claimed.waited, spec.misfire_grace_time)

    def _ended_one(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()
        self._wake.set()  # a whole thread is free: claim with it now
        if self._on_run_ended is not None:
            with contextlib.suppress(Exception):
                self._on_run_ended()

    def _store_failed(self, error: BaseException) -> None:
        log.debug("a write of a claimed run failed: %s", error)



def claims_supported(store: Any) -> bool:
    """Whether ``store`` keeps a fleet's claims (PostgreSQL)."""
    return all(hasattr(store, name) for name in ("renew_host", "claim_runs", "leave_host", "mark_host_gone"))
