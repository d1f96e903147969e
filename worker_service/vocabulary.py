"""The words of the service's payloads, each defined once: status words and job states.

Tiny and free of Flask and marshmallow on purpose: the ``worker-service check``
command imports it to map the words it reads to exit codes. The component
names are :data:`worker_service.config.COMPONENTS`; the status words are
:class:`common.helpers.health.status.Status`, re-exported here.
"""

from __future__ import annotations

import enum

from common.helpers.health.status import Status

__all__ = ["JobState", "Status"]


class JobState(enum.StrEnum):
    """A job's health, as :func:`worker_service.scheduler.job_health.judge` decides it."""

    HEALTHY = "healthy"
    PENDING = "pending"
    WARNING = "warning"
    UNHEALTHY = "unhealthy"
    PAUSED = "paused"
