"""A job's health entry: ``/status``'s ``jobs_analysis.job_health[<id>]`` and ``/jobs/<id>``'s ``stats``, and its schema.

Both endpoints show the same entry. It lives here, below the status package,
because the status page is built on job control (its listing, its buttons):
``status`` imports ``control``, never the other way round.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from common.helpers.health import format_timestamp

from ..scheduler.job_health import JobHealth
from ..state.records import JobRecord
from ..vocabulary import JobState

JOB_STATES = [state.value for state in JobState]


class LastExecutionSchema(Schema):
    timestamp = fields.String(required=True)
    time_ago_seconds = fields.Float(required=True, metadata={"description": "negative when the time is in the future "
                                                                            "(the wall clock went back)"})


class JobHealthSchema(Schema):
    status = fields.String(required=True, validate=validate.OneOf(JOB_STATES))
    reason = fields.String(allow_none=True)
    is_active = fields.Boolean(required=True)
    is_critical = fields.Boolean(required=True)
    error_count = fields.Integer(required=True)
    success_count = fields.Integer(required=True)
    consecutive_failures = fields.Integer(required=True)
    last_execution = fields.Nested(LastExecutionSchema, allow_none=True, required=True)
    last_success = fields.Nested(LastExecutionSchema, allow_none=True, required=True)
    next_execution = fields.String(allow_none=True, required=True)


def time_ago(moment: float, now: float) -> float:
    """Seconds since ``moment``; negative when it is in the future (the wall clock went back), never clamped."""
    return round(now - moment, 3)


def _since(moment: float | None, now: float) -> dict[str, Any] | None:
    if moment is None:
        return None
    return {"timestamp": format_timestamp(moment), "time_ago_seconds": time_ago(moment, now)}


def job_health_entry(record: JobRecord, verdict: JobHealth, now: float) -> dict[str, Any]:
    """One job's entry in ``jobs_analysis.job_health`` (and its ``stats`` in GET /jobs/<id>)."""
    definition = record.definition
    return {
        "status": verdict.state.value,
        "reason": verdict.reason,
        "is_active": not definition.paused,
        "is_critical": definition.critical,
        "error_count": record.error_count,
        "success_count": record.success_count,
        "consecutive_failures": record.consecutive_failures,
        "last_execution": _since(record.last_run_at, now),
        "last_success": _since(record.last_success_at, now),
        "next_execution": format_timestamp(definition.next_run_time),
    }
