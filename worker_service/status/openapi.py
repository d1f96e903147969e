"""The OpenAPI 3 document, generated with apispec from the payload schemas."""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask

from ..health.schemas import ErrorSchema, HealthSchema, LivenessSchema
from ..version import __version__
from .schemas import StatusSchema


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def build_openapi(app: Flask) -> dict[str, Any]:
    """Return the document as a dict."""
    spec = APISpec(title="worker-service", version=__version__, openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()],
                   info={"description": "Health and status of a worker service that runs scheduled jobs."})
    spec.components.schema("Health", schema=HealthSchema)
    spec.components.schema("Liveness", schema=LivenessSchema)
    spec.components.schema("Status", schema=StatusSchema)
    spec.components.schema("Error", schema=ErrorSchema)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    spec.path(path="/health", operations={"get": {
        "summary": "Availability of cache, database and scheduler",
        "responses": {"200": _json("Health", "available or degraded"), "503": _json("Health", "unavailable")},
    }})
    spec.path(path="/health/live", operations={"get": {
        "summary": "Liveness: the process answers; no dependency is touched",
        "responses": {"200": _json("Liveness", "alive")},
    }})
    status_operation: dict[str, Any] = {
        "summary": "Detailed status: jobs, scheduler, resources, dependencies",
        "responses": {"200": _json("Status", "the report; the overall status is in the body")},
    }
    if app.config.get("STATUS_TOKEN"):
        status_operation["security"] = [{"bearer": []}]
        status_operation["responses"]["401"] = _json("Error", "missing or wrong bearer token")
    spec.path(path="/status", operations={"get": status_operation})
    metrics_operation: dict[str, Any] = {
        "summary": "Prometheus metrics: jobs, components, scheduler, processes (text format 0.0.4)",
        "responses": {"200": {
            "description": "the exposition text, the same from every worker",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }},
    }
    if app.config.get("STATUS_TOKEN"):
        metrics_operation["security"] = [{"bearer": []}]
        metrics_operation["responses"]["401"] = _json("Error", "missing or wrong bearer token")
    spec.path(path="/metrics", operations={"get": metrics_operation})
    spec.path(path="/openapi.json", operations={"get": {
        "summary": "This OpenAPI 3 document",
        "responses": {"200": {"description": "the document",
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    }})
    return spec.to_dict()
