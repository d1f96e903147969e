"""The words of the service's payloads, each defined once: status words, job states and scheduler states.

Tiny and free of Flask and marshmallow on purpose: the ``worker-service check``
command imports it to map the words it reads to exit codes. The component
names are :data:`worker_service.config.COMPONENTS`; the status words are
:class:`common.helpers.health.status.Status`, re-exported here.
"""

from __future__ import annotations

import enum

from common.helpers.health.status import Status

__all__ = ["RUNNING_STATES", "HostState", "JobState", "RunState", "SchedulerState", "Status"]


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


class HostState(enum.StrEnum):
    """An executing host's process, as /status, /metrics and ``worker-service status`` show it."""

    ACTIVE = "active"  # its row (one host: its heartbeat) is live and it takes runs
    STOPPING = "stopping"  # a stop or reload: it takes no more runs while its last ones finish
    EXPIRED = "expired"  # its row (heartbeat) ran out (it died, froze or was cut off), or its process was seen dead


class RunState(enum.StrEnum):
    """A run in flight, as /status shows it."""

    RUNNING = "running"  # a process holds it
    WAITING = "waiting"  # planned by the leader; no host claimed it yet
    STOPPING = "stopping"  # its process is stopping (a stop or reload) and lets it finish
