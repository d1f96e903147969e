"""GET /health/ready: may a load balancer send this worker traffic? (starting, ready, draining).

The state it answers from is :mod:`worker_service.readiness`'s; this module only serves it.

Under gunicorn each worker runs its first checks when it boots
(:mod:`worker_service.health_refresh`), so ``starting`` lasts only until they
end (a few milliseconds with healthy dependencies, one check timeout with a
hung one), not until the first probe came and its checks ended.

Plain ``GET /health`` keeps the seed's body and codes in every state: it
answers about the dependencies, and readiness is this endpoint's job. /health
runs its own checks when asked, so it is never "starting" (its first answer is
already the real one); and a 503 from it during each rolling restart would page
whoever watches it with Nagios or cron for a planned, harmless event. A load
balancer checks /health/ready; a monitor checks /health.
"""

from __future__ import annotations

from flask import Blueprint, Flask, current_app
from marshmallow import Schema, fields, validate

from common.helpers.health import Status, format_timestamp, utc_now

from .. import health_refresh, readiness
from ..web import json_response
from .report import build_health_report

bp = Blueprint("health_ready", __name__)

READINESS_WORDS = [readiness.STARTING, readiness.READY, readiness.DRAINING, Status.UNAVAILABLE.value]


class ReadinessSchema(Schema):
    """``GET /health/ready``: may a load balancer send this worker traffic?"""

    status = fields.String(required=True, validate=validate.OneOf(READINESS_WORDS))
    components = fields.Dict(keys=fields.String(), values=fields.String(),
                             metadata={"description": "each component's status word; absent while starting or draining"})
    timestamp = fields.String(required=True, metadata={"example": "2023-06-15T10:30:45.123456Z"})
    service = fields.String(required=True, metadata={"example": "worker-service"})


_schema = ReadinessSchema()


@bp.get("/health/ready")
def ready():
    """200 ``ready``; 503 ``starting`` (no check completed yet), ``draining`` (SIGTERM) or ``unavailable``."""
    state = readiness.current()
    now = state.state  # read once: SIGTERM may land while this request runs
    engine = current_app.extensions["health"]
    critical = current_app.config["HEALTH_CRITICAL_COMPONENTS"]
    body = {"status": now, "timestamp": format_timestamp(utc_now()), "service": current_app.config["SERVICE_NAME"]}
    if now == readiness.STARTING:
        if not health_refresh.running():  # under gunicorn the worker's first checks began at boot; else now
            state.warm_up(lambda: engine.run(critical))
        return json_response(_schema.dump(body), 503)
    if now == readiness.DRAINING:
        return json_response(_schema.dump(body), 503)
    report = build_health_report(engine, critical)
    if report.status is Status.UNAVAILABLE:
        body["status"] = Status.UNAVAILABLE.value
    body["components"] = report.components()
    return json_response(_schema.dump(body), report.status.http_status)


def init_app(app: Flask) -> None:
    """Register /health/ready (after the health engine: it answers from the same checks)."""
    app.register_blueprint(bp)
