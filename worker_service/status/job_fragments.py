"""Serialized per-job pieces of /status, reused while a job is unchanged.

With 1,000 jobs, marshmallow's dump of ``job_health`` and ``scheduled_jobs``
was most of /status's cost, yet between two requests only the jobs that ran
change. Each job's two entries are dumped through their schemas once per
distinct (record, verdict) and reused; only ``time_ago_seconds`` is computed
per request. The memo holds the current jobs only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..control.health_entry import JobHealthSchema, job_health_entry, time_ago
from ..scheduler.job_health import JobHealth
from ..state.records import JobRecord
from .analysis import scheduled_job_entry
from .schemas import ScheduledJobSchema

_AGO_FIELDS = (("last_execution", "last_run_at"), ("last_success", "last_success_at"))


class JobFragments:
    """Dumps each job's ``job_health`` and ``scheduled_jobs`` entries, memoized by (record, verdict)."""

    def __init__(self) -> None:
        self._health_schema = JobHealthSchema()
        self._job_schema = ScheduledJobSchema()
        self._memo: dict[tuple[JobRecord, JobHealth], tuple[dict, dict]] = {}

    def render(self, records: Sequence[JobRecord], verdicts: Sequence[JobHealth], now: float) -> tuple[dict, list]:
        """Return ``(job_health, scheduled_jobs)``, serialized."""
        memo: dict[tuple[JobRecord, JobHealth], tuple[dict, dict]] = {}
        health: dict[str, Any] = {}
        listing: list[dict] = []
        for record, verdict in zip(records, verdicts, strict=True):
            key = (record, verdict)
            pieces = self._memo.get(key) or memo.get(key)
            if pieces is None:
                pieces = (self._health_schema.dump(job_health_entry(record, verdict, now)),
                          self._job_schema.dump(scheduled_job_entry(record)))
            memo[key] = pieces
            health[record.id] = _with_fresh_ages(pieces[0], record, now)
            listing.append(pieces[1])
        self._memo = memo
        return health, listing


def _with_fresh_ages(entry: dict, record: JobRecord, now: float) -> dict:
    fresh = dict(entry)
    for field, attribute in _AGO_FIELDS:
        moment = getattr(record, attribute)
        if fresh.get(field) is not None and moment is not None:
            fresh[field] = {**fresh[field], "time_ago_seconds": time_ago(moment, now)}
    return fresh
