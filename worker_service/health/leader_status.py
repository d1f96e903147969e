"""Whether a scheduler leads now, by the rule of /health's scheduler component, reading only who leads.

A job-control POST asks this before it queues a command: the lease (fleet
mode) and the heartbeat, judged by :func:`.scheduler_verdict.leader_problem`;
the jobs and quarantines the whole component also reads are not its concern.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.helpers.health import ServiceUnavailable

from ..state import StateReader, StoreUnavailable
from .scheduler_check import bounded_reads
from .scheduler_observer import SchedulerObserver
from .scheduler_verdict import SchedulerRules, leader_problem


class LeaderStatus:
    """Asks the store who leads; built once per app, under the fleet's read deadline as the component is."""

    def __init__(self, store: StateReader, settings: Mapping[str, Any]) -> None:
        self._store = store
        self._observer = SchedulerObserver(SchedulerRules.from_settings(settings), settings.get("WORKER_STATE_DIR") or "")
        self._deadline = bounded_reads(settings)

    def problem(self) -> str | None:
        """Why no scheduler leads (the component's ``unavailable`` reason), or ``None`` when one beats.

        A degraded scheduler (an unhealthy critical job, a re-planning after a
        clock jump) still leads and applies commands; so does, as far as this
        host can tell, another host's leader read within a lease TTL while the
        database cannot be reached.
        """
        try:
            return self._deadline.call(lambda: leader_problem(self._observer.read_leader(self._store),
                                                              self._observer.rules))
        except StoreUnavailable as error:
            verdict = self._observer.unreachable(error.reason)
            return verdict.reason if isinstance(verdict, ServiceUnavailable) else None
