"""The SQLite check when another worker writes the probe row at the same moment (all workers check one file).

Workers booting together ran their first checks at the same moment, and one read back the value another had
just written ("read back a different value than written"): the database was reported unavailable for a TTL.
The other worker's write is made to land exactly between this check's write and its read, on a real file.
"""

from __future__ import annotations

import sqlite3

import pytest

from common.helpers.health import Status
from common.helpers.health.checks import sqlite as sqlite_check

ORIGINAL_CONNECT = sqlite3.connect


@pytest.fixture
def another_worker_writes_before_each_read_back(monkeypatch):
    """Just before the check reads its row back, another connection (a worker) writes that row, if it may."""
    attempts: list[str] = []

    class Connection(sqlite3.Connection):
        def execute(self, sql, *args):
            if sql.startswith("SELECT at FROM health_probe"):
                other = ORIGINAL_CONNECT(self.path, timeout=0.05, isolation_level=None)
                try:
                    other.execute("INSERT OR REPLACE INTO health_probe (id, at) VALUES (1, -1.0)")
                    attempts.append("written")
                except sqlite3.OperationalError as error:  # the check holds the write lock: it waits its turn
                    attempts.append(str(error))
                finally:
                    other.close()
            return super().execute(sql, *args)

    def connect(path, *args, **kwargs):
        connection = ORIGINAL_CONNECT(path, *args, factory=Connection, **kwargs)
        connection.path = path
        return connection

    monkeypatch.setattr(sqlite_check.sqlite3, "connect", connect)
    return attempts


@pytest.mark.parametrize("wal", [True, False], ids=["wal", "rollback-journal"])
def test_a_write_of_another_worker_between_the_write_and_the_read_back_is_no_failure(
        tmp_path, another_worker_writes_before_each_read_back, wal):
    path = str(tmp_path / "worker-data.sqlite3")
    if wal:  # as worker_service.database creates it; a file not yet switched is in rollback-journal mode
        with ORIGINAL_CONNECT(path) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    check = sqlite_check.SqliteCheck(path, timeout=2.0)
    results = [check.run("database") for _ in range(3)]
    assert [(result.status, result.reason) for result in results] == [(Status.AVAILABLE, None)] * 3
    assert another_worker_writes_before_each_read_back == ["database is locked"] * 3  # it had to wait its turn
