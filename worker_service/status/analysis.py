"""Turn the shared store's records into the scheduler, job-analysis and job-list blocks of /status."""

from __future__ import annotations

import time
from typing import Any

from common.helpers.health import format_timestamp

from ..scheduler.component_check import HEARTBEATS_BEFORE_STALE
from ..scheduler.job_health import judge
from ..state.records import JobRecord, SchedulerRecord


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def scheduler_status(leader: SchedulerRecord | None, settings: dict[str, Any], now: float) -> dict[str, Any]:
    """``running`` only while the leader's heartbeat is fresh."""
    stale_after = HEARTBEATS_BEFORE_STALE * settings["SCHEDULER_HEARTBEAT_INTERVAL"]
    if leader is None:
        return {"running": False, "timezone": settings["SCHEDULER_TIMEZONE"], "state": "stopped", "pid": None,
                "hostname": None, "heartbeat_age_seconds": None, "started_at": None}
    age = max(now - leader.heartbeat_at, 0.0)
    fresh = leader.heartbeat_at > 0 and age <= stale_after
    state = leader.state if fresh else "stopped"
    return {
        "running": state == "running",
        "timezone": leader.timezone,
        "state": state,
        "pid": leader.pid,
        "hostname": leader.hostname,
        "heartbeat_age_seconds": round(age, 3) if leader.heartbeat_at > 0 else None,
        "started_at": format_timestamp(leader.started_at),
    }


def analyse_jobs(records: list[JobRecord], settings: dict[str, Any], now: float | None = None) -> tuple[dict, list]:
    """Return ``(jobs_analysis, scheduled_jobs)`` for the seed's payload."""
    now = time.time() if now is None else now
    threshold, grace = settings["JOB_FAILURE_THRESHOLD"], settings["JOB_OVERDUE_GRACE"]
    averages, error_rates, health, listing = {}, {}, {}, []
    paused = critical = with_errors = 0
    for record in records:
        definition = record.definition
        paused += definition.paused
        critical += definition.critical
        with_errors += record.error_count > 0
        average = record.avg_duration
        if average is not None:
            averages[record.id] = _ms(average)
        if record.error_count:
            error_rates[record.id] = round(100.0 * record.error_count / record.runs, 2)
        verdict = judge(record, now, threshold, grace)
        next_run = format_timestamp(definition.next_run_time)
        health[record.id] = {
            "status": verdict.state.value,
            "reason": verdict.reason,
            "is_active": not definition.paused,
            "is_critical": definition.critical,
            "error_count": record.error_count,
            "success_count": record.success_count,
            "consecutive_failures": record.consecutive_failures,
            "last_execution": None if record.last_run_at is None else {
                "timestamp": format_timestamp(record.last_run_at),
                "time_ago_seconds": round(max(now - record.last_run_at, 0.0), 3),
            },
            "last_success": None if record.last_success_at is None else {
                "timestamp": format_timestamp(record.last_success_at),
                "time_ago_seconds": round(max(now - record.last_success_at, 0.0), 3),
            },
            "next_execution": next_run,
        }
        listing.append({
            "id": record.id,
            "name": definition.name,
            "next_run_time": next_run,
            "trigger": definition.trigger,
            "misfire_grace_time": definition.misfire_grace_time,
            "max_instances": definition.max_instances,
            "executor": definition.executor,
            "avg_execution_time": _ms(average),
            "min_execution_time": _ms(record.duration_min),
            "max_execution_time": _ms(record.duration_max),
            "error_count": record.error_count,
            "success_count": record.success_count,
            "missed_count": record.missed_count,
            "max_instances_count": record.max_instances_count,
            "paused": definition.paused,
            "critical": definition.critical,
            "last_error": None if record.last_error_type is None else {
                "type": record.last_error_type,
                "message": record.last_error_message or "",
                "timestamp": format_timestamp(record.last_error_at),
            },
        })
    analysis = {
        "total_jobs": len(records),
        "active_jobs": len(records) - paused,
        "paused_jobs": paused,
        "critical_jobs": critical,
        "jobs_with_errors": with_errors,
        "avg_execution_times": averages,
        "error_rates": error_rates,
        "job_health": health,
    }
    return analysis, listing
