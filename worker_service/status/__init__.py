"""GET /status: the detailed view (as JSON, or the status page)."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Register /status, and prime the CPU samplers."""
    from .report import StatusReporter
    from .run_chart import RunChart
    from .views import bp

    reporter = StatusReporter(app)
    reporter.prime()
    app.extensions["status"] = reporter
    app.extensions["run_chart"] = RunChart(app.extensions["store"], app.config["STATUS_CACHE_TTL"])
    app.register_blueprint(bp)
