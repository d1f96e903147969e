"""What a job may use outside a request: the process's settings, cache, database, state store and fencing token.

A thin view of :func:`worker_service.resources.current`, so a job module
needs no Flask app context and no knowledge of how the resources are built.
"""

from __future__ import annotations

from typing import Any

from . import resources
from .cache import Cache
from .database import Database
from .state import StateStore


def settings() -> dict[str, Any]:
    """The validated settings."""
    return resources.current().settings


def cache() -> Cache:
    """The cache."""
    return resources.current().cache


def database() -> Database:
    """The database."""
    return resources.current().database


def store() -> StateStore:
    """The shared state store."""
    return resources.current().store


def fencing_token() -> int | None:
    """The lease epoch this process leads the fleet with; ``None`` on a single host or when it does not lead.

    A job whose writes must not land once another host leads passes it to
    the resource it writes, which refuses it once a newer epoch holds the
    lease (README, "Several hosts"). In a fleet, ``None`` means this process
    does not lead: such a job must not write at all. Called from a run a host
    of the fleet claimed (any host runs it, :mod:`.scheduler.host_runner`), it
    is the run's own token: the epoch at its claim, which the fence checks
    together with the claim (:func:`worker_service.fencing.fence`).
    """
    from .scheduler.tracking import current_run

    run = current_run()
    if run is not None and run.claim_session is not None:
        return run.claim_epoch
    return resources.current().coordination.lease.fencing_token
