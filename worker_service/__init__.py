"""worker-service: scheduled background jobs, run exactly once, with health and status endpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

__version__ = "0.1.0"


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the WSGI app from the environment, with ``config`` overriding it (tests).

    Raises :class:`worker_service.config.ConfigError` (one line, no secret)
    when a setting is invalid.
    """
    from . import cache, database, http, runtime
    from .config import load_settings
    from .logging_setup import configure_logging

    settings = load_settings(overrides=config)
    configure_logging(settings["LOG_LEVEL"])

    app = Flask(__name__)
    app.config.update(settings)
    app.json.sort_keys = False
    runtime.provide("settings", settings)

    from . import health, metrics, scheduler, status
    from .state import setup as state

    http.init_app(app)
    cache.init_app(app)
    database.init_app(app)
    state.init_app(app)
    scheduler.init_app(app)
    health.init_app(app)
    status.init_app(app)
    metrics.init_app(app)
    return app
