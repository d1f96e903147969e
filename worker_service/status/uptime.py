"""The service's start time: the gunicorn master's, shared by every worker."""

from __future__ import annotations

import os

import psutil

from ..scheduler.gunicorn_hooks import STARTED_AT


def service_started_at() -> float:
    """Epoch seconds when the service started.

    Under gunicorn the master records it in its environment in
    ``on_starting``; workers inherit it, so it is the same from every worker
    and a recycled worker does not reset it. Alone, it is this process's start.
    """
    recorded = os.environ.get(STARTED_AT)
    if recorded:
        try:
            return float(recorded)
        except ValueError:
            pass
    return psutil.Process().create_time()
