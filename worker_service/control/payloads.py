"""The JSON of job control, built from the store's records: jobs, their runs and their commands.

Times are ISO-8601 (``2023-06-15T10:30:45.123456Z``) or null, durations seconds.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import url_for

from common.helpers.health import format_timestamp, redact

from ..scheduler.job_health import JobHealth
from ..state.records import Command, JobRecord, OperatorPause, RunRecord

PENDING = "pending"


def paused_by(pause: OperatorPause | None, paused: bool) -> dict[str, Any] | None:
    """Who paused the job and when, while an operator's pause holds it; None otherwise (a jobs file's pause too)."""
    if pause is None or not pause.paused or not paused:
        return None
    return {"by": pause.by, "at": format_timestamp(pause.at)}


def job_fields(record: JobRecord, verdict: JobHealth, pause: OperatorPause | None, *,
               max_instances: bool = False) -> dict[str, Any]:
    """What GET /jobs and GET /jobs/<id> both say of a job: what it is, when it runs next, its pause and its health.

    With ``max_instances`` (GET /jobs/<id>), the job's ``max_instances`` too, after ``paused_by``.
    """
    definition = record.definition
    fields: dict[str, Any] = {
        "id": record.id,
        "name": definition.name,
        "trigger": definition.trigger,
        "next_run": format_timestamp(definition.next_run_time),
        "paused": definition.paused,
        "paused_by": paused_by(pause, definition.paused),
    }
    if max_instances:
        fields["max_instances"] = definition.max_instances
    fields.update({"critical": definition.critical, "health": verdict.state.value, "health_reason": verdict.reason})
    return fields


def job_summary(record: JobRecord, verdict: JobHealth, pause: OperatorPause | None) -> dict[str, Any]:
    """One job in GET /jobs: :func:`job_fields`, then how many runs are going and the last run's time and outcome."""
    return {
        **job_fields(record, verdict, pause),
        "running": record.running_count,
        "last_run_at": format_timestamp(record.last_run_at),
        "last_outcome": record.last_outcome,
    }


def history_entry(run: RunRecord) -> dict[str, Any]:
    """One finished, missed or skipped run, with its error (redacted) and who asked for it if an operator did."""
    return {
        "started_at": format_timestamp(run.started_at),
        "finished_at": format_timestamp(run.at),
        "duration_seconds": None if run.duration is None else round(run.duration, 6),
        "outcome": run.outcome,
        # The store keeps messages redacted; masked again here in case a secret was registered since.
        "error": None if run.error_type is None else {"type": run.error_type,
                                                      "message": redact(run.error_message or "")},
        "trigger": run.trigger,
        "requested_by": run.requested_by,
        "command_id": run.command_id,
    }


def command_entry(command: Command) -> dict[str, Any]:
    """One command in a job's ``commands`` list."""
    return {
        "id": command.id,
        "action": command.action,
        "requested_by": command.requested_by,
        "requested_at": format_timestamp(command.requested_at),
        "state": command.state,
        "status": command.status,
        "outcome": command.outcome,
        "finished_at": format_timestamp(command.finished_at),
        "applied_by": command.applied_by,
        "run_id": command.run_id,
    }


def command_path(command: Command) -> str:
    """Where a command's state is read: GET /jobs/<id>/commands/<cid>, under the app's script root (a path prefix).

    Built in a request (the root comes from it); the job id is quoted as a path segment.
    """
    return url_for("control.command_state", job_id=command.job_id, command_id=str(command.id))


def answer_status(command: Command) -> int:
    """The HTTP status a command answers with: 202 while pending, else the status the leader gave it."""
    if command.state == PENDING:
        return HTTPStatus.ACCEPTED
    if command.status is not None:
        return command.status
    return HTTPStatus.OK if command.state == "done" else HTTPStatus.SERVICE_UNAVAILABLE


def command_answer(command: Command, as_error: bool = False) -> dict[str, Any]:
    """A command as POST /jobs/<id>/<action> and GET /jobs/<id>/commands/<cid> answer it.

    With ``as_error`` (a POST), a command the leader refused (4xx, 5xx) also
    carries the ``error`` and ``message`` of every error answer.
    """
    body: dict[str, Any] = {
        "command_id": command.id,
        "job_id": command.job_id,
        **{key: value for key, value in command_entry(command).items() if key != "id"},
        "poll": command_path(command),
    }
    status = answer_status(command)
    if as_error and status >= 400:
        body["error"] = _phrase(status)
        body["message"] = command.outcome or body["error"]
    return body


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"
