"""Marshmallow schemas of the /health payload."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

STATUS_WORDS = ["available", "degraded", "unavailable"]


class ComponentsSchema(Schema):
    """Each component's status word."""

    cache = fields.String(required=True, validate=validate.OneOf(STATUS_WORDS))
    database = fields.String(required=True, validate=validate.OneOf(STATUS_WORDS))
    scheduler = fields.String(required=True, validate=validate.OneOf(STATUS_WORDS))


class HealthSchema(Schema):
    """``GET /health``: the seed's body, statuses only."""

    status = fields.String(required=True, validate=validate.OneOf(STATUS_WORDS),
                           metadata={"description": "Worst of the critical components; degraded if only others fail."})
    components = fields.Nested(ComponentsSchema, required=True)
    timestamp = fields.String(required=True, metadata={"example": "2023-06-15T10:30:45.123456Z"})
    service = fields.String(required=True, metadata={"example": "worker-service"})


class LivenessSchema(Schema):
    """``GET /health/live``: the process answers; no dependency is touched."""

    status = fields.String(required=True, validate=validate.OneOf(["alive"]))
    timestamp = fields.String(required=True)
    service = fields.String(required=True)


class ErrorSchema(Schema):
    """Any error answer."""

    error = fields.String(required=True)
    message = fields.String(required=True)
