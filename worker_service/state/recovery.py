"""Replace a state file that is corrupt or was deleted, once, whichever worker notices first.

Every worker of the host opens the same file, so two of them can notice the
same fault at the same moment. Each repair runs under an exclusive lock
on a side file (``<file>.recovery.lock``), and re-checks under it that the
file is still the one found broken (same inode): the second worker finds the
file already replaced and leaves it alone.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)
SIDE_FILES = ("-wal", "-shm")
SQLITE_HEADER = b"SQLite format 3\x00"
_POLL = 0.02


class RecoveryLockTimeout(Exception):
    """Another worker held the recovery lock for longer than the bound."""


_in_process = threading.Lock()  # threads of one process: a POSIX lock does not exclude them


@contextlib.contextmanager
def recovery_lock(path: str, timeout: float) -> Iterator[None]:
    """Hold the exclusive lock that serialises opening and repairing ``path`` across processes and threads.

    A POSIX record lock (``lockf``) on ``<path>.recovery.lock``, not ``flock``:
    a child a job forks while some thread holds it must not inherit it (an
    ``flock`` belongs to the open file description, which the child shares, so
    a child sleeping for a minute kept every other worker from opening the
    store: no new leader could start). A thread lock comes first, since POSIX
    locks do not exclude threads of one process, and closing any descriptor of
    the file would drop the process's lock.

    Raises :class:`RecoveryLockTimeout` after ``timeout`` seconds, and
    ``OSError`` when the lock file cannot be made (a read-only directory: then
    no worker can repair anything either).
    """
    deadline = time.monotonic() + timeout
    if not _in_process.acquire(timeout=max(timeout, 0.0)):
        raise RecoveryLockTimeout(f"another thread held {path}.recovery.lock for over {timeout:g} s")
    try:
        descriptor = os.open(path + ".recovery.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            while True:
                try:
                    fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as error:
                    if error.errno not in (errno.EACCES, errno.EAGAIN):
                        raise
                    if time.monotonic() >= deadline:
                        raise RecoveryLockTimeout(
                            f"another process held {path}.recovery.lock for over {timeout:g} s") from None
                    time.sleep(_POLL)
            yield
        finally:
            os.close(descriptor)  # the only descriptor of the file in this process: releases the lock
    finally:
        _in_process.release()


def identity(path: str) -> tuple[int, int] | None:
    """``(device, inode)`` of ``path``, or ``None`` if there is no such file (or it cannot be seen)."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def move_aside_corrupt(path: str, seen: tuple[int, int] | None, now: float | None = None) -> str | None:
    """Rename the corrupt ``path`` (and its -wal, -shm) to ``<path>.corrupt-<UTC timestamp>``.

    Call it holding :func:`recovery_lock`. ``seen`` is the identity of the file
    found corrupt; if ``path`` is no longer that file, another worker already
    moved it, and nothing is done. Returns the new path, or ``None``.
    """
    if seen is None or identity(path) != seen:
        return None
    stamp = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    target = f"{path}.corrupt-{stamp}"
    os.rename(path, target)
    for suffix in SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.rename(path + suffix, target + suffix)
    log.error("state store %s is corrupt: moved it aside to %s (kept for inspection) and rebuilt it empty; "
              "the job list comes back from the jobs file, past run statistics are lost", path, target)
    return target


def drop_orphan_side_files(path: str) -> None:
    """The main file is gone (deleted while running): remove its -wal and -shm before a new file is made.

    A new, empty database must never pick up the WAL of the deleted one.
    Call it holding :func:`recovery_lock`, and only when ``path`` is missing.
    """
    if identity(path) is not None:
        return
    dropped = []
    for suffix in SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)
            dropped.append(path + suffix)
    if dropped:
        log.error("state store %s was deleted while in use: creating it again (past run statistics are lost)", path)


def not_a_database(path: str) -> bool:
    """Whether ``path`` is a non-empty file without SQLite's header (what SQLite calls "not a database").

    Checked before SQLite opens the file: opening it may delete its -wal,
    which the operator should get to inspect.
    """
    try:
        with open(path, "rb") as file:
            head = file.read(len(SQLITE_HEADER))
    except OSError:
        return False
    return bool(head) and head != SQLITE_HEADER


def emptied_under_its_wal(path: str) -> bool:
    """Whether ``path`` is 0 bytes while its -wal or -shm exists: a file truncated under the workers.

    A live WAL database never has an empty main file (switching to WAL writes
    its first page), and SQLite would open this one as a new database and
    delete the WAL it finds, or report "database is locked" for ever to new
    connections while old ones hold it.
    """
    try:
        if os.path.getsize(path) != 0:
            return False
    except OSError:
        return False
    return any(os.path.exists(path + suffix) for suffix in SIDE_FILES)
