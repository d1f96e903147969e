"""One read of the shared store, judged at one ``now``: what /status and /metrics report on.

Everything /status shows about the scheduler and the jobs (the scheduler
component, its reason, each job's state and counts) comes from one snapshot,
read when the report is built. Before, the scheduler component came from the
health engine's cache, read earlier than the job list, so one table could
show a job at 21 consecutive failures in the scheduler's reason and at 26 in
its own row.

The scheduler component's rule stays in :class:`SchedulerCheck`: the snapshot
offers the store's read methods (``scheduler()``, ``jobs()``), so the check
runs against it unchanged. Any other read the check makes (quarantined jobs,
say) goes on to the live store: the snapshot pins what /status shows side by
side (heartbeat, jobs, counts), not every read a rule may add.

A store read may fail (``StoreUnavailable`` from ``worker_service.state``, or
any error of the store's driver): the snapshot then holds no records and the
reason, and the scheduler component is unavailable with that reason; the
report is still made.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from common.helpers.health import CheckResult, Status, redact, utc_now

from ..scheduler.component_check import SchedulerCheck
from ..scheduler.job_health import JobHealth, JobPolicy
from ..state import StateReader
from ..state.records import JobRecord, SchedulerRecord

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StoreSnapshot:
    """The leader's heartbeat and every job with its stats and verdict, as read at ``now`` (epoch seconds)."""

    now: float
    leader: SchedulerRecord | None
    records: list[JobRecord]
    verdicts: list[JobHealth]
    error: str | None = None  # why the store could not be read
    store: StateReader | None = dataclasses.field(default=None, repr=False, compare=False)  # for the reads not held here

    def __getattr__(self, name: str) -> Any:
        """A read the snapshot does not hold, from the live store (only called for unknown attributes)."""
        store = self.__dict__.get("store")
        if store is None or name.startswith("_"):
            raise AttributeError(name)
        return getattr(store, name)

    def scheduler(self) -> SchedulerRecord | None:
        """The heartbeat, as the store's method of that name returns it."""
        return self.leader

    def jobs(self, critical_only: bool = False) -> list[JobRecord]:
        """The jobs, as the store's method of that name returns them."""
        return [r for r in self.records if r.definition.critical] if critical_only else list(self.records)


def take_snapshot(store: StateReader, policy: JobPolicy) -> StoreSnapshot:
    """Read the heartbeat and the jobs once, and judge every job by ``policy`` at one ``now``."""
    now = time.time()
    try:
        leader, records = store.scheduler(), store.jobs()
    except Exception as error:  # StoreUnavailable, or a raw driver error until every store wraps them
        reason = str(error) if type(error).__name__ == "StoreUnavailable" else f"{type(error).__name__}: {error}"
        reason = redact(reason if reason.startswith("state store") else f"state store: {reason}")
        log.warning("status: the state store cannot be read: %s", reason)
        return StoreSnapshot(now=now, leader=None, records=[], verdicts=[], error=reason[:300], store=store)
    return StoreSnapshot(now=now, leader=leader, records=records, verdicts=policy.judge_all(records, now),
                         store=store)


def scheduler_result(snapshot: StoreSnapshot, settings: Any, policy: JobPolicy) -> CheckResult:
    """The scheduler component, judged from ``snapshot`` by :class:`SchedulerCheck`'s rule and ``policy``."""
    if snapshot.error is not None:
        return CheckResult(component="scheduler", status=Status.UNAVAILABLE, backend=SchedulerCheck.backend,
                           latency=None, checked_at=utc_now(), reason=snapshot.error)
    return SchedulerCheck(snapshot, settings, policy=policy).run("scheduler")
