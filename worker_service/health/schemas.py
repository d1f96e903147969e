"""Marshmallow schemas of the /health payload."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..config import COMPONENTS
from ..vocabulary import Status

STATUS_WORDS = [status.value for status in Status]

# Each component's status word: one field per name in COMPONENTS, in that order.
ComponentsSchema = Schema.from_dict(
    {name: fields.String(required=True, validate=validate.OneOf(STATUS_WORDS)) for name in COMPONENTS},
    name="ComponentsSchema")
ComponentsSchema.__doc__ = "Each component's status word."


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
