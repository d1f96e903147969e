"""The health blueprint: GET/HEAD /health and GET /health/live."""

from __future__ import annotations

from flask import Blueprint, current_app

from common.helpers.health import format_timestamp, utc_now

from ..web import json_response
from .schemas import LivenessSchema

bp = Blueprint("health", __name__)
_liveness_schema = LivenessSchema()


@bp.get("/health")
def health():
    """Component availability: 200 when available or degraded, 503 when unavailable. HEAD gives no body."""
    status, body = current_app.extensions["health_bodies"].current()
    return json_response(body, status.http_status)


@bp.get("/health/live")
def live():
    """Liveness only: touches no dependency, so a Redis outage never restarts every pod."""
    body = {"status": "alive", "timestamp": format_timestamp(utc_now()), "service": current_app.config["SERVICE_NAME"]}
    return json_response(_liveness_schema.dump(body), 200)
