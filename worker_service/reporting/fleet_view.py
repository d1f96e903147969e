"""The fleet as /status, /metrics and ``worker-service status`` show it: who leads, under which lease, since when.

Everything here comes from the shared store (the lease and its changes are
read with the database's clock), never from the reading host, so every
worker of every host shows the same fleet. One host (the SQLite store) has no
lease: its leader is the process whose heartbeat is fresh, with no epoch.
"""

from __future__ import annotations

import dataclasses

from ..host_identity import host_label
from ..state.records import LeadershipChange, LeaseRecord
from ..vocabulary import SchedulerState
from .scheduler_view import SchedulerView
from .snapshot import StoreSnapshot

FLEET, SINGLE_HOST = "fleet", "single-host"


@dataclasses.dataclass(frozen=True)
class FleetLeader:
    """The process that leads: with a lease (fleet mode) its epoch and expiry; ``since`` is when it took the lead."""

    host: str | None
    pid: int | None
    since: float | None
    epoch: int | None = None
    expires_at: float | None = None
    expires_in: float | None = None  # seconds on the database's clock at the read


@dataclasses.dataclass(frozen=True)
class FleetView:
    """The mode, the leader (``None`` when nobody leads or the store could not be read) and the last changes."""

    mode: str
    leader: FleetLeader | None
    lease: LeaseRecord | None
    changes: list[LeadershipChange]
    error: str | None = None  # why the store could not be read: leader and changes are then unknown


def view_fleet(snapshot: StoreSnapshot, scheduler: SchedulerView | None) -> FleetView:
    """The fleet as ``snapshot`` read it; ``scheduler`` (the heartbeat, judged) names the leader of one host."""
    if snapshot.error is not None:
        return FleetView(FLEET if snapshot.fleet else SINGLE_HOST, None, None, [], snapshot.error)
    if not snapshot.fleet:
        return FleetView(SINGLE_HOST, _heartbeat_leader(scheduler), None, [])
    lease, leader = snapshot.lease, None
    if lease is not None and lease.live:
        leader = FleetLeader(host_label(lease.holder_host), lease.holder_pid, lease.acquired_at, lease.epoch, lease.expires_at,
                             lease.expires_in)
    return FleetView(FLEET, leader, lease, list(snapshot.changes))


def _heartbeat_leader(scheduler: SchedulerView | None) -> FleetLeader | None:
    """One host's leader: the process whose heartbeat is fresh (since its scheduler started)."""
    if scheduler is None or scheduler.leader is None or scheduler.state == SchedulerState.STOPPED:
        return None
    record = scheduler.leader
    return FleetLeader(record.hostname, record.pid, record.started_at)
