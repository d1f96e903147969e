"""What a job may use outside a request: the process's settings, cache, database and state store.

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
