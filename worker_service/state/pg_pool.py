"""The state store's connections to PostgreSQL: a small pool per process, every call bounded, every fault named.

* One psycopg_pool ``ConnectionPool`` per process (min 1, max 4), opened at
  first use. A pool built before a fork (gunicorn ``--preload``) is never
  used in the child: the child builds its own. Right after the fork, each
  inherited connection's descriptor is pointed at ``/dev/null`` in the child,
  so that closing or collecting it there (a worker's exit) never sends a
  Terminate message on a socket the parent still uses.
* Connections are autocommit with ``prepare_threshold=None`` (a transaction
  pooler has no prepared statements), TCP keepalives and a connect timeout.
* Every call is bounded by ``timeout`` even against a server or proxy that
  accepts and never answers: libpq has no read timeout, and a server-side
  ``statement_timeout`` never fires when the query never reaches the server.
  So a watchdog thread shuts the connection's socket down at the deadline; the
  blocked wait returns with an error and the broken connection is discarded.
* A pooled connection that has input pending while idle (the server or a
  proxy closed it) is dropped before use, without a round trip.
* Every driver error comes out as :class:`StoreUnavailable` with a short
  reason ("state database: connection refused (127.0.0.1:5999)"), never the
  URL or a password.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import re
import select
import socket
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import TransactionStatus
from psycopg_pool import ConnectionPool, PoolTimeout

from .faults import StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

PREFIX = "state database: "
POOL_NAME = "worker-service-state"  # every pool of the state store (the lease's too): its log lines name it
_SLICE = 0.1  # seconds between looks at the last connect failure while waiting for a pooled connection
_INHERITED: list[Any] = []  # pools built before a fork: never collected in the child (see the module docstring)
_POOLS: weakref.WeakSet[StatePool] = weakref.WeakSet()


@dataclass(frozen=True)
class _ConnectFailure:
    at: float  # monotonic
    reason: str


class StatePool:
    """This process's pooled connections to the state database; :meth:`run` is the one way to use them."""

    def __init__(self, url: str, timeout: float, *, min_size: int = 1, max_size: int = 4,
                 application_name: str = "worker-service-state") -> None:
        self.url = url
        self.timeout = timeout
        self.min_size, self.max_size = min_size, max_size
        self.target = _target(url)
        self._kwargs = {
            "autocommit": True, "prepare_threshold": None, "application_name": application_name,
            "connect_timeout": max(2, int(timeout + 0.999)),  # libpq counts whole seconds, 2 at least
            "keepalives": 1, "keepalives_idle": 5, "keepalives_interval": 2, "keepalives_count": 3,
        }
        self._pool: ConnectionPool | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._failure: _ConnectFailure | None = None
        self._connections: weakref.WeakSet[psycopg.Connection] = weakref.WeakSet()
        _POOLS.add(self)

    # -- the one entry point -------------------------------------------------------------------------------
    def run(self, work: Callable[[psycopg.Connection], T], timeout: float | None = None) -> T:
        """Run ``work`` on a pooled connection within ``timeout`` (the pool's by default); raise StoreUnavailable."""
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget
        pool, connection = self._checkout(deadline, budget)
        armed = _watchdog().arm(connection, deadline)
        broken = False
        try:
            return work(connection)
        except StoreUnavailable:
            raise
        except psycopg.Error as error:
            broken = True
            fired = armed.disarm()
            reason = f"timed out after {budget:g} s" if fired else describe(error, self.target)
            raise StoreUnavailable(PREFIX + reason) from None
        except BaseException:
            broken = True
            raise
        finally:
            broken = armed.disarm() or broken
            self._checkin(pool, connection, broken)

    # -- lifecycle -----------------------------------------------------------------------------------------
    def close(self) -> None:
        """Close this process's connections; a later :meth:`run` opens the pool again."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.close(timeout=1.0)

    def _forget_inherited(self) -> None:
        """In a forked child: never use the parent's pool or connections; build a new pool at first use."""
        for connection in list(self._connections):
            _detach(connection)
        self._connections = weakref.WeakSet()
        if self._pool is not None:
            _INHERITED.append(self._pool)  # its worker threads are gone: never run its finalizer
        self._pool, self._failure = None, None
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def _current(self) -> ConnectionPool:
        if self._pid != os.getpid():  # a fork the at-fork hook did not see
            self._forget_inherited()
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(
                    self.url, connection_class=_recording_class(self), kwargs=self._kwargs, min_size=self.min_size,
                    max_size=self.max_size, open=False, name=POOL_NAME, timeout=self.timeout,
                    reconnect_timeout=max(5.0, 2 * self.timeout), max_idle=300.0,
                )
                self._pool.open(wait=False)
            return self._pool

    # -- checkout and checkin ------------------------------------------------------------------------------
    def _checkout(self, deadline: float, budget: float) -> tuple[ConnectionPool, psycopg.Connection]:
        """A live pooled connection before ``deadline``, or StoreUnavailable (at once after a connect failure)."""
        try:
            pool = self._current()
        except psycopg.Error as error:  # a malformed URL is refused when the pool parses it
            raise StoreUnavailable(PREFIX + describe(error, self.target)) from None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                failure = self._failure
                raise StoreUnavailable(PREFIX + (failure.reason if failure else f"timed out after {budget:g} s"))
            try:
                connection = pool.getconn(timeout=min(remaining, _SLICE))
            except PoolTimeout:
                failure = self._failure
                if failure is not None and time.monotonic() - failure.at < max(self.timeout, 1.0):
                    raise StoreUnavailable(PREFIX + failure.reason) from None
                continue
            except psycopg.Error as error:  # the pool closed under the call (shutdown), or too many waiting
                raise StoreUnavailable(PREFIX + describe(error, self.target)) from None
            if connection.closed or connection.broken or _input_pending(connection):
                self._checkin(pool, connection, broken=True)  # closed under it while idle: take another
                continue
            return pool, connection

    def _checkin(self, pool: ConnectionPool, connection: psycopg.Connection, broken: bool) -> None:
        """Give the connection back; a broken one, or one left in a transaction, is closed and replaced."""
        if broken or connection.info.transaction_status != TransactionStatus.IDLE:
            try:
                connection.close()  # never a ROLLBACK round trip to a server that may not answer
            except Exception:  # noqa: BLE001 - it is being thrown away
                pass
        try:
            pool.putconn(connection)
        except Exception as error:  # noqa: BLE001 - e.g. the pool was closed meanwhile
            log.debug("state database: connection not returned to its pool: %s", error)

    def _connect_failed(self, error: BaseException) -> None:
        self._failure = _ConnectFailure(time.monotonic(), describe(error, self.target))

    def _connected(self, connection: psycopg.Connection) -> None:
        self._failure = None
        self._connections.add(connection)


