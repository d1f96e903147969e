"""Marshmallow schemas of job control's payloads (the OpenAPI document is generated from them)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from .health_entry import JOB_STATES, JobHealthSchema
from .submission import ACTIONS

_time = {"metadata": {"description": "ISO-8601, UTC", "example": "2023-06-15T10:30:45.123456Z"}}
COMMAND_STATES = ["pending", "done", "failed"]


class PausedBySchema(Schema):
    """An operator's pause: who and when."""

    by = fields.String(required=True)
    at = fields.String(required=True, **_time)


class _JobSchema(Schema):
    """What GET /jobs and GET /jobs/<id> both say of a job."""

    id = fields.String(required=True)
    name = fields.String(required=True)
    trigger = fields.String(required=True)
    next_run = fields.String(allow_none=True, required=True, **_time)
    paused = fields.Boolean(required=True)
    paused_by = fields.Nested(PausedBySchema, allow_none=True, required=True,
                              metadata={"description": "set while an operator's pause holds the job"})
    critical = fields.Boolean(required=True)
    health = fields.String(required=True, validate=validate.OneOf(JOB_STATES))
    health_reason = fields.String(allow_none=True, required=True)


class JobFiguresSchema(Schema):
    """A job's counts and durations (a paged GET /jobs only)."""

    success_count = fields.Integer(required=True)
    error_count = fields.Integer(required=True)
    missed_count = fields.Integer(required=True)
    max_instances_count = fields.Integer(required=True)
    consecutive_failures = fields.Integer(required=True)
    error_rate = fields.Float(allow_none=True, required=True,
                              metadata={"description": "percent of finished runs that failed; null before one"})
    avg_seconds = fields.Float(allow_none=True, required=True)
    p95_seconds = fields.Float(allow_none=True, required=True)
    running_since = fields.String(allow_none=True, required=True, **_time)
    crash_count = fields.Integer(required=True)
    quarantined = fields.Boolean(required=True)


class RecentRunSchema(Schema):
    """One of a job's newest runs (a paged GET /jobs with ``runs``)."""

    finished_at = fields.String(required=True, **_time)
    duration_seconds = fields.Float(allow_none=True, required=True)
    outcome = fields.String(required=True, metadata={"example": "success"})
    error = fields.String(allow_none=True, required=True, metadata={"description": "'Type: message', redacted"})


class JobSummarySchema(_JobSchema):
    """One job in GET /jobs."""

    running = fields.Integer(required=True, metadata={"description": "runs in progress now"})
    last_run_at = fields.String(allow_none=True, required=True, **_time)
    last_outcome = fields.String(allow_none=True, required=True)
    figures = fields.Nested(JobFiguresSchema, metadata={"description": "in a paged answer only"})
    recent_runs = fields.List(fields.Nested(RecentRunSchema),
                              metadata={"description": "with runs=N: the job's N newest runs, newest first"})


class JobListSchema(Schema):
    """``GET /jobs``: every job in the order published; or, with any of the page's parameters, one page."""

    jobs = fields.List(fields.Nested(JobSummarySchema), required=True)
    total = fields.Integer(metadata={"description": "a page: how many jobs are published"})
    matched = fields.Integer(metadata={"description": "a page: how many match state and q"})
    offset = fields.Integer(metadata={"description": "a page: the first matching job shown (0-based)"})
    limit = fields.Integer(metadata={"description": "a page: at most this many jobs"})
    timestamp = fields.String(required=True, **_time)


class RunErrorSchema(Schema):
    type = fields.String(required=True)
    message = fields.String(required=True, metadata={"description": "redacted"})


class RunSchema(Schema):
    """One run in a job's history (finished, missed or skipped)."""

    started_at = fields.String(allow_none=True, required=True, **_time)
    finished_at = fields.String(required=True, **_time)
    duration_seconds = fields.Float(allow_none=True, required=True)
    outcome = fields.String(required=True, metadata={"example": "success"})
    error = fields.Nested(RunErrorSchema, allow_none=True, required=True)
    trigger = fields.String(required=True, validate=validate.OneOf(["scheduled", "manual"]))
    requested_by = fields.String(allow_none=True, required=True)
    command_id = fields.Integer(allow_none=True, required=True)


class _CommandStateSchema(Schema):
    """What a job's ``commands`` and a command's own answer both say of it."""

    action = fields.String(required=True, validate=validate.OneOf(ACTIONS))
    requested_by = fields.String(required=True)
    requested_at = fields.String(required=True, **_time)
    state = fields.String(required=True, validate=validate.OneOf(COMMAND_STATES))
    status = fields.Integer(allow_none=True, required=True, metadata={"description": "the HTTP status of its outcome"})
    outcome = fields.String(allow_none=True, required=True)
    finished_at = fields.String(allow_none=True, required=True, **_time)
    applied_by = fields.String(allow_none=True, required=True)
    run_id = fields.Integer(allow_none=True, required=True, metadata={"description": "the run a run-now started"})


class CommandSchema(_CommandStateSchema):
    """One command in a job's ``commands``."""

    id = fields.Integer(required=True)


class JobDetailSchema(_JobSchema):
    """``GET /jobs/<id>``."""

    max_instances = fields.Integer(required=True)
    stats = fields.Nested(JobHealthSchema, required=True,
                          metadata={"description": "the job's entry in /status metrics.jobs_analysis.job_health"})
    history = fields.List(fields.Nested(RunSchema), required=True,
                          metadata={"description": "the last JOB_HISTORY_SIZE runs, newest first"})
    commands = fields.List(fields.Nested(CommandSchema), required=True,
                           metadata={"description": "the last commands, newest first"})


class CommandAnswerSchema(_CommandStateSchema):
    """A command as POST /jobs/<id>/<action> and GET /jobs/<id>/commands/<cid> answer it."""

    command_id = fields.Integer(required=True)
    job_id = fields.String(required=True)
    poll = fields.String(required=True, metadata={"description": "GET this path for the command's state"})
    error = fields.String(metadata={"description": "POST answers of a refused command (4xx, 5xx) only"})
    message = fields.String(metadata={"description": "the leader's outcome, on a refused command"})
