"""State shared by every worker on the host: job stats, the published job list, the heartbeat."""

from .faults import StoreUnavailable
from .protocol import StateReader, StateStore
from .records import JobRecord, RunRecord, SchedulerRecord
from .sqlite_store import SqliteStateStore

__all__ = [
    "JobRecord", "RunRecord", "SchedulerRecord", "SqliteStateStore", "StateReader", "StateStore", "StoreUnavailable",
]