def _detach(connection: psycopg.Connection) -> None:
    """Point an inherited connection's descriptor at /dev/null: whatever the child does with it, the socket is safe."""
    try:
        descriptor = connection.pgconn.socket
    except psycopg.Error:  # already closed or broken: no descriptor left
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        os.dup2(null, descriptor)
    finally:
        os.close(null)


def _recording_class(owner: StatePool) -> type[psycopg.Connection]:
    """A connection class whose ``connect`` tells ``owner`` why the pool's last attempt failed (or that it worked)."""
    ref = weakref.ref(owner)

    class RecordingConnection(psycopg.Connection):
        state_pool = True  # see _QuietPool

        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> RecordingConnection:  # type: ignore[override]
            try:
                connection = super().connect(conninfo, **kwargs)
            except psycopg.Error as error:
                if (pool := ref()) is not None:
                    pool._connect_failed(error)
                raise
            if (pool := ref()) is not None:
                pool._connected(connection)
            return connection

    return RecordingConnection


_POOL_LOGGER = logging.getLogger("psycopg.pool")
# psycopg_pool warns at every failed connection attempt of its background reconnect (several a second at first, then
# every few seconds, per pool, per process, each two lines long). The store's callers already say it once, when the
# state changes ("cannot reach the scheduler lease: ...; trying every ..."), so these are debug detail.
_RECONNECT_CHATTER = ("error connecting in ", "reconnection attempt in pool ")


class _QuietPool(logging.Filter):
    """Keep psycopg_pool's log to what an operator needs: no warning per failed reconnect, none for our own discards.

    A connection this module closed on purpose (broken, timed out) and returned is
    not worth a warning; a failed reconnect attempt of our pools (a pool a job's
    own code makes keeps its warnings) is kept at DEBUG for whoever enables
    ``psycopg.pool`` at that level, and dropped otherwise.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        if message.startswith("discarding closed connection"):
            return not any(getattr(arg, "state_pool", False) for arg in (record.args or ()))
        ours = bool(record.args) and isinstance(record.args, tuple) and record.args[0] == POOL_NAME
        if ours and message.startswith(_RECONNECT_CHATTER) and record.levelno > logging.DEBUG:
            if not _POOL_LOGGER.isEnabledFor(logging.DEBUG):
                return False
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


_POOL_LOGGER.addFilter(_QuietPool())


def _input_pending(connection: psycopg.Connection) -> bool:
    """Whether an idle connection has something to read: an EOF or a FATAL message, i.e. it was closed."""
    try:
        poller = select.poll()  # not select(): a descriptor above 1023 is fine
        poller.register(connection.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError, psycopg.Error):
        return True


# -- the reasons an operator reads -------------------------------------------------------------------------
_SERVER_AT = re.compile(r'connection to server at "([^"]+)"(?: \([^)]*\))?, port (\d+) failed')
_SERVER_ON_SOCKET = re.compile(r'connection to server on socket "([^"]+)" failed')
_QUOTED_FATAL = re.compile(r"(?:FATAL|ERROR):\s+(.*)")


def _target(url: str) -> str:
    """``host:port`` of the URL, for reasons (never the user or the password)."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "?"
    host = _without_userinfo(str(params.get("host") or "localhost").split(",")[0])
    port = str(params.get("port") or "5432").split(",")[0]
    return f"{host}:{port}"


