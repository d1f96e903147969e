"""One running scheduler: APScheduler with the jobs file's jobs, tracked and published.

The leader publishes its heartbeat and the job list to the shared store, so
every worker can answer for the scheduler without running one. It proves the
store is writable (settles what earlier leaders left, publishes the jobs,
beats) with APScheduler paused, before any job can be submitted; and while it
leads, a store write that fails pauses job submission until a heartbeat gets
through again. It keeps its leadership meanwhile, so no second leader can
start while one of its runs may still be going.

It also applies operators' commands (run now, pause, resume) through a
:class:`~.commands.CommandApplier` that starts and stops with it; an
operator's pause or resume outlives it, and wins over the jobs file's
``paused`` when the next leader adds its jobs.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
import zoneinfo
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.schedulers.base import STATE_PAUSED, STATE_RUNNING

from common.helpers.health import HealthEngine

from ..alerts import AlertSettings, build_channels
from ..alerts.deliverer import Deliverer
from ..alerts.monitor import AlertMonitor, judge_with
from ..alerts.rules import JobAlerting
from ..host_identity import host_id, host_label, process_alive, same_machine
from ..state import StateStore
from ..state.faults import FencedOut
from ..state.protocol import FleetLedger
from ..state.records import JobDefinition, OrphanedRun
from ..vocabulary import SchedulerState
from . import log_noise
from .commands import CommandApplier, JobRoster
from .crash_policy import CrashPolicy
from .executor import TrackedThreadPoolExecutor
from .host_runner import HostRunner
from .job_health import judge
from .jobs_file import RUN_ON_ANY, RUN_ON_LEADER, JobSpec
from .replanning import ReplanningScheduler
from .replanning import latest_next_run as _latest_next_run
from .tracking import TRACKED_EVENTS, ExecutionTracker

log = logging.getLogger(__name__)
STATE_NAMES = {STATE_RUNNING: SchedulerState.RUNNING, STATE_PAUSED: SchedulerState.PAUSED}
# Seconds past what an interval job's schedule allows that a published next run may lie and still be kept: hosts
# within SCHEDULER_MAX_CLOCK_SKEW of the database are up to twice that apart, plus rounding. Only a later one (a
# leader whose clock ran well ahead) is planned again, from this leader's time.
LATE_PUBLISHED_SLACK = 1.0
FINISH_POLL = 0.05  # seconds between looks at this process's last runs during a graceful stop
UNCLAIMED_LIMIT = 3600.0  # seconds a planned run of a job without a misfire grace time may wait for a host


class SchedulerService:
    """Build, start and stop the BackgroundScheduler for a list of :class:`JobSpec`."""

    def __init__(self, specs: list[JobSpec], store: StateStore, timezone: str, heartbeat_interval: float,
                 crash_policy: CrashPolicy | None = None, executor_threads: int = 10, fleet: bool = False,
                 max_clock_skew: float = 2.0, alerts: AlertSettings | None = None, checks: HealthEngine | None = None,
                 deliverer: Deliverer | None = None, ledger: FleetLedger | None = None, session: str | None = None,
                 runner: HostRunner | None = None, sweep_every: float | None = None) -> None:
        self.specs = specs
        self._spec_by_id = {spec.id: spec for spec in specs}
        self.max_clock_skew = max_clock_skew  # SCHEDULER_MAX_CLOCK_SKEW: how far apart two leaders' clocks may be
        self.fleet = fleet  # the store is shared by several hosts (another host's runs are in it)
        self.store = store
        self.timezone = timezone
        self.heartbeat_interval = heartbeat_interval
        self.crash_policy = crash_policy or CrashPolicy()
        # In a fleet, the process's session (its host row's: :mod:`.host_runner`), so a run the leader runs itself is
        # known alive by the same row as the runs its host claimed.
        self.session = session or uuid.uuid4().hex
        self.host = host_id()  # compared whole: two hosts may share a host name
        self.runner = runner  # this host's share of the fleet's runs (fleet mode), else None: every run is run here
        self.sweep_every = sweep_every or heartbeat_interval
        self._planned_age = 3 * self.sweep_every + 1.0  # a planned run this young is never judged (claims take <1 s)
        self._placements = {spec.id: spec.placement(fleet=runner is not None) for spec in specs}
        self._live_sessions: set[str] = set()  # sessions of the fleet's processes whose row is alive (last sweep)
        self._gone_sessions: set[str] = set()  # sessions a process of their own machine saw dead
        self._live_hosts: list[str] = []  # hosts with a live, claiming process (every-host runs go to each)
        log_noise.install()  # APScheduler's echoes of the events the tracker logs
        self.tracker = ExecutionTracker(store, self.session, self._next_run_of, self._store_failed, host=self.host)
        if runner is not None:
            self.tracker.forget_later = runner.forget_later  # a stood-down leader's row is removed once the store answers
        self.executor = TrackedThreadPoolExecutor(
            self.tracker, max_workers=executor_threads,
            placement=lambda job_id: self._placements.get(job_id, RUN_ON_LEADER),
            hosts=lambda: self._live_hosts or [self.host], planned=runner.wake if runner is not None else None)
        self.scheduler = ReplanningScheduler(
            on_clock_jump=self._clock_jumped,
            timezone=zoneinfo.ZoneInfo(timezone),
            executors={"default": self.executor},
        )
        # APScheduler holds this (re-entrant) lock while it submits due jobs and moves their next run
        # times, and each submission writes the new next run time to the store (see .tracking). A
        # publish from the heartbeat thread reads APScheduler's plan and writes it under the same lock,
        # so it can never write an older next run time over a submission's newer one (a new leader
        # would run that slot again).
        self._plan_lock = self.scheduler._jobstores_lock
        self.started_at = 0.0
        self._stop_beating = threading.Event()
        self._beater: threading.Thread | None = None
        self._sweeper: threading.Thread | None = None
        self._published: dict[str, tuple[float | None, bool]] = {}
        self._stopping = False
        self.last_clock_jump: tuple[float, float] | None = None  # (seconds, wall time it was seen)
        self._store_down: str | None = None  # why job submission is held, while the store fails
        self._store_lock = threading.Lock()
        self.roster = JobRoster(known=frozenset(spec.id for spec in specs))
        self.commands = CommandApplier(store, self.scheduler, self.executor, self._plan_lock, self.roster,
                                       self._publish_changes)
        self.alerts: AlertMonitor | None = None
        if alerts is not None and alerts.enabled:
            options = {spec.id: JobAlerting(spec.alert, spec.alert_after_failures, spec.alert_after_recoveries)
                       for spec in specs}
            self.alerts = AlertMonitor(alerts, store, build_channels(alerts), judge_with(judge, alerts.overdue_grace),
                                       options, host_label(self.host) or "", checks, deliverer, ledger)

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> None:
        """Prove the store is writable with APScheduler paused, then let jobs run, and beat.

        Settling the runs earlier leaders left, adding the jobs (resuming
        published next run times, holding back crashing jobs), publishing and
        the first heartbeat all happen before any job can be submitted. If
        any of it fails, the scheduler is shut down again before the error
        propagates: it never runs a job it could not record. Operators'
        commands are applied from then on.
        """
        self.started_at = time.time()
        self.scheduler.add_listener(self.tracker.listener, TRACKED_EVENTS)
        self.scheduler.start(paused=True)
        try:
            lost = self._sweep(retry=False)  # retried once the jobs are added: their next run times are known then
            self.roster.operator_pauses.update(self.store.operator_pauses())
            for spec in self.specs:
                self._add(spec)
            self._publish_all()
            for orphan in lost:
                self._retry(orphan)
            self._beat(state=SchedulerState.RUNNING)  # as it will be the moment it resumes, below
        except BaseException:
            self.scheduler.shutdown(wait=False)
            raise
        self.scheduler.resume()
        self._beater = threading.Thread(target=self._beat_forever, name="scheduler-heartbeat", daemon=True)
        self._beater.start()
        self._sweeper = threading.Thread(target=self._sweep_forever, name="scheduler-sweeper", daemon=True)
        self._sweeper.start()
        self.commands.start()
        if self.alerts is not None:  # after the jobs' first write: what it looks at is published
            self.scheduler.add_listener(self.alerts.poke, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED
                                        | EVENT_JOB_MAX_INSTANCES)
            self.alerts.start()
        log.info("scheduler started in pid %d with %d jobs (timezone %s)", os.getpid(), len(self.specs),
                 self.timezone)

    def shutdown(self, wait: bool) -> None:
        """Stop the scheduler; with ``wait``, running jobs finish first.

        The heartbeat goes on (as ``stopping``) while running jobs finish, so a
        long job during a reload does not make the scheduler look gone. In a
        graceful stop (``wait``) runs still going are marked first: if the
        worker is killed at the graceful timeout, the next leader records them
        as killed at the stop. Without ``wait`` (gunicorn is killing a worker
        that stopped answering) they are not: a run that froze its worker must
        count as a crash, so its crash hold and quarantine apply. Commands
        not applied yet stay pending for the next leader. After a lost lease
        or a handover the store refuses both writes (:class:`FencedOut`):
        expected, and only noted.
        """
        self._wind_down(mark_stopping=wait, wait=wait)
        log.info("scheduler stopped in pid %d", os.getpid())

    def stop_submitting(self) -> None:
        """A graceful stop or a reload, first half: submit nothing more, and let the next leader start at once.

        Commands and alerts stop, this process's runs still going are marked
        stopping (the next leader leaves them alone while this process lives,
        and counts them against their job's ``max_instances``; if the process is
        killed at the graceful timeout they were killed at the stop), APScheduler
        shuts down without waiting (its pool's running threads go on), and the
        heartbeat says stopped. The caller then frees the lock and the lease;
        :meth:`finish_runs` waits for the runs.
        """
        self._wind_down(mark_stopping=True, wait=False)

    def _wind_down(self, mark_stopping: bool, wait: bool) -> None:
        """Stop commands and alerts, mark this process's runs stopping, shut APScheduler down, say stopped.

        What is pending stays for the next leader (commands, the alerts'
        outbox). After a lost lease or a handover the store refuses both
        writes (:class:`FencedOut`): expected, and only noted.
        """
        self.commands.stop()
        if self.alerts is not None:
            self.alerts.stop()
        self._stopping = True
        if mark_stopping:
            try:
                self.store.mark_stopping(self.session)
            except FencedOut as error:
                log.info("running jobs not marked as stopping: not recorded: another host leads now (%s)", error)
            except Exception as error:
                log.error("could not mark running jobs as stopping in the state store: %s", error)
        if self.scheduler.running:
            self.scheduler.shutdown(wait=wait)
        self._stop_beating.set()
        try:
            self.store.clear_heartbeat(os.getpid())
        except FencedOut as error:
            log.info("scheduler not marked stopped: not recorded: another host leads now (%s)", error)
        except Exception as error:
            log.error("could not mark the scheduler stopped in the state store: %s", error)

    def finish_runs(self, timeout: float) -> bool:
        """A graceful stop, second half: wait up to ``timeout`` s for the runs this process runs itself to end."""
        deadline = time.monotonic() + timeout
        waiting = self.tracker.live_runs()
        if waiting:
            log.info("waiting for %d run(s) still going in pid %d (at most %.0f s); every other job runs in the next "
                     "scheduler meanwhile", len(waiting), os.getpid(), max(timeout, 0.0))
        while self.tracker.live_runs():
            if time.monotonic() >= deadline:
                log.warning("%d run(s) still going in pid %d at the end of the graceful wait",
                            len(self.tracker.live_runs()), os.getpid())
                return False
            time.sleep(FINISH_POLL)  # bounded by ``timeout``; the runs' threads end on their own
        log.info("scheduler stopped in pid %d", os.getpid())
        return True

    # -- jobs -----------------------------------------------------------------
    def _sweep(self, retry: bool = True) -> list[OrphanedRun]:
        """Settle what dead or unreachable processes left, and requeue the lost runs of ``retry_lost`` jobs.

        Run at the start and every ``sweep_every`` s (TTL/3 in a fleet): a host
        whose row expired has its runs settled ``lost`` within TTL + TTL/3 of its
        last renewal.
        """
        if self.runner is not None:
            hosts = self.store.hosts()
            self._live_sessions = {h.session for h in hosts if h.alive}
            self._gone_sessions = {h.session for h in hosts if h.gone}
            self._live_hosts = sorted({h.host for h in hosts if h.alive and not h.stopping})
        settled = self.store.settle_orphans(self.session, lost=self._judge, planned_age=self._planned_age)
        self._report_settled(settled)
        lost = [orphan for orphan in settled if orphan.lost and orphan.retry_of is None and orphan.run_id is not None]
        if retry:
            for orphan in lost:
                self._retry(orphan)
        if self.started_at and self.scheduler.running:  # while it leads; at the start, adding the jobs applies it
            for job_id in sorted({orphan.job_id for orphan in settled if orphan.outcome == "crashed"}):
                self._contain(job_id)
        return lost

    def _contain(self, job_id: str) -> None:
        """A run of ``job_id`` crashed its worker while this leader leads (on another host): hold or quarantine it."""
        spec = self._spec_by_id.get(job_id)
        if spec is None:
            return
        with self._plan_lock:
            job = self.scheduler.get_job(job_id)
            if job is None:
                return
            quarantined, crashes = self._quarantine(spec)
            if quarantined:
                self.roster.quarantined[spec.id] = _quarantine_reason(crashes)
                self.scheduler.modify_job(job_id, next_run_time=None)
            elif crashes and job.next_run_time is not None:
                self.scheduler.modify_job(job_id, next_run_time=self._held_back(spec, job.next_run_time, crashes))
        self._publish_changes()

    def _retry(self, orphan: OrphanedRun) -> None:
        """A lost run of a ``retry_lost`` job that any host may run: planned once more, for another host.

        Under ``max_instances`` as any run; the job's next run time stays as
        the scheduler has it. A job pinned to the leader or run on every host
        is not retried (its next slot runs as planned).
        """
        spec = self._spec_by_id.get(orphan.job_id)
        if spec is None or not spec.retry_lost or self._placements.get(spec.id) != RUN_ON_ANY:
            return
        run_id = self.store.record_submitted(spec.id, "", 0, orphan.scheduled_at, None, orphan.trigger,
                                             max_instances=spec.max_instances, run_on=RUN_ON_ANY,
                                             avoid_host=orphan.host, retry_of=orphan.run_id, keep_next_run=True)
        if run_id is None:
            log.warning("job %s: its run lost with host %s is not run again: it already runs max_instances (%d) "
                        "times", spec.id, host_label(orphan.host), spec.max_instances)
            return
        log.warning("job %s: its run of %s lost with host %s runs once more on another host (retry_lost; run %s)",
                    spec.id, dt.datetime.fromtimestamp(orphan.scheduled_at, dt.UTC).isoformat(),
                    host_label(orphan.host), run_id)
        if self.runner is not None:
            self.runner.wake()

    def _sweep_forever(self) -> None:
        while not self._stop_beating.wait(self.sweep_every):
            if self._store_down is not None or self._stopping:
                continue
            try:
                self._sweep()
            except FencedOut:
                continue  # the lease is gone: the term ends by itself
            except Exception as error:  # noqa: BLE001 - the next sweep tries again; a failing store is reported
                log.debug("could not settle the runs of gone processes: %s", error)

    def _report_settled(self, settled: list[OrphanedRun]) -> None:
        for orphan in settled:
            if orphan.outcome == "lost":
                log.warning("job %s: its leader lost the scheduler while it ran on host %s (pid %d); recorded as lost,"
                            " not as a crash: it may have finished there", orphan.job_id, host_label(orphan.host),
                            orphan.pid)
            elif orphan.outcome == "crashed":
                log.error("job %s: its worker (pid %d) died while it ran; recorded as crashed", orphan.job_id,
                          orphan.pid)
            elif orphan.outcome == "killed":
                log.warning("job %s was still running when the service stopped and was killed at the graceful "
                            "timeout (pid %d)", orphan.job_id, orphan.pid)
            else:
                log.warning("job %s: its run at %s never started (pid %d stopped first); recorded as missed",
                            orphan.job_id, dt.datetime.fromtimestamp(orphan.scheduled_at, dt.UTC).isoformat(),
                            orphan.pid)

    def _judge(self, orphan: OrphanedRun) -> bool | None:
        """Of a run another process holds: ``None`` (alive: leave it), ``True`` (lost out of reach) or ``False`` (dead).

        * A run of a process of this machine (pids mean the same here) whose
          process is gone died with it: crashed, killed at a stop, or missed.
        * On one host, a run whose process lives is that process's: it is
          finishing its last runs after a reload, and records them itself.
        * In a fleet, a run whose process's row is alive is that host's; one
          whose row expired (the host died, froze or was cut off) is lost: it
          may have finished there, and the database's clock said so.
        * A planned run no host claimed is left to be claimed, unless it was
          for one host (every-host) that is gone, or it waited past its
          misfire grace time plus a TTL: then it was missed.

        A run recorded without its host (by an older version) died with its leader.
        """
        if orphan.session == "":
            return self._judge_planned(orphan)
        if orphan.host is None or orphan.session in self._gone_sessions:
            return False  # an older version's run, or a process its own machine saw dead: died with it
        here = orphan.host == self.host or same_machine(orphan.host, self.host)
        # Its pid is only its process if that process was already there when it took the run (pids are reused).
        since = None if orphan.held_since is None else orphan.held_since + self.max_clock_skew + 0.5
        if here and not process_alive(orphan.pid, since):
            return False
        if not self.fleet:
            # Alive on the one host: finishing its last runs after a reload. A run of another machine (the state
            # directory moved, or a container restarted with its volume) died with it.
            return None if here else False
        if self.runner is None:
            return True  # a fleet without host rows: nothing says the process still holds it
        return None if orphan.session in self._live_sessions else True

    def _judge_planned(self, orphan: OrphanedRun) -> bool | None:
        """A run planned and not claimed: missed once its host is gone, or once it waited too long for any host.

        Too long is its misfire grace time plus three sweeps (a TTL) after it
        was planned (the hosts claim within a second, so only a run no live
        host can take waits that long: its job is not in their jobs files, or
        a retried lost run has only the host that lost it); without a grace
        time (run however late), an hour.
        """
        if orphan.for_host is not None and self._live_hosts and orphan.for_host not in self._live_hosts:
            return False
        spec = self._spec_by_id.get(orphan.job_id)
        grace = spec.misfire_grace_time if spec is not None else 0
        waited = time.time() - (orphan.held_since if orphan.held_since is not None else orphan.scheduled_at)
        if waited > (UNCLAIMED_LIMIT if grace is None else grace) + self._planned_age:
            return False
        return None

    def _add(self, spec: JobSpec) -> None:
        options: dict[str, Any] = dict(
            trigger=spec.trigger, id=spec.id, name=spec.name, args=spec.args, kwargs=spec.kwargs,
            misfire_grace_time=spec.misfire_grace_time, max_instances=spec.max_instances, coalesce=spec.coalesce,
            executor=spec.executor, replace_existing=True,
        )
        published = self.store.definition(spec.id)  # read once: both rules below look at it
        if self._already_done(spec, published):
            return
        quarantined, crashes = self._quarantine(spec)
        if quarantined:
            self.roster.quarantined[spec.id] = _quarantine_reason(crashes)
        if self._paused(spec) or quarantined:
            options["next_run_time"] = None
        else:
            resumed = self._held_back(spec, self._resume_time(spec, published), crashes)
            if resumed is not None:
                options["next_run_time"] = resumed
        self.scheduler.add_job(self.tracker.wrap(spec.id, spec.func), **options)

    def _paused(self, spec: JobSpec) -> bool:
        """Whether the job starts paused: an operator's last pause or resume wins over the jobs file's ``paused``."""
        paused = self.roster.paused(spec.id, spec.paused)
        if paused != spec.paused:
            pause = self.roster.operator_pauses[spec.id]
            log.info("job %s stays %s: %s said so at %s (the jobs file says paused = %s)", spec.id,
                     "paused" if paused else "running", pause.by,
                     dt.datetime.fromtimestamp(pause.at, dt.UTC).isoformat(timespec="seconds"),
                     str(spec.paused).lower())
        return paused

    def _quarantine(self, spec: JobSpec) -> tuple[bool, int]:
        """``(quarantined, crashes in a row)``: keeps, starts or (for a changed job) releases a quarantine."""
        state = self.store.crash_state(spec.id)
        if state.quarantined_at is not None and state.quarantine_key != spec.fingerprint:
            self.store.release_quarantine(spec.id)  # also forgets the crashes
            log.warning("job %s: released from quarantine (its definition changed)", spec.id)
            return False, 0
        if state.quarantined_at is not None:
            log.error("job %s stays quarantined: its worker died under it %d times in a row; change the job in "
                      "the jobs file and reload to release it", spec.id, state.consecutive)
            return True, state.consecutive
        if self.crash_policy.quarantines(state.consecutive):
            self.store.set_crash_hold(spec.id, None, quarantine_key=spec.fingerprint)
            log.error("job %s quarantined: its worker died under it %d times in a row; it will not run until it "
                      "is changed in the jobs file and the service reloaded", spec.id, state.consecutive)
            return True, state.consecutive
        return False, state.consecutive

    def _held_back(self, spec: JobSpec, resumed: dt.datetime | None, crashes: int) -> dt.datetime | None:
        """After a crash, the job's next run no sooner than the policy's hold."""
        if crashes == 0:
            return resumed
        hold = self.crash_policy.hold_for(crashes)
        until = dt.datetime.fromtimestamp(time.time() + hold, zoneinfo.ZoneInfo(self.timezone))
        self.store.set_crash_hold(spec.id, until.timestamp())
        log.warning("job %s: its worker died under it (%d in a row, quarantine at %d); holding it back %.0f s",
                    spec.id, crashes, self.crash_policy.limit, hold)
        if resumed is not None and resumed > until:
            return resumed
        planned = spec.trigger.get_next_fire_time(None, until)
        return planned if planned is not None else until

    def _already_done(self, spec: JobSpec, published: JobDefinition | None) -> bool:
        """A one-off (date) job whose time has passed and that ran, or was missed, before this leader."""
        run_date = getattr(spec.trigger, "run_date", None)
        if spec.trigger_kind != "date" or run_date is None or run_date.timestamp() > time.time():
            return False
        late = time.time() - run_date.timestamp() > (spec.misfire_grace_time or 0)
        return late or (published is not None and published.next_run_time is None)

    def _resume_time(self, spec: JobSpec, published: JobDefinition | None) -> dt.datetime | None:
        """The next run time the previous leader published, if the job is unchanged.

        Without this, every restart or reload would re-anchor interval jobs
        and a 30-minute job could be postponed for ever by frequent reloads.
        """
        if published is None or published.paused or published.next_run_time is None:
            return None
        if published.trigger != str(spec.trigger):
            return None
        zone = zoneinfo.ZoneInfo(self.timezone)
        now = dt.datetime.fromtimestamp(time.time(), zone)
        latest = _latest_next_run(spec.trigger, now)
        slack = LATE_PUBLISHED_SLACK + 2 * self.max_clock_skew
        if latest is not None and published.next_run_time > latest.timestamp() + slack:
            # Published by a leader whose clock ran ahead (it leads no more): waiting for it would stop the job
            # for as long as that clock was ahead. Planned from this leader's time instead.
            log.warning("job %s: the previous leader published its next run %.0f s later than its schedule allows "
                        "(that host's clock was ahead?); planned from now", spec.id,
                        published.next_run_time - latest.timestamp())
            return spec.trigger.get_next_fire_time(None, now)
        return dt.datetime.fromtimestamp(published.next_run_time, zone)

    def _next_run_of(self, job_id: str) -> tuple[float | None, bool]:
        """``(next run time, paused)``; a job APScheduler removed (its trigger is done) has neither."""
        job = self.scheduler.get_job(job_id)
        if job is None:
            return None, False
        next_run = job.next_run_time.timestamp() if job.next_run_time else None
        return next_run, job.next_run_time is None

    def definitions(self) -> list[JobDefinition]:
        """The job list as it is now, for publishing: every job of the file, finished ones included."""
        result = []
        for spec in self.specs:
            job = self.scheduler.get_job(spec.id)
            next_run = job.next_run_time if job is not None else None
            result.append(JobDefinition(
                id=spec.id, name=spec.name, trigger=str(spec.trigger),
                next_run_time=next_run.timestamp() if next_run else None,
                misfire_grace_time=spec.misfire_grace_time, max_instances=spec.max_instances, executor=spec.executor,
                paused=job is not None and next_run is None, critical=spec.critical,
                interval_seconds=spec.interval_seconds, max_runtime=spec.effective_max_runtime,
            ))
        return result

    def _publish_all(self) -> None:
        with self._plan_lock:
            definitions = self.definitions()
            self.store.publish_jobs(definitions)
        self._published = {d.id: (d.next_run_time, d.paused) for d in definitions}

    def _publish_changes(self) -> None:
        """Publish next run times that changed without a submission (pause, resume, a trigger that ended)."""
        with self._plan_lock:
            for spec in self.specs:
                state = self._next_run_of(spec.id)
                if self._published.get(spec.id) != state:
                    self.store.update_next_run(spec.id, *state)
                    self._published[spec.id] = state

    # -- the store failing while we lead ---------------------------------------
    def _store_failed(self, error: BaseException) -> None:
        """A store write failed: stop submitting jobs (running ones finish) until a heartbeat gets through."""
        with self._store_lock:
            if self._store_down is not None or self._stopping:
                return
            self._store_down = str(error)
        if self.scheduler.running and self.scheduler.state == STATE_RUNNING:
            self.scheduler.pause()
        log.error("the state store is failing (%s): no job is submitted until it can record runs again; this "
                  "worker keeps the scheduler lock meanwhile", error)
        if self.alerts is not None and not isinstance(error, FencedOut):
            self.alerts.store_failed(str(error))

    def _store_recovered(self) -> None:
        with self._store_lock:
            if self._store_down is None:
                return
            self._store_down = None
        self._publish_all()  # the file may have been rebuilt: the job list goes back first
        forgotten = self.store.forget_runs_except(self.session, self.tracker.live_runs())
        if forgotten:
            log.warning("forgot %d run(s) whose finish the state store could not record", forgotten)
        if not self._stopping:
            self.scheduler.resume()
        log.warning("the state store records again: job submission resumed")
        if self.alerts is not None:
            self.alerts.store_recovered()

    # -- heartbeat --------------------------------------------------------------
    def _clock_jumped(self, seconds: float) -> None:
        """After a wall-clock jump (APScheduler's thread; jobs already re-planned): publish the new plan.

        The heartbeat says ``replanning`` (the scheduler component is degraded)
        until the new next run times are in the store for every worker.
        """
        self.last_clock_jump = (seconds, time.time())
        if self._stopping:
            return
        try:
            self._beat(SchedulerState.REPLANNING)
            self._publish_all()
            self._beat()
        except Exception as error:
            self._store_failed(error)

    def _beat(self, state: SchedulerState | None = None) -> None:
        if state is None:
            state = SchedulerState.STOPPING if self._stopping else STATE_NAMES.get(self.scheduler.state, SchedulerState.STOPPED)
        if self._store_down is not None and not self._stopping:
            state = SchedulerState.RUNNING  # paused only by us, for the store: it is the store that is reported down
        self.store.beat(os.getpid(), socket.gethostname(), state, self.timezone, self.started_at, self.session,
                        self.last_clock_jump)

    def _beat_forever(self) -> None:
        while not self._stop_beating.wait(self.heartbeat_interval):
            # A backward clock jump is only seen when APScheduler looks at its jobs,
            # and it may sleep until the old next run time: look within a beat.
            self.scheduler.wakeup()
            try:
                self._beat()
                if self._store_down is not None:
                    self._store_recovered()
                elif not self._stopping and self.store.job_count() != len(self.specs):
                    # The file was rebuilt (corrupt, deleted): its job list goes back at once.
                    log.warning("the state store lost the job list (rebuilt?): publishing it again")
                    self._publish_all()
                # APScheduler's shutdown holds its job-store lock while running jobs
                # finish; reading jobs then would block this thread and stop the beat.
                if not self._stopping:
                    self._publish_changes()
            except Exception as error:
                self._store_failed(error)


def _quarantine_reason(crashes: int) -> str:
    return (f"quarantined: its worker died under it {crashes} times in a row; change the job in the jobs file and "
            "reload to release it")
