"""Open SQLite files in WAL mode safely when several workers open them at the same moment."""

from __future__ import annotations

import sqlite3
import time

_ATTEMPTS = 50


def connect_wal(path: str, timeout: float = 5.0, **kwargs: object) -> sqlite3.Connection:
    """A connection to ``path`` with WAL journaling and a busy timeout.

    Switching to WAL needs a moment of exclusive access, and SQLite reports
    "database is locked" at once, without its busy handler, when another
    process holds the file then; WAL is persistent, so only the first opening
    of a new file ever switches, and it retries for a few seconds.
    """
    connection = sqlite3.connect(path, timeout=timeout, **kwargs)
    connection.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    for attempt in range(_ATTEMPTS):
        try:
            if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                connection.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == _ATTEMPTS - 1:
                connection.close()
                raise
            time.sleep(0.1)
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection
