"""The SQLite check under concurrency: every worker of a host checks the same file, and at boot all at once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from common.helpers.health import Status
from common.helpers.health.checks.sqlite import SqliteCheck


def test_concurrent_checks_of_one_file_each_read_back_their_own_write(tmp_path):
    """Each check writes one row and reads it back; another check's write in between is not a failure.

    Several workers booting together ran their first checks at the same moment and one read another's value
    ("read back a different value than written"): the database was reported unavailable for a TTL.
    """
    path = str(tmp_path / "worker-data.sqlite3")
    check = SqliteCheck(path, timeout=5.0)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: check.run("database"), range(600)))
    failures = [result.reason for result in results if result.status is not Status.AVAILABLE]
    assert failures == []
