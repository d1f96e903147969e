"""GET /jobs and GET /jobs/<id>: the published jobs, each judged at one ``now``, with runs and commands."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from common.helpers.health import format_timestamp

from ..scheduler.heartbeat import judging_now
from ..scheduler.job_health import JobPolicy
from ..state import StateStore
from .health_entry import JobHealthSchema, job_health_entry
from .payloads import command_entry, history_entry, job_fields, job_summary

COMMANDS_SHOWN = 20  # a job's last commands in GET /jobs/<id>


class UnknownJob(LookupError):
    """No published job has this id."""


class JobReports:
    """Reads the store for the job-control views; every call may raise ``StoreUnavailable``."""

    def __init__(self, store: StateStore, settings: Mapping[str, Any], fleet: bool = False) -> None:
        self._store = store
        self._policy = JobPolicy.from_settings(settings)
        self._history_size: int = settings["JOB_HISTORY_SIZE"]
        self._fleet = fleet  # Coordination.is_fleet: the store holds the fleet's lease
        self._stats_schema = JobHealthSchema()

    def _judging_now(self, wall: float) -> float:
        """In a fleet, the database's clock (one lease read), as /status and /health judge jobs; else ``wall``."""
        return judging_now(self._store.lease() if self._fleet else None, wall)

    def job_list(self) -> dict[str, Any]:
        """Every published job, short, in the order published."""
        now = time.time()
        judged_at = self._judging_now(now)
        records = self._store.jobs()
        pauses = self._store.operator_pauses()
        jobs = [job_summary(record, verdict, pauses.get(record.id))
                for record, verdict in zip(records, self._policy.judge_all(records, judged_at), strict=True)]
        return {"jobs": jobs, "timestamp": format_timestamp(now)}

    def job_detail(self, job_id: str) -> dict[str, Any]:
        """One job: its definition, the /status analysis entry, its last runs and commands; :class:`UnknownJob`."""
        now = time.time()
        record = next((r for r in self._store.jobs() if r.id == job_id), None)
        if record is None:
            raise UnknownJob(job_id)
        verdict = self._policy.judge(record, self._judging_now(now))
        return {
            **job_fields(record, verdict, self._store.operator_pauses().get(job_id), max_instances=True),
            "stats": self._stats_schema.dump(job_health_entry(record, verdict, now)),
            "history": [history_entry(run) for run in self._store.runs(job_id, self._history_size)],
            "commands": [command_entry(command) for command in self._store.commands(job_id, COMMANDS_SHOWN)],
        }
