"""The alert webhook's payload as the OpenAPI document's ``webhooks`` section describes it (README, Alerts).

It mirrors :func:`worker_service.alerts.payload.build`;
tests/test_openapi_contract.py checks a real payload against it.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

SIGNATURE_DESCRIPTION = (
    "With ALERT_WEBHOOK_SECRET set: `sha256=` followed by the hex HMAC-SHA256 of the raw request body, keyed with the "
    "secret (as GitHub's X-Hub-Signature-256). Compute it over the bytes received, before parsing, and compare in "
    "constant time.")


class AlertPayloadSchema(Schema):
    version = fields.String(required=True, metadata={"description": "of this payload's layout", "example": "1"})
    id = fields.String(required=True, metadata={"description": "this notification; the same on every retry of it: "
                                                               "dedupe on it"})
    status = fields.String(required=True, validate=validate.OneOf(["firing", "resolved"]))
    kind = fields.String(required=True, validate=validate.OneOf(["job", "component", "scheduler", "store", "metric",
                                                                 "test"]))
    subject = fields.String(required=True, metadata={"description": "the job id, the component's name, `disk`, "
                                                                    "`memory`, `state store`"})
    state = fields.String(required=True, metadata={"description": "the subject's state now (a job's: unhealthy, "
                                                                  "warning, healthy, paused, pending)"})
    previous_state = fields.String(required=True, allow_none=True)
    reason = fields.String(required=True, allow_none=True, metadata={"description": "redacted"})
    dedup_key = fields.String(required=True, metadata={"description": "stable for the subject (as PagerDuty's "
                                                                      "incident_key): `<service>/<kind>:<subject>`"})
    service = fields.String(required=True, metadata={"description": "SERVICE_NAME"})
    host = fields.String(required=True, metadata={"description": "the leader's host that saw the change"})
    at = fields.String(required=True, metadata={"description": "when the change was seen (ISO 8601, UTC)"})
    since = fields.String(required=True, metadata={"description": "since when it fires (a repeat keeps the first)"})
    url = fields.String(required=True, metadata={"description": "the status page's link to the subject "
                                                                "(ALERT_PUBLIC_URL + /status#job=<id>: the status page, filtered to the job)"})
    repeat = fields.Boolean(required=True, metadata={"description": "a reminder of a firing alert (ALERT_REPEAT)"})
    rule = fields.String(validate=validate.OneOf(["disk", "memory", "duration", "error_rate", "crashes"]),
                         metadata={"description": "kind metric only: which rule"})
    test = fields.Boolean(metadata={"description": "sent by `worker-service alerts test`"})


def describe_alert_webhook(spec: Any) -> dict[str, Any]:
    """Add the payload's schema to ``spec`` (an ``APISpec``); return the ``webhooks`` section (apispec has no API for it)."""
    spec.components.schema("AlertPayload", schema=AlertPayloadSchema)
    return {"alert": {"post": {
        "summary": "A change of alert state: POSTed to each ALERT_WEBHOOK_URLS",
        "description": "One POST per change of state and URL, retried with exponential backoff and jitter for "
                       "ALERT_RETRY_FOR seconds (default 1,200) while the receiver fails or answers 408, 429 or 5xx;"
                       " another 4xx ends it. Answer 2xx once it is stored.",
        "parameters": [
            {"name": "X-Worker-Service-Signature-256", "in": "header", "required": False,
             "schema": {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"}, "description": SIGNATURE_DESCRIPTION},
            {"name": "X-Worker-Service-Delivery", "in": "header", "required": True, "schema": {"type": "string"},
             "description": "the payload's id"},
            {"name": "X-Worker-Service-Event", "in": "header", "required": True,
             "schema": {"type": "string", "enum": ["alert"]}},
        ],
        "requestBody": {"required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/AlertPayload"}}}},
        "responses": {"200": {"description": "accepted (any 2xx)"},
                      "410": {"description": "refused for good (any 4xx but 408 and 429): not retried"},
                      "503": {"description": "failed for now (408, 429, 5xx, no answer): retried"}},
    }}}
