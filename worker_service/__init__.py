"""worker-service: scheduled background jobs, run exactly once, with health and status endpoints."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .version import __version__

if TYPE_CHECKING:  # Flask is imported by create_app: the CLI's `check` imports this package and needs no Flask
    from flask import Flask

__all__ = ["__version__", "create_app"]


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the WSGI app on the process's resources: from the environment, with ``config`` overriding it (tests).

    Under gunicorn the resources are the ones ``post_fork`` built in this
    worker, so the app and the scheduler share one store (see
    :mod:`worker_service.resources`). Raises
    :class:`worker_service.config.ConfigError` (one line, no secret) when a
    setting is invalid.
    """
    from flask import Flask

    from . import access, resources, web

    owned = resources.for_app(config)

    app = Flask(__name__)
    app.config.update(owned.settings)
    app.json.sort_keys = False

    from . import control, health, metrics, openapi, scheduler, status
    from .health import ready as health_ready

    web.init_app(app)
    access.init_app(app)
    resources.init_app(app, owned)
    scheduler.init_app(app)
    health.init_app(app)
    health_ready.init_app(app)  # /health/ready: starting, ready, draining
    status.init_app(app)
    metrics.init_app(app)
    control.init_app(app)  # /jobs: list, history; run, pause, resume through the leader
    openapi.init_app(app)  # /openapi.json: every payload above, in one document
    return app
