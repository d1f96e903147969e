"""GET /metrics: Prometheus text built from the shared store (same answer from every worker)."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST

from ..access import token_required
from .collector import MetricsExporter

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@token_required
def metrics() -> Response:
    """Prometheus exposition format; guarded by STATUS_TOKEN like /status."""
    body = current_app.extensions["metrics"].text()
    return Response(body, status=200, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})


def init_app(app: Flask) -> None:
    """Attach the exporter and register the /metrics route."""
    app.extensions["metrics"] = MetricsExporter(app)
    app.register_blueprint(bp)
