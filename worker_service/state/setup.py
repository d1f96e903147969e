"""Create the state store from settings; check at start-up that it can work.

``STATE_DATABASE_URL`` set: the fleet's store in PostgreSQL (:mod:`.pg_store`),
shared by every host. Unset: the host's SQLite file in ``WORKER_STATE_DIR``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from ..config import fleet_mode
from .faults import StoreUnavailable, is_corrupt, reason_alone, reason_for
from .protocol import StateStore
from .recovery import SIDE_FILES
from .sqlite_store import SqliteStateStore

STATE_FILE = "worker-state.sqlite3"
CHECK_TIMEOUT = 2.0  # seconds, at least, for the start-up check's connection: once, not per request
_PROBE_BYTES = 4096  # one page: a full disk refuses it even when a new empty file still fits


def build_store(settings: Mapping[str, Any]) -> StateStore:
    """The store the settings ask for; never raises for a fault of the disk, file or database.

    SQLite: a store that cannot be opened now is opened again on its next use.
    PostgreSQL: nothing is connected here; the pool connects at first use, and
    each call raises :class:`StoreUnavailable` while the database cannot serve
    it. The schema is migrated at the start, before any worker runs, by
    :func:`check_state_database` (gunicorn's ``on_starting`` and every reload
    run ``worker-service check-config``); each store then checks its version
    at its first use (one read) and migrates it itself if needed (a schema
    dropped meanwhile, or a start without gunicorn).
    """
    if fleet_mode(settings):
        from .pg_store import PostgresStateStore  # psycopg only for the fleet

        return PostgresStateStore(settings["STATE_DATABASE_URL"], settings.get("STATE_DATABASE_SCHEMA", "worker_service"),
                                  settings["JOB_HISTORY_SIZE"], settings.get("STATE_DATABASE_TIMEOUT", 2.0))
    return SqliteStateStore(os.path.join(settings["WORKER_STATE_DIR"], STATE_FILE), settings["JOB_HISTORY_SIZE"])


Warn = Callable[[str], None]


def check_state_store(settings: Mapping[str, Any], at_start: Warn | None = None) -> str | None:
    """One line saying why the state store cannot work in ``WORKER_STATE_DIR``, or ``None``.

    For ``check-config`` and the start (exit 78), never for a running worker,
    which degrades instead. It really makes, syncs and removes a file in the
    directory (``os.access`` says yes to root even on ``/proc`` or a full
    disk), and opens the store file for writing. A corrupt store file is no
    problem here: the start moves it aside and rebuilds it. ``at_start``: see
    :func:`check_state_database`.
    """
    directory = settings["WORKER_STATE_DIR"]
    name = f"WORKER_STATE_DIR={directory!r}"
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as error:
        return f"configuration error: {name} cannot be created: {error.strerror}"
    problem = _probe_directory(directory)
    if problem:
        return f"configuration error: {name} is not usable: cannot write a file in it ({problem})"
    path = os.path.join(directory, STATE_FILE)
    problem = _probe_store_file(path)
    if problem:
        return f"configuration error: {name}: the state store {path} {problem}"
    disk = settings.get("STATUS_DISK_PATH")
    if disk and not os.path.exists(disk):  # at the start only: a path that goes away later is reported in /status
        return f"configuration error: STATUS_DISK_PATH={disk!r} does not exist"
    if fleet_mode(settings):
        return check_state_database(settings, at_start)
    return None


def check_state_database(settings: Mapping[str, Any], at_start: Warn | None = None) -> str | None:
    """One line saying why the fleet's state database cannot work, or ``None``: it connects, then migrates.

    Each step is bounded: ``STATE_DATABASE_TIMEOUT`` to connect, but never
    under :data:`CHECK_TIMEOUT` (a timeout tuned for a running service's
    calls, 0.5 s, failed a start on a loaded machine). The reason never holds
    the URL or its password.

    ``at_start`` (the service's own start, not ``check-config``): a database
    that cannot be reached *now* (refused, timed out, unknown host, a password
    being rotated) is no configuration error: a VM may boot before its
    database. It is passed to ``at_start`` as a warning and the start goes on;
    the host joins the fleet once the database answers. Only what can never
    work stops the start: a URL that cannot be parsed or has another scheme
    (refused by the settings already) and a schema newer than this code.
    """
    from .pg_schema import SchemaTooNew
    from .pg_store import PostgresStateStore

    timeout = max(float(settings.get("STATE_DATABASE_TIMEOUT", 2.0)), CHECK_TIMEOUT)
    store = build_store({**settings, "STATE_DATABASE_TIMEOUT": timeout})
    assert isinstance(store, PostgresStateStore)
    try:
        try:
            store.pool.run(lambda db: db.execute("SELECT 1").fetchone())
        except StoreUnavailable as error:
            return _unreachable(f"cannot connect: {reason_alone(error.reason)}", at_start)
        try:
            store.migrate()
        except SchemaTooNew as error:
            return f"configuration error: STATE_DATABASE_SCHEMA={store.schema!r}: {reason_alone(error.reason)}"
        except StoreUnavailable as error:
            return _unreachable(f"cannot create or migrate schema {store.schema!r}: {reason_alone(error.reason)}",
                                at_start)
    finally:
        store.close()
    return None


def _unreachable(reason: str, at_start: Warn | None) -> str | None:
    """The line for a state database that does not serve now: a problem for ``check-config``, a warning at start."""
    if at_start is None:
        return f"configuration error: STATE_DATABASE_URL: {reason}"
    at_start(f"warning: STATE_DATABASE_URL: {reason}; starting anyway: the scheduler is unavailable on this host "
             "until the state database answers, then the host joins the fleet by itself")
    return None


def _probe_directory(directory: str) -> str | None:
    probe = os.path.join(directory, f".write-probe-{os.getpid()}")
    try:
        descriptor = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(descriptor, b"\0" * _PROBE_BYTES)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
            with contextlib.suppress(OSError):
                os.unlink(probe)
    except OSError as error:
        return error.strerror or type(error).__name__
    return None


def _probe_store_file(path: str) -> str | None:
    """Whether the existing store file (and its -wal, -shm) can be written and read as a database."""
    for candidate in (path, *(path + suffix for suffix in SIDE_FILES)):
        try:
            os.close(os.open(candidate, os.O_RDWR | os.O_CLOEXEC))
        except FileNotFoundError:
            continue
        except OSError as error:
            return f"is not writable ({os.path.basename(candidate)}: {error.strerror})"
    if not os.path.exists(path):
        return None
    try:
        connection = sqlite3.connect(path, timeout=0.5)
        try:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        finally:
            connection.close()
    except sqlite3.Error as error:
        if is_corrupt(error):
            return None
        return f"cannot be opened ({reason_for(error, 0.5).removeprefix('state store: ')})"
    return None

