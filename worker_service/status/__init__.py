"""GET /status: the detailed view, and the OpenAPI document of every payload."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register /status and /openapi.json, and prime the CPU samplers."""
    from .openapi import build_openapi
    from .report import StatusReporter
    from .run_chart import RunChart
    from .views import bp

    reporter = StatusReporter(app)
    reporter.prime()
    app.extensions["status"] = reporter
    app.extensions["run_chart"] = RunChart(app.extensions["store"], app.config["STATUS_CACHE_TTL"])
    app.register_blueprint(bp)
    app.extensions["openapi"] = build_openapi(app)
