"""SQLite: a real write and read on the database file."""

from __future__ import annotations

import sqlite3
import time

from ..check import ComponentCheck
from ..disk import disk_full
from ..errors import ServiceUnavailable


class SqliteCheck(ComponentCheck):
    """Write a row to ``health_probe`` and read it back in the same transaction, with a busy timeout.

    The read is inside the write's transaction: every worker of a host checks
    the same row, and a read after the commit could see another worker's
    write in between (at boot they all check at once).
    """

    backend = "sqlite"

    def __init__(self, path: str, timeout: float = 1.0) -> None:
        self._path = path
        self._timeout = timeout

    def check(self) -> None:
        try:
            connection = sqlite3.connect(self._path, timeout=self._timeout, isolation_level=None)
            try:
                connection.execute("CREATE TABLE IF NOT EXISTS health_probe (id INTEGER PRIMARY KEY, at REAL)")
                # IMMEDIATE: the write lock is taken first, through the busy timeout. A deferred transaction that
                # reads before it writes gets "database is locked" at once when another check writes meanwhile.
                connection.execute("BEGIN IMMEDIATE")
                try:
                    stamp = time.time()
                    connection.execute("INSERT OR REPLACE INTO health_probe (id, at) VALUES (1, ?)", (stamp,))
                    row = connection.execute("SELECT at FROM health_probe WHERE id = 1").fetchone()
                    connection.execute("COMMIT")
                except BaseException:
                    connection.rollback()
                    raise
            finally:
                connection.close()
        except sqlite3.Error as error:
            # A full disk often comes out as "disk I/O error" (the journal cannot be made): name the real cause.
            raise ServiceUnavailable(disk_full(self._path) or f"sqlite error: {error}") from None
        if row is None or row[0] != stamp:
            raise ServiceUnavailable("read back a different value than written")
