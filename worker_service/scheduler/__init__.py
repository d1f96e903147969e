"""The APScheduler scheduler: jobs file, leader election, execution tracking."""

from __future__ import annotations

import atexit
import os

from flask import Flask

from ..alerts.component_checks import alert_component_checks

# Set in the gunicorn master: under gunicorn, post_fork runs the election,
# never create_app (which under --preload runs in the master).
from ..gunicorn.master import UNDER_GUNICORN
from .leadership import SchedulerLeadership


def init_app(app: Flask) -> None:
    """Outside gunicorn (``flask run``, tests), stand by for the scheduler when ``SCHEDULER_AUTOSTART`` is true."""
    if not app.config["SCHEDULER_AUTOSTART"] or os.environ.get(UNDER_GUNICORN):
        return
    owned = app.extensions["resources"]
    checks = alert_component_checks(owned.settings, owned.cache, owned.database)
    leadership = SchedulerLeadership(owned.settings, owned.store, owned.coordination.election,
                                     owned.coordination.lease, checks)
    leadership.stand_by()
    app.extensions["scheduler"] = leadership
    atexit.register(leadership.stop, True)
