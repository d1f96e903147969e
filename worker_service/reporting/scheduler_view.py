"""The scheduler as /status and /metrics show it: the leader's record, judged at one ``now``."""

from __future__ import annotations

import dataclasses

from ..scheduler.heartbeat import heartbeat_age, heartbeat_is_fresh
from ..state.records import SchedulerRecord
from ..vocabulary import RUNNING_STATES, SchedulerState


@dataclasses.dataclass(frozen=True)
class SchedulerView:
    """The leader (None if no scheduler ever ran here), its state as seen now, and its heartbeat's age."""

    leader: SchedulerRecord | None
    state: str  # the leader's state (a SchedulerState word) while its heartbeat is fresh, else STOPPED
    heartbeat_age: float | None  # seconds, None when no heartbeat was ever written

    @property
    def running(self) -> bool:
        """Only while the leader's heartbeat is fresh."""
        return self.state in RUNNING_STATES


def view_scheduler(leader: SchedulerRecord | None, heartbeat_interval: float, now: float) -> SchedulerView:
    """Judge ``leader``'s heartbeat at ``now`` (its age immune to wall-clock jumps)."""
    if leader is None:
        return SchedulerView(leader=None, state=SchedulerState.STOPPED, heartbeat_age=None)
    fresh = heartbeat_is_fresh(leader, heartbeat_interval, now)
    return SchedulerView(leader=leader, state=leader.state if fresh else SchedulerState.STOPPED,
                         heartbeat_age=heartbeat_age(leader, now) if leader.heartbeat_at > 0 else None)
