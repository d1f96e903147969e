"""Job control: list jobs, read one's history, and run, pause or resume it through the leader.

* :mod:`.views`: the endpoints (reads need the status token, commands the admin token: :mod:`..access`);
* :mod:`.reads`: the job list and a job's detail, read from the shared store;
* :mod:`.listing`: a page of the jobs, filtered, problems first, with their newest runs (the status page's);
* :mod:`.submission`: a command queued for the leader, and the bounded wait for its outcome;
* :mod:`.requester`: who asked (whether a scheduler leads: :mod:`worker_service.health.leader_status`);
* :mod:`.payloads`, :mod:`.schemas`: the JSON and its schemas; :mod:`.openapi`: the document's paths;
* :mod:`.health_entry`: a job's health entry, which /status shows too (the status package builds on this one);

The leader applies the commands (:mod:`worker_service.scheduler.commands`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask


def init_app(app: Flask) -> None:
    """Register the job-control endpoints on the app's store and settings."""
    from .reads import JobReports
    from .submission import JobControl
    from .views import bp

    store = app.extensions["store"]
    app.extensions["job_reports"] = JobReports(store, app.config, app.extensions["resources"].coordination.is_fleet)
    app.extensions["job_control"] = JobControl(store, app.config)
    app.register_blueprint(bp)
