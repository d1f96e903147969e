"""GET /health/ready: may a load balancer send this worker traffic? (starting, ready, draining)."""

from __future__ import annotations

from flask import Blueprint, Flask, current_app

from common.helpers.health import Status, format_timestamp, utc_now

from .. import readiness
from ..web import json_response
from .report import build_health_report

bp = Blueprint("health_ready", __name__)


@bp.get("/health/ready")
def ready():
    """200 ``ready``; 503 ``starting`` (no check completed yet), ``draining`` (SIGTERM) or ``unavailable``."""
    state = readiness.current()
    engine = current_app.extensions["health"]
    critical = current_app.config["HEALTH_CRITICAL_COMPONENTS"]
    body = {"status": state.state, "timestamp": format_timestamp(utc_now()), "service": current_app.config["SERVICE_NAME"]}
    if state.state == readiness.STARTING:
        state.warm_up(lambda: engine.run(critical))
        return json_response(body, 503)
    if state.state == readiness.DRAINING:
        return json_response(body, 503)
    report = build_health_report(engine, critical)
    if report.status is Status.UNAVAILABLE:
        body["status"] = Status.UNAVAILABLE.value
    body["components"] = report.components()
    return json_response(body, report.status.http_status)


def init_app(app: Flask) -> None:
    """Register /health/ready (after the health engine: it answers from the same checks)."""
    app.register_blueprint(bp)