def _without_userinfo(host: str) -> str:
    """``host`` up to its last ``@`` dropped: libpq takes a password's tail after an unencoded ``@`` as the host."""
    return host.rpartition("@")[2]


def describe(error: BaseException, target: str) -> str:
    """A short reason, for an operator, why a call to the state database failed with ``error``."""
    text = str(error)
    at = _SERVER_AT.search(text)
    on_socket = _SERVER_ON_SOCKET.search(text)
    where = f"{_without_userinfo(at.group(1))}:{at.group(2)}" if at else on_socket.group(1) if on_socket else target
    lowered = text.lower()
    if isinstance(error, psycopg.errors.LockNotAvailable):
        return f"waited too long for a row another transaction holds locked (lock_timeout; {where})"
    if isinstance(error, psycopg.errors.ConnectionTimeout) or "timeout expired" in lowered:
        return f"timed out connecting ({where})"
    if "connection refused" in lowered:
        return f"connection refused ({where})"
    if ("could not translate host name" in lowered or "name or service not known" in lowered
            or "failed to resolve host" in lowered):  # psycopg's own resolution; its message quotes the host
        return f"unknown host ({where})"
    fatal = _QUOTED_FATAL.search(text)
    if fatal and ("authentication failed" in lowered or "does not exist" in lowered or "no password" in lowered
                  or "not allowed" in lowered or "too many" in lowered or "no such" in lowered):
        return f"{' '.join(fatal.group(1).split())} ({where})"
    if isinstance(error, psycopg.OperationalError) or "server closed the connection" in lowered:
        return f"connection lost ({where}): {_first_line(text)}"
    return f"{type(error).__name__}: {_first_line(text)}"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "no message"
    first = lines[0]
    if " failed: " in first:
        first = first.rsplit(" failed: ", 1)[1]
    return " ".join(first.replace("FATAL:  ", "").split())[:160]


# -- the deadline: a watchdog that shuts a blocked call's socket down ------------------------------------
class _Armed:
    """One call's deadline; :meth:`disarm` says whether the watchdog fired (the connection is then broken)."""

    __slots__ = ("deadline", "fileno", "done", "fired", "lock")

    def __init__(self, fileno: int, deadline: float) -> None:
        self.fileno, self.deadline = fileno, deadline
        self.done = self.fired = False
        self.lock = threading.Lock()

    def disarm(self) -> bool:
        with self.lock:
            self.done = True
            return self.fired

    def fire(self) -> None:
        with self.lock:
            if self.done or self.fired:
                return
            self.fired = True
            try:  # a duplicate of the descriptor: shutdown acts on the socket, close only on the duplicate
                with socket.socket(fileno=os.dup(self.fileno)) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _Watchdog:
    """One daemon thread per process that fires the calls whose deadline passed."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._heap: list[tuple[float, int, _Armed]] = []
        self._order = itertools.count()
        self._wake = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None

    def arm(self, connection: psycopg.Connection, deadline: float) -> _Armed:
        armed = _Armed(connection.fileno(), deadline)
        with self._wake:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="state-db-watchdog", daemon=True)
                self._thread.start()
            first = not self._heap or deadline < self._heap[0][0]
            heapq.heappush(self._heap, (deadline, next(self._order), armed))
            if first:
                self._wake.notify()
        return armed

    def _loop(self) -> None:
        while True:
            due: list[_Armed] = []
            with self._wake:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].done or self._heap[0][0] <= now):
                    _, _, armed = heapq.heappop(self._heap)
                    if not armed.done:
                        due.append(armed)
                if not due:
                    self._wake.wait(None if not self._heap else self._heap[0][0] - now)
            for armed in due:
                armed.fire()


_WATCHDOG: _Watchdog | None = None
_WATCHDOG_LOCK = threading.Lock()


def _watchdog() -> _Watchdog:
    global _WATCHDOG
    watchdog = _WATCHDOG
    if watchdog is None or watchdog.pid != os.getpid():
        with _WATCHDOG_LOCK:
            if _WATCHDOG is None or _WATCHDOG.pid != os.getpid():
                _WATCHDOG = _Watchdog()
            watchdog = _WATCHDOG
    return watchdog


def shut_down_at(connection: psycopg.Connection, deadline: float) -> _Armed:
    """Shut ``connection``'s socket down at ``deadline`` (``time.monotonic()``) unless the result is disarmed first.

    The watchdog of the store's calls, for a connection outside any pool (a
    job's query). ``disarm()`` says whether it fired: the connection is then
    broken, the blocked call has returned with an error, and it must be closed.
    """
    return _watchdog().arm(connection, deadline)


def _after_fork_in_child() -> None:
    global _WATCHDOG, _WATCHDOG_LOCK
    _WATCHDOG, _WATCHDOG_LOCK = None, threading.Lock()
    for pool in list(_POOLS):
        pool._forget_inherited()


os.register_at_fork(after_in_child=_after_fork_in_child)
