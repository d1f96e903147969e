"""Who runs what: each executing host with its threads and claims, and each run in flight with where it runs.

/status, the status page, /metrics and ``worker-service status`` show these,
from one snapshot's rows (:mod:`.snapshot`), never from the reading host.

* **A fleet** (``STATE_DATABASE_URL``): one entry per row of the store's
  ``hosts`` table, i.e. per executing process: a reload shows two rows of one
  host for a moment, the old one ``stopping`` and the new one ``active``. An
  expired row stays for an hour (its runs were settled ``lost``).
* **One host** (SQLite): no such table. The one entry is made from what the
  store knows: the leader's heartbeat (host name, pid, state and age),
  ``JOB_EXECUTOR_THREADS`` as its threads, and the runs it holds. There are no
  claims on one host, so the claim figures are ``None``.

A run held by a process that is gone (its host row expired, or not the
heartbeat's session on one host) is left out: the leader settles it
(``crashed`` or ``lost``), as the jobs' ``running`` counts leave it out.
"""

from __future__ import annotations

import dataclasses

from ..host_identity import host_label
from ..state.records import HostRecord, RunInFlight
from ..vocabulary import HostState, RunState, SchedulerState
from .scheduler_view import SchedulerView
from .snapshot import StoreSnapshot


@dataclasses.dataclass(frozen=True)
class HostView:
    """One executing process: ``host`` is the label people read, ``id`` the full identity (one host: the name)."""

    host: str
    id: str
    pid: int
    threads: int
    claimed: int
    free: int
    state: HostState
    heartbeat_age: float | None
    claims: int | None = None  # runs it claimed since it started (None: one host, no claims)
    claim_wait_sum: float | None = None  # seconds its claimed runs waited, planned to claimed, summed
    claim_wait_max: float | None = None
    lost: int | None = None  # its runs settled lost

    @property
    def claim_wait_avg(self) -> float | None:
        """The mean wait between planned and claimed, ``None`` before its first claim."""
        return None if not self.claims or self.claim_wait_sum is None else self.claim_wait_sum / self.claims


@dataclasses.dataclass(frozen=True)
class RunView:
    """A run in flight: ``host`` (label) and ``pid`` of the process that holds it, ``None`` while it waits."""

    job_id: str
    run_id: int
    host: str | None
    pid: int | None
    state: RunState
    scheduled_at: float
    started_at: float | None
    trigger: str


@dataclasses.dataclass(frozen=True)
class WorkView:
    """The hosts (oldest row first within a host) and the runs in flight (oldest first)."""

    hosts: list[HostView]
    running: list[RunView]
    error: str | None = None  # why the hosts and runs could not be read


def view_work(snapshot: StoreSnapshot, scheduler: SchedulerView | None, threads: int) -> WorkView:
    """The work as ``snapshot`` read it; ``scheduler`` (the heartbeat, judged) and ``threads`` make one host's entry."""
    if snapshot.error is not None:
        return WorkView([], [], snapshot.error)
    if snapshot.work_error is not None:
        return WorkView([], [], snapshot.work_error)
    leader_session = snapshot.leader.session if snapshot.leader is not None else None
    live = {row.session for row in snapshot.hosts if row.alive}
    if leader_session:
        live.add(leader_session)
    running = [_run(run) for run in snapshot.in_flight if not run.claimed or run.stopping or run.session in live]
    if snapshot.fleet:
        return WorkView([_host(row) for row in snapshot.hosts], running)
    held = sum(run.state is not RunState.WAITING for run in running)
    return WorkView(_one_host(scheduler, threads, held), running)


def _host(row: HostRecord) -> HostView:
    state = HostState.EXPIRED if not row.alive else HostState.STOPPING if row.stopping else HostState.ACTIVE
    return HostView(host=host_label(row.host) or row.host, id=row.host, pid=row.pid, threads=row.threads,
                    claimed=row.claimed, free=row.free, state=state, heartbeat_age=row.age, claims=row.claims,
                    claim_wait_sum=row.claim_wait_sum, claim_wait_max=row.claim_wait_max, lost=row.lost)


def _one_host(scheduler: SchedulerView | None, threads: int, held: int) -> list[HostView]:
    """One host's entry, from its leader's heartbeat; none before a scheduler ever beat."""
    if scheduler is None or scheduler.leader is None:
        return []
    leader = scheduler.leader
    if scheduler.state == SchedulerState.STOPPED:
        state = HostState.EXPIRED  # a stale heartbeat, or a scheduler that stopped: nothing takes runs
    elif scheduler.state == SchedulerState.STOPPING:
        state = HostState.STOPPING
    else:
        state = HostState.ACTIVE
    free = max(threads - held, 0) if state is HostState.ACTIVE else 0
    return [HostView(host=leader.hostname, id=leader.hostname, pid=leader.pid, threads=threads, claimed=held,
                     free=free, state=state, heartbeat_age=scheduler.heartbeat_age)]


def _run(run: RunInFlight) -> RunView:
    if not run.claimed:
        return RunView(run.job_id, run.run_id, None, None, RunState.WAITING, run.scheduled_at, None, run.trigger)
    state = RunState.STOPPING if run.stopping else RunState.RUNNING
    return RunView(run.job_id, run.run_id, host_label(run.host), run.pid, state, run.scheduled_at, run.started_at,
                   run.trigger)
