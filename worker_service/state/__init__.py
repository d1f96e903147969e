"""State shared by the workers: job stats, the published job list, the heartbeat (and, in fleet mode, the lease).

The PostgreSQL store and lease are imported on first use (``from worker_service.state import PostgresStateStore``
works): a host-local service never pays for importing psycopg.
"""

from typing import Any

from .faults import FencedOut, StoreUnavailable
from .protocol import StateReader, StateStore
from .records import JobRecord, RunRecord, SchedulerRecord
from .sqlite_store import SqliteStateStore

_LAZY = {"LeaseGrant": "pg_lease", "PostgresLease": "pg_lease", "PostgresStateStore": "pg_store"}

__all__ = [
    "FencedOut", "JobRecord", "LeaseGrant", "PostgresLease", "PostgresStateStore", "RunRecord", "SchedulerRecord",
    "SqliteStateStore", "StateReader", "StateStore", "StoreUnavailable",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
