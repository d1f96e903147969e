"""Job control's paths in the OpenAPI document (:func:`worker_service.openapi.build_openapi` calls this)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apispec import APISpec

from ..vocabulary import JobState
from .listing import DEFAULT_LIMIT, MAX_LIMIT, MAX_QUERY, MAX_RUNS
from .schemas import CommandAnswerSchema, JobDetailSchema, JobListSchema
from .submission import DEFAULT_WAIT, MAX_WAIT

_STATES = "|".join(state.value for state in JobState)

_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}, "example": "sync_accounts"}
_WAIT = {"name": "wait", "in": "query", "required": False,
         "schema": {"type": "number", "minimum": 0, "maximum": MAX_WAIT, "default": DEFAULT_WAIT},
         "description": "seconds to wait for the leader's outcome before answering 202"}
_REQUESTED_BY = {"name": "X-Requested-By", "in": "header", "required": False, "schema": {"type": "string"},
                 "description": "who asks (kept with the command; plain characters, at most 64); "
                                "default: HTTP Basic's user name, else 'token@<client address>'"}

_PAGE = [
    {"name": "state", "in": "query", "required": False, "schema": {"type": "string", "pattern": f"^(({_STATES})(,({_STATES}))*)?$"},
     "description": "job states, comma-separated: only the jobs in one of them"},
    {"name": "q", "in": "query", "required": False, "schema": {"type": "string", "maxLength": MAX_QUERY},
     "description": "words (any case) each of which the job's id, name, state or reason contains"},
    {"name": "offset", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0,
                                                                    "maximum": 10**9, "default": 0}},
    {"name": "limit", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}},
    {"name": "runs", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": 0, "maximum": MAX_RUNS, "default": 0},
     "description": "each job's newest runs to include (the status page's strip)"},
]
_CONTROL_TOKEN = {"name": "X-Control-Token", "in": "header", "required": False, "schema": {"type": "string"},
                  "description": "the status page's per-page token: a browser's request (one that sends Origin or "
                               "Sec-Fetch-Site) needs it besides coming from this origin; curl and the CLI do not"}

# Refused before it was queued (an Error), or by the leader (a CommandAnswer, with error and message).
_REFUSED = {"oneOf": ["Error", "CommandAnswer"]}


def _json(schema: str | dict[str, Any], description: str, headers: Mapping[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if headers:
        answer["headers"] = dict(headers)
    return answer


def describe_job_control(spec: APISpec, reads_guarded: bool) -> None:
    """Add the schemas and paths of job control to ``spec``; ``reads_guarded``: STATUS_TOKEN is set."""
    spec.components.schema("JobList", schema=JobListSchema)
    spec.components.schema("JobDetail", schema=JobDetailSchema)
    spec.components.schema("CommandAnswer", schema=CommandAnswerSchema)
    read_guard: dict[str, Any] = {}
    if reads_guarded:
        read_guard = {"security": [{"bearer": []}, {"basic": []}]}
    unauthorized = {"401": _json("Error", "no valid token (WWW-Authenticate offers Bearer and Basic)")}
    read_errors = {**(unauthorized if reads_guarded else {}),
                   "503": _json("Error", "the state store cannot be read")}
    spec.path(path="/jobs", operations={"get": {
        "summary": "Every published job: trigger, next run, pause, health, last run; or one page of them",
        "description": "With any of state, q, offset, limit, runs: one page of the jobs that match, problems first "
                       "(unhealthy, warning, the rest; critical first in each), with their figures and runs, "
                       "an ETag, and 304 while unchanged.",
        "parameters": _PAGE, **read_guard,
        "responses": {"200": _json("JobList", "the jobs, in the order published; or the page"),
                      "304": {"description": "a page unchanged since the ETag in If-None-Match"},
                      "400": _json("Error", "a page's parameter is out of bounds"), **read_errors},
    }})
    spec.path(path="/jobs/{job_id}", operations={"get": {
        "summary": "One job: definition, the /status analysis entry, its last runs and commands",
        "parameters": [_JOB_ID], **read_guard,
        "responses": {"200": _json("JobDetail", "the job"), "404": _json("Error", "unknown job"), **read_errors},
    }})
    spec.path(path="/jobs/{job_id}/commands/{command_id}", operations={"get": {
        "summary": "One command's state (poll it after a 202)",
        "parameters": [_JOB_ID, {"name": "command_id", "in": "path", "required": True,
                                 "schema": {"type": "integer", "minimum": 0}}],
        **read_guard,
        "responses": {"200": _json("CommandAnswer", "pending, done or failed"),
                      "404": _json("Error", "no such command on this job"), **read_errors},
    }})
    for action, summary in (("run", "Run the job now, through the leader, within max_instances"),
                            ("pause", "Pause the job (until resumed; it outlives reloads and restarts)"),
                            ("resume", "Resume the job")):
        spec.path(path=f"/jobs/{{job_id}}/{action}", operations={"post": {
            "summary": summary,
            "description": "Needs ADMIN_TOKEN. Queued for the leader from any worker; the answer waits up to "
                           "?wait= seconds for the leader's outcome.",
            "parameters": [_JOB_ID, _WAIT, _REQUESTED_BY, _CONTROL_TOKEN],
            "security": [{"bearer": []}, {"basic": []}],
            "responses": {
                "200": _json("CommandAnswer", "the leader applied it (run: started)"),
                "202": _json("CommandAnswer", "queued, no outcome yet: poll the Location",
                             {"Location": {"schema": {"type": "string"},
                                           "description": "/jobs/<id>/commands/<cid>"}}),
                "400": _json("Error", "wait is not a number of seconds from 0 to 30"),
                **unauthorized,
                "403": _json("Error", "control is off (ADMIN_TOKEN unset), the status token was presented, "
                                      "or a browser's cross-site request or one without the page's control token"),
                "404": _json(_REFUSED, "unknown job (nothing queued); a CommandAnswer when the leader found none"),
                "409": _json("CommandAnswer", "run: the job is already running at max_instances"),
                "503": _json(_REFUSED, "no scheduler leads, or the state store cannot be used (nothing queued); "
                                       "a CommandAnswer when the leader could not apply it"),
            },
        }})
