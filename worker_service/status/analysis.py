"""Turn the shared store's records into the scheduler, fleet, job-analysis, job-list, hosts and running blocks of /status."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from common.helpers.health import format_timestamp

from ..host_identity import host_label
from ..reporting.fleet_view import FleetView
from ..reporting.scheduler_view import SchedulerView
from ..reporting.work_view import WorkView
from ..state.records import JobRecord
from ..vocabulary import SchedulerState


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def scheduler_status(view: SchedulerView, timezone: str) -> dict[str, Any]:
    """The ``scheduler_status`` block; ``timezone`` (``SCHEDULER_TIMEZONE``) is shown while no scheduler ever ran."""
    leader = view.leader
    if leader is None:
        return {"running": False, "timezone": timezone, "state": SchedulerState.STOPPED, "pid": None,
                "hostname": None, "heartbeat_age_seconds": None, "started_at": None}
    return {
        "running": view.running,
        "timezone": leader.timezone,
        "state": view.state,
        "pid": leader.pid,
        "hostname": leader.hostname,
        "heartbeat_age_seconds": None if view.heartbeat_age is None else round(view.heartbeat_age, 3),
        "started_at": format_timestamp(leader.started_at),
        "last_clock_jump": None if leader.clock_jump_at is None else {
            "seconds": round(leader.clock_jump_seconds, 3), "at": format_timestamp(leader.clock_jump_at)},
    }


def fleet_status(view: FleetView) -> dict[str, Any]:
    """The ``fleet`` block: the same from every worker of every host (nothing in it is about the reader)."""
    leader = view.leader
    return {
        "mode": view.mode,
        "leader": None if leader is None else {
            "host": leader.host,
            "pid": leader.pid,
            "epoch": leader.epoch,
            "lease_expires_at": format_timestamp(leader.expires_at),
            "lease_expires_in_seconds": None if leader.expires_in is None else round(leader.expires_in, 3),
            "since": format_timestamp(leader.since),
        },
        "changes": [{
            "at": format_timestamp(change.at),
            "epoch": change.epoch,
            "reason": change.reason,
            "from": None if change.from_host is None else {"host": host_label(change.from_host), "pid": change.from_pid},
            "to": None if change.to_host is None else {"host": host_label(change.to_host), "pid": change.to_pid},
        } for change in view.changes],
        "error": view.error,
    }


def _round(value: float | None, places: int = 3) -> float | None:
    return None if value is None else round(value, places)


def hosts_status(work: WorkView) -> list[dict[str, Any]]:
    """The top-level ``hosts`` list: each executing process, its threads, claims and how fresh its row is."""
    return [{
        "host": host.host,
        "id": host.id,
        "pid": host.pid,
        "threads": host.threads,
        "claimed": host.claimed,
        "free": host.free,
        "state": host.state.value,
        "heartbeat_age_seconds": _round(host.heartbeat_age),
        "claims": host.claims,
        "claim_wait_avg_seconds": _round(host.claim_wait_avg, 6),
        "claim_wait_max_seconds": _round(host.claim_wait_max, 6),
        "lost_runs": host.lost,
    } for host in work.hosts]


def running_status(work: WorkView) -> list[dict[str, Any]]:
    """The top-level ``running`` list: each run in flight, oldest first, and the host that holds it."""
    return [{
        "job_id": run.job_id,
        "run_id": run.run_id,
        "host": run.host,
        "pid": run.pid,
        "state": run.state.value,
        "scheduled_at": format_timestamp(run.scheduled_at),
        "started_at": format_timestamp(run.started_at),
        "trigger": run.trigger,
    } for run in work.running]


def scheduled_job_entry(record: JobRecord) -> dict[str, Any]:
    """One job's entry in ``scheduled_jobs``."""
    definition = record.definition
    return {
        "id": record.id,
        "name": definition.name,
        "next_run_time": format_timestamp(definition.next_run_time),
        "trigger": definition.trigger,
        "misfire_grace_time": definition.misfire_grace_time,
        "max_instances": definition.max_instances,
        "executor": definition.executor,
        "avg_execution_time": _ms(record.avg_duration),
        "p95_execution_time": _ms(record.duration_p95),
        "min_execution_time": _ms(record.duration_min),
        "max_execution_time": _ms(record.duration_max),
        "error_count": record.error_count,
        "success_count": record.success_count,
        "missed_count": record.missed_count,
        "max_instances_count": record.max_instances_count,
        "paused": definition.paused,
        "critical": definition.critical,
        "max_runtime": definition.max_runtime,
        "running": None if not record.running_count else {
            "instances": record.running_count, "since": format_timestamp(record.running_since)},
        "crash_count": record.crash_count,
        "quarantined": record.quarantined_at is not None,
        "last_error": None if record.last_error_type is None else {
            "type": record.last_error_type,
            "message": record.last_error_message or "",
            "timestamp": format_timestamp(record.last_error_at),
        },
    }


def jobs_summary(records: Sequence[JobRecord]) -> dict[str, Any]:
    """The counters and per-job figures of ``jobs_analysis`` (without ``job_health``)."""
    return {
        "total_jobs": len(records),
        "active_jobs": sum(not r.definition.paused for r in records),
        "paused_jobs": sum(r.definition.paused for r in records),
        "critical_jobs": sum(r.definition.critical for r in records),
        "jobs_with_errors": sum(r.error_count > 0 for r in records),
        "avg_execution_times": {r.id: _ms(r.avg_duration) for r in records if r.avg_duration is not None},
        "p95_execution_times": {r.id: _ms(r.duration_p95) for r in records if r.duration_p95 is not None},
        "error_rates": {r.id: round(100.0 * r.error_count / r.runs, 2) for r in records if r.error_count},
    }

