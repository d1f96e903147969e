"""Health: the check engine wired to this service's components, and its blueprint."""

from __future__ import annotations

from flask import Flask

from common.helpers.health import HealthEngine

from .. import health_refresh as refresh
from ..version import __version__
from .health_json import HealthJsonBodies
from .report import HealthBodies
from .scheduler_check import SchedulerCheck


def init_app(app: Flask) -> None:
    """Register the cache, database and scheduler checks and the /health routes."""
    from .views import bp

    engine = HealthEngine(timeout=app.config["HEALTH_CHECK_TIMEOUT"], cache_ttl=app.config["HEALTH_CACHE_TTL"])
    engine.register("cache", app.extensions["cache"].health_check())
    engine.register("database", app.extensions["database"].health_check())
    engine.register("scheduler", SchedulerCheck(app.extensions["store"], app.config))
    app.extensions["health"] = engine
    refresh.install(engine)  # refreshed on a timer once a worker boots (gunicorn's post_worker_init)
    app.extensions["health_bodies"] = HealthBodies(engine, app.config["HEALTH_CRITICAL_COMPONENTS"],
                                                   app.config["SERVICE_NAME"])
    app.extensions["health_json_bodies"] = HealthJsonBodies(app.config["SERVICE_NAME"], __version__)
    app.register_blueprint(bp)
