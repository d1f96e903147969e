"""One SQLite file shared by every worker: per-thread connections that survive faults of the file.

* Connections are per thread and per process (a connection must not cross a
  fork), and each call checks that the file is still the one it opened (its
  inode): a file deleted or replaced under the workers is opened again.
* A read waits at most ``READ_BUSY_TIMEOUT`` on a lock, a write
  ``WRITE_BUSY_TIMEOUT``; (re)opening waits at most ``OPEN_TIMEOUT`` for
  another worker opening or repairing the file. So no call blocks for long.
* A corrupt file ("file is not a database", "malformed") is moved aside and
  rebuilt empty, once, under the recovery lock (see :mod:`.recovery`).
* Every fault comes out as :class:`StoreUnavailable` with a short reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

from .faults import (
    SQLITE_FULL,
    SQLITE_PERM,
    SQLITE_READONLY,
    StoreUnavailable,
    is_corrupt,
    primary_code,
    reason_for,
)
from .recovery import (
    RecoveryLockTimeout,
    drop_orphan_side_files,
    emptied_under_its_wal,
    identity,
    move_aside_corrupt,
    not_a_database,
    recovery_lock,
)
from .sqlite_wal import connect_wal

log = logging.getLogger(__name__)
T = TypeVar("T")

# Per file, the pid that has opened it: its header is read only before that (see _connect). Module-wide,
# since POSIX locks belong to the process, whichever SqliteFile of it holds them.
_OPENED_BY: dict[str, int] = {}
READ_BUSY_TIMEOUT = 0.5  # seconds a read waits on a lock: /status and /health stay within their bounds
WRITE_BUSY_TIMEOUT = 2.0  # seconds a write waits on a lock (only the leader writes, in short transactions)
OPEN_TIMEOUT = 2.0  # seconds a (re)opening waits for another worker opening or repairing the file


class SqliteFile:
    """The connections of this process to one SQLite file, made or brought up to date by ``prepare`` at each opening."""

    def __init__(self, path: str, prepare: Callable[[sqlite3.Connection], None]) -> None:
        self.path = path
        self.prepare = prepare  # makes a new file, migrates an older one (see sqlite_migrations)
        self.replacements = 0  # times this process found the file replaced (deleted, rebuilt): republish then
        self._local = threading.local()
        self._latest: tuple[int, int] | None = None  # the file this process opened last

    def connection(self) -> sqlite3.Connection:
        """This thread's connection to the file as it is now; raises :class:`StoreUnavailable`."""
        local = self._local
        connection = getattr(local, "connection", None)
        if connection is not None and local.pid != os.getpid():
            connection = local.connection = None  # inherited across a fork: never touch it, just drop it
        replaced = connection is not None and identity(self.path) != local.identity
        if replaced:
            self.forget()
            connection = None
        if connection is None:
            connection, local.identity = self._open()
            local.connection, local.pid = connection, os.getpid()
            if replaced and local.identity != self._latest:  # once per new file, not once per thread
                self.replacements += 1
                log.warning("state store %s was deleted or replaced while in use: opened the new file", self.path)
            self._latest = local.identity
        return connection

    def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """``query(connection)``, waiting at most ``READ_BUSY_TIMEOUT`` on a lock.

        A file found corrupt is rebuilt and the (idempotent) read runs once more
        on the new file; any other fault raises :class:`StoreUnavailable`.
        """
        for attempt in (1, 2):
            connection = self.connection()
            try:
                connection.execute(f"PRAGMA busy_timeout={int(READ_BUSY_TIMEOUT * 1000)}")
                return query(connection)
            except sqlite3.Error as error:
                fault = self.fault(error, READ_BUSY_TIMEOUT)
                if attempt == 2 or not is_corrupt(error):
                    raise fault from None
        raise AssertionError("unreachable")

    def fault(self, error: BaseException, busy_timeout: float) -> StoreUnavailable:
        """``error`` of this thread's connection as :class:`StoreUnavailable`, after repairing what can be.

        The connection is dropped, so the next call opens the file afresh; a
        corrupt file is moved aside (once, under the recovery lock).
        """
        seen = getattr(self._local, "identity", None)
        self.forget()
        if is_corrupt(error):
            try:
                with recovery_lock(self.path, OPEN_TIMEOUT):
                    move_aside_corrupt(self.path, seen)
            except (OSError, RecoveryLockTimeout) as repair_error:
                log.error("state store %s is corrupt and could not be moved aside: %s", self.path, repair_error)
        return StoreUnavailable(reason_for(error, busy_timeout, self.path))

    def forget(self) -> None:
        """Close and drop this thread's connection."""
        connection = getattr(self._local, "connection", None)
        if connection is not None and self._local.pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                connection.close()
        self._local.connection = None

    # -- opening --------------------------------------------------------------
    def _open(self) -> tuple[sqlite3.Connection, tuple[int, int] | None]:
        """A new connection, under the recovery lock so two workers never both repair the file.

        Where the lock file cannot be made (a read-only directory) the file is
        opened without it, and nothing is repaired.
        """
        with contextlib.suppress(OSError):  # if it cannot be made, opening says why
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(recovery_lock(self.path, OPEN_TIMEOUT))
                repair = True
            except RecoveryLockTimeout as error:
                raise StoreUnavailable(f"state store: {error}") from None
            except OSError:
                repair = False
            return self._connect(repair)
        raise AssertionError("unreachable")  # ExitStack never swallows the exception

    def _connect(self, repair: bool) -> tuple[sqlite3.Connection, tuple[int, int] | None]:
        for attempt in (1, 2):
            try:
                seen = identity(self.path)
                if repair:
                    drop_orphan_side_files(self.path)  # a new file must never pick up a deleted one's WAL
                    # Reading the header opens and closes the file, and closing any descriptor of a
                    # file drops every POSIX lock this process holds on it: SQLite's own, of the
                    # connections other threads have open. Another process could then take this
                    # process's connections for gone and checkpoint or reset the WAL under them
                    # (seen: SQLITE_IOERR_SHORT_READ in the leader while new workers started). So
                    # the header is only read before this process has opened the file at all;
                    # later, a corrupt file is found by SQLite's own errors (see fault()).
                    first = _OPENED_BY.get(os.path.abspath(self.path)) != os.getpid()
                    if (first and not_a_database(self.path)) or emptied_under_its_wal(self.path):
                        move_aside_corrupt(self.path, seen)
                        seen = None
                try:
                    connection = self._connect_once()
                    _OPENED_BY[os.path.abspath(self.path)] = os.getpid()
                    return connection, identity(self.path)
                except sqlite3.Error as error:
                    if not (repair and attempt == 1 and is_corrupt(error) and move_aside_corrupt(self.path, seen)):
                        raise
            except (sqlite3.Error, OSError) as error:
                raise StoreUnavailable(reason_for(error, READ_BUSY_TIMEOUT, self.path)) from None
        raise AssertionError("unreachable")

    def _connect_once(self) -> sqlite3.Connection:
        connection = connect_wal(self.path, READ_BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        try:
            self.prepare(connection)
        except sqlite3.Error as error:
            if primary_code(error) not in (SQLITE_READONLY, SQLITE_FULL, SQLITE_PERM):
                connection.close()
                raise
            # Full or not writable: reads may still work, and each write says why it fails.
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            log.debug("state store schema not applied: %s", error)
        return connection


class WriteTransaction:
    """``with file_transaction as db``: one IMMEDIATE transaction; ``.raw`` is the bare connection.

    A SQLite error inside the transaction, or at its commit, is rolled back and
    raised as :class:`StoreUnavailable`; the transaction waits at most
    ``WRITE_BUSY_TIMEOUT`` for the write lock.
    """

    def __init__(self, file: SqliteFile) -> None:
        self.raw = file.connection()
        self._file = file

    def __enter__(self) -> sqlite3.Connection:
        try:
            self.raw.execute(f"PRAGMA busy_timeout={int(WRITE_BUSY_TIMEOUT * 1000)}")
            self.raw.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            raise self._file.fault(error, WRITE_BUSY_TIMEOUT) from None
        return self.raw

    def __exit__(self, kind: object, value: BaseException | None, traceback: object) -> None:
        if kind is None:
            try:
                self.raw.execute("COMMIT")
                return
            except sqlite3.Error as error:
                value = error
        if self.raw.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.raw.execute("ROLLBACK")
        if isinstance(value, sqlite3.Error):
            raise self._file.fault(value, WRITE_BUSY_TIMEOUT) from None
