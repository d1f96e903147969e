"""Create the state store from settings and attach it to the app."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask

from .sqlite_store import SqliteStateStore

STATE_FILE = "worker-state.sqlite3"


def build_store(settings: dict[str, Any]) -> SqliteStateStore:
    """The SQLite store in ``WORKER_STATE_DIR``."""
    return SqliteStateStore(os.path.join(settings["WORKER_STATE_DIR"], STATE_FILE), settings["JOB_HISTORY_SIZE"])


def init_app(app: Flask) -> None:
    """Attach the shared state store as ``app.extensions['store']``."""
    from .. import runtime

    app.extensions["store"] = runtime.provide("store", build_store(app.config))
