"""Marshmallow schemas of the /health payload."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..config import COMPONENTS
from ..vocabulary import Status

STATUS_WORDS = [status.value for status in Status]

# Each component's status word: one field per name in COMPONENTS, in that order (absent only when ?exclude names it).
ComponentsSchema = Schema.from_dict(
    {name: fields.String(validate=validate.OneOf(STATUS_WORDS)) for name in COMPONENTS},
    name="ComponentsSchema")
ComponentsSchema.__doc__ = "Each component's status word."


class HealthSchema(Schema):
    """``GET /health``: the seed's body, statuses only."""

    status = fields.String(required=True, validate=validate.OneOf(STATUS_WORDS),
                           metadata={"description": "Worst of the critical components; degraded if only others fail."})
    components = fields.Nested(ComponentsSchema, required=True)
    timestamp = fields.String(required=True, metadata={"example": "2023-06-15T10:30:45.123456Z"})
    service = fields.String(required=True, metadata={"example": "worker-service"})


class ComponentHealthSchema(Schema):
    """``GET /health/<component>``: one component's status word, for a check per dependency."""

    status = fields.String(required=True, validate=validate.OneOf(STATUS_WORDS))
    component = fields.String(required=True, validate=validate.OneOf(list(COMPONENTS)))
    timestamp = fields.String(required=True, metadata={"example": "2023-06-15T10:30:45.123456Z"})
    service = fields.String(required=True, metadata={"example": "worker-service"})


DRAFT_WORDS = ["pass", "warn", "fail"]


class CheckDetailSchema(Schema):
    """One health+json check (draft-inadarei-api-health-check-06, section 4)."""

    componentId = fields.String(required=True)  # noqa: N815 - the draft's key
    componentType = fields.String(required=True, validate=validate.OneOf(["datastore", "component", "system"]))  # noqa: N815
    observedValue = fields.Float(metadata={"description": "the check's latency"})  # noqa: N815
    observedUnit = fields.String(validate=validate.OneOf(["ms"]))  # noqa: N815
    status = fields.String(required=True, validate=validate.OneOf(DRAFT_WORDS))
    time = fields.String(required=True, metadata={"description": "when the check ended (a reused result keeps it)"})
    backend = fields.String(metadata={"description": "an additional key: what the component runs on"})
    output = fields.String(metadata={"description": "the redacted reason; only with details allowed, never on pass"})


class HealthJsonSchema(Schema):
    """``GET /health`` with ``Accept: application/health+json``."""

    status = fields.String(required=True, validate=validate.OneOf(DRAFT_WORDS),
                           metadata={"description": "pass (200), warn (200) or fail (503)"})
    version = fields.String(required=True)
    serviceId = fields.String(required=True)  # noqa: N815 - the draft's key
    description = fields.String(required=True)
    output = fields.String(metadata={"description": "the failing components' reasons; only with details allowed"})
    checks = fields.Dict(keys=fields.String(), values=fields.List(fields.Nested(CheckDetailSchema)), required=True,
                         metadata={"description": "keyed <component>:responseTime"})


class LivenessSchema(Schema):
    """``GET /health/live``: the process answers; no dependency is touched."""

    status = fields.String(required=True, validate=validate.OneOf(["alive"]))
    timestamp = fields.String(required=True)
    service = fields.String(required=True)


class ErrorSchema(Schema):
    """Any error answer."""

    error = fields.String(required=True)
    message = fields.String(required=True)
