"""The APScheduler scheduler: jobs file, leader election, execution tracking."""

from __future__ import annotations

import atexit
import os

from flask import Flask

# Set in the gunicorn master: under gunicorn, post_fork runs the election,
# never create_app (which under --preload runs in the master).
from ..gunicorn.master import UNDER_GUNICORN
from .leadership import SchedulerLeadership


def init_app(app: Flask) -> None:
    """Outside gunicorn (``flask run``, tests), stand by for the scheduler when ``SCHEDULER_AUTOSTART`` is true."""
    if not app.config["SCHEDULER_AUTOSTART"] or os.environ.get(UNDER_GUNICORN):
        return
    owned = app.extensions["resources"]
    leadership = SchedulerLeadership(owned.settings, owned.store, owned.election, owned.lease)
    leadership.stand_by()
    app.extensions["scheduler"] = leadership
    atexit.register(leadership.stop, True)
