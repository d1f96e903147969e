"""GET /openapi.json: the OpenAPI 3 document of every payload, generated with apispec from the payload schemas.

Assembled here, at the top, from what each endpoint package describes (health,
status, job control, the alert webhook): no endpoint package imports another
one to be in the document.
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response, current_app

from .config import COMPONENTS
from .control.openapi import describe_job_control
from .health.ready import ReadinessSchema
from .health.schemas import ComponentHealthSchema, ErrorSchema, HealthJsonSchema, HealthSchema, LivenessSchema
from .status.schemas import OverviewSchema, RunChartSchema, StatusSchema
from .status.webhook_schema import describe_alert_webhook
from .version import __version__
from .web import json_response

bp = Blueprint("openapi", __name__)


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _health(schema: str, description: str) -> dict[str, Any]:
    """A /health answer: the seed's JSON, health+json (``Accept``) or the ``?verbose`` text."""
    return {"description": description, "content": {
        "application/json": {"schema": schema},
        "application/health+json": {"schema": "HealthJson"},
        "text/plain": {"schema": {"type": "string"}},
    }}


_VERBOSE = {"name": "verbose", "in": "query", "required": False, "allowEmptyValue": True, "schema": {"type": "string"},
            "description": "present: a text list, one [+]/[-] line per check and a last 'health check passed|failed'"}
_EXCLUDE = {"name": "exclude", "in": "query", "required": False, "style": "form", "explode": True,
            "schema": {"type": "array", "items": {"type": "string"}},
            "description": "a component left out of this answer and its status (repeatable); unknown names are ignored"}


def build_openapi(app: Flask) -> dict[str, Any]:
    """Return the document as a dict."""
    spec = APISpec(title="worker-service", version=__version__, openapi_version="3.1.0",
                   plugins=[MarshmallowPlugin()],
                   info={"description": "Health and status of a worker service that runs scheduled jobs, and "
                                        "job control (run now, pause, resume)."})
    spec.components.schema("Health", schema=HealthSchema)
    spec.components.schema("HealthJson", schema=HealthJsonSchema)
    spec.components.schema("ComponentHealth", schema=ComponentHealthSchema)
    spec.components.schema("Liveness", schema=LivenessSchema)
    spec.components.schema("Readiness", schema=ReadinessSchema)
    spec.components.schema("Status", schema=StatusSchema)
    spec.components.schema("StatusOverview", schema=OverviewSchema)
    spec.components.schema("RunChart", schema=RunChartSchema)
    spec.components.schema("Error", schema=ErrorSchema)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.components.security_scheme("basic", {"type": "http", "scheme": "basic",
                                              "description": "any user name (it says who asked); the token as "
                                                             "the password"})
    guarded = bool(app.config.get("STATUS_TOKEN"))
    token_security = [{"bearer": []}, {"basic": []}]
    spec.path(path="/health", operations={"get": {
        "summary": "Availability of cache, database and scheduler",
        "description": "application/health+json (draft-inadarei-api-health-check-06) when Accept asks for it.",
        "parameters": [_VERBOSE, _EXCLUDE],
        "responses": {"200": _health("Health", "available or degraded (pass, warn)"),
                      "503": _health("Health", "unavailable (fail)")},
    }})
    spec.path(path="/health/{component}", operations={"get": {
        "summary": "One component's availability, for a load balancer's check per dependency",
        "parameters": [{"name": "component", "in": "path", "required": True,
                        "schema": {"type": "string", "enum": list(COMPONENTS)}}, _VERBOSE],
        "responses": {"200": _health("ComponentHealth", "available or degraded (pass, warn)"),
                      "503": _health("ComponentHealth", "unavailable (fail)"),
                      "404": _json("Error", "no such component; the message lists the known ones")},
    }})
    spec.path(path="/health/live", operations={"get": {
        "summary": "Liveness: the process answers; no dependency is touched",
        "responses": {"200": _json("Liveness", "alive")},
    }})
    spec.path(path="/health/ready", operations={"get": {
        "summary": "Readiness of this worker, for a load balancer's check: starting, ready, draining (SIGTERM)",
        "responses": {"200": _json("Readiness", "ready (the critical components are available or degraded)"),
                      "503": _json("Readiness", "starting, draining or unavailable")},
    }})
    status_operation: dict[str, Any] = {
        "summary": "Detailed status: jobs, scheduler, resources, dependencies",
        "description": "JSON unless Accept ranks text/html above application/json (a browser): then the status "
                       "page around the same report. Responses carry Vary: Accept.",
        "responses": {"200": {"description": "the report; the overall status is in the body",
                              "content": {"application/json": {"schema": "Status"},
                                          "text/html": {"schema": {"type": "string"}}}}},
    }
    if guarded:
        status_operation["security"] = token_security
        status_operation["responses"]["401"] = _json("Error", "missing or wrong token")
    spec.path(path="/status", operations={"get": status_operation})
    for path, summary, schema in (
            ("/status/overview", "The /status report without its per-job parts, and the jobs in each state "
                                 "(the status page's refresh)", "StatusOverview"),
            ("/status/runs", "Runs per minute by outcome over the last hour, from the run history "
                             "(the status page's chart); ETag, 304 while unchanged", "RunChart")):
        operation: dict[str, Any] = {"summary": summary, "responses": {"200": _json(schema, "the answer")}}
        if path == "/status/runs":
            operation["responses"]["304"] = {"description": "unchanged since the ETag in If-None-Match"}
            operation["responses"]["503"] = _json("Error", "the state store cannot be read")
        if guarded:
            operation["security"] = token_security
            operation["responses"]["401"] = _json("Error", "missing or wrong token")
        spec.path(path=path, operations={"get": operation})
    metrics_operation: dict[str, Any] = {
        "summary": "Prometheus metrics: jobs, components, scheduler, processes (text format 0.0.4)",
        "responses": {"200": {
            "description": "the exposition text, the same from every worker",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }},
    }
    if guarded:
        metrics_operation["security"] = token_security
        metrics_operation["responses"]["401"] = _json("Error", "missing or wrong token")
    spec.path(path="/metrics", operations={"get": metrics_operation})
    describe_job_control(spec, reads_guarded=guarded)
    spec.path(path="/openapi.json", operations={"get": {
        "summary": "This OpenAPI 3 document",
        "responses": {"200": {"description": "the document",
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    }})
    webhooks = describe_alert_webhook(spec)
    document = spec.to_dict()
    document["webhooks"] = webhooks  # OpenAPI 3.1: what the service sends (alerts), beside what it answers
    return document


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI document generated from the marshmallow schemas."""
    return json_response(current_app.extensions["openapi"], 200)


def init_app(app: Flask) -> None:
    """Build the document once (the app's settings decide which operations are guarded) and serve it."""
    app.extensions["openapi"] = build_openapi(app)
    app.register_blueprint(bp)
