"""Open SQLite files in WAL mode safely when several workers open them at the same moment."""

from __future__ import annotations

import sqlite3
import time

_RETRY_PAUSE = 0.05


def connect_wal(path: str, timeout: float = 5.0, **kwargs: object) -> sqlite3.Connection:
    """A connection to ``path`` with WAL journaling and a busy timeout of ``timeout`` seconds.

    Switching to WAL needs a moment of exclusive access, and SQLite reports
    "database is locked" at once, without its busy handler, when another
    process holds the file then; WAL is persistent, so only the first opening
    of a new file ever switches. It retries until ``timeout`` has passed in
    all (never ``attempts × timeout``: a file that stays locked, such as one
    truncated under running workers, fails within about ``2 × timeout``), then
    raises the ``sqlite3.OperationalError``.
    """
    deadline = time.monotonic() + timeout
    connection = sqlite3.connect(path, timeout=timeout, **kwargs)
    try:
        connection.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        while True:
            try:
                if connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    connection.execute("PRAGMA journal_mode=WAL")
                break
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() + _RETRY_PAUSE >= deadline:
                    raise
                time.sleep(_RETRY_PAUSE)
        connection.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        connection.close()
        raise
    return connection
