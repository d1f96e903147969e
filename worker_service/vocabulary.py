"""The words of the service's payloads, each defined once: status words, job states and scheduler states.

Tiny and free of Flask and marshmallow on purpose: the ``worker-service check``
command imports it to map the words it reads to exit codes. The component
names are :data:`worker_service.config.COMPONENTS`; the status words are
:class:`common.helpers.health.status.Status`, re-exported here.
"""

from __future__ import annotations

import enum

from common.helpers.health.status import Status

__all__ = ["RUNNING_STATES", "JobState", "SchedulerState", "Status"]


class JobState(enum.StrEnum):
    """A job's health, as :func:`worker_service.scheduler.job_health.judge` decides it."""

    HEALTHY = "healthy"
    PENDING = "pending"
    WARNING = "warning"
    UNHEALTHY = "unhealthy"
    PAUSED = "paused"


class SchedulerState(enum.StrEnum):
    """The scheduler's state: what the leader writes in its heartbeat, and what /status says of it."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"  # shutting down while running jobs finish
    REPLANNING = "replanning"  # re-planning the jobs after a wall-clock jump
    STOPPED = "stopped"
    UNKNOWN = "unknown"  # /status only: the state store could not be read

# The states in which the scheduler runs jobs (re-planning them after a clock jump); a heartbeat's bare word matches too.
RUNNING_STATES = frozenset({SchedulerState.RUNNING, SchedulerState.REPLANNING})
