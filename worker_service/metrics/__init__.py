"""GET /metrics: Prometheus text built from the shared store (same answer from every worker)."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from ..status.auth import token_required
from .collector import ServiceCollector

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
@token_required
def metrics() -> Response:
    """Prometheus exposition format; guarded by STATUS_TOKEN like /status."""
    body = generate_latest(current_app.extensions["metrics_registry"])
    return Response(body, status=200, headers={"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})


def init_app(app: Flask) -> None:
    """Register the collector in a registry of the app's own and the /metrics route."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServiceCollector(app))
    app.extensions["metrics_registry"] = registry
    app.register_blueprint(bp)
