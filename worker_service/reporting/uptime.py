"""The service's uptime: since the gunicorn master started, the same from every worker.

Under gunicorn the master records its start in its environment, which every
worker inherits (a recycled worker does not reset it):

* ``WORKER_SERVICE_STARTED_MONOTONIC``: the master's ``time.monotonic()``.
  On Linux that clock (``CLOCK_MONOTONIC``) is system-wide, so a worker can
  subtract it from its own reading, and a wall-clock jump (NTP step, an
  operator's ``date -s``) never changes the uptime. Used when set.
* ``WORKER_SERVICE_STARTED_AT``: the master's wall-clock start (epoch
  seconds), for the ``started_at`` people read, and the fallback.

Alone (``flask run``, tests), it is this process's start.
"""

from __future__ import annotations

import os
import time

import psutil

from ..gunicorn.master import STARTED_AT, STARTED_MONOTONIC


def service_started_at() -> float:
    """Epoch seconds when the service started (the master's, under gunicorn)."""
    recorded = _float_env(STARTED_AT)
    return recorded if recorded is not None else psutil.Process().create_time()


def service_uptime() -> float:
    """Seconds since the service started: from the monotonic clock when the master recorded it, never negative."""
    started = _float_env(STARTED_MONOTONIC)
    if started is not None:
        return max(time.monotonic() - started, 0.0)
    return max(time.time() - service_started_at(), 0.0)


def _float_env(name: str) -> float | None:
    raw = os.environ.get(name)
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        return None
