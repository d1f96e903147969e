"""What can go wrong with the state store, named for an operator.

Every store call that cannot be served raises :class:`StoreUnavailable` with a
short reason (disk full, not writable, locked, corrupt, ...), never a raw
``sqlite3`` error: callers (the health check, /status, the scheduler) catch one
type and show its reason.
"""

from __future__ import annotations

import errno
import sqlite3

from common.helpers.health import redact
from common.helpers.health.disk import disk_full

# SQLite's primary result codes (the low byte of an extended code).
SQLITE_PERM, SQLITE_BUSY, SQLITE_LOCKED, SQLITE_READONLY = 3, 5, 6, 8
SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_CANTOPEN, SQLITE_NOTADB = 10, 11, 13, 14, 26

_MAX_REASON = 200


class StoreUnavailable(Exception):
    """The state store cannot serve this call; ``str(error)`` is a short, redacted reason for an operator."""

    def __init__(self, reason: str) -> None:
        self.reason = redact(reason)[:_MAX_REASON]
        super().__init__(self.reason)


class ClockSkewed(Exception):
    """This host's wall clock is further from the state database's than ``SCHEDULER_MAX_CLOCK_SKEW``: it may not lead."""

    def __init__(self, skew: float, bound: float) -> None:
        self.skew, self.bound = skew, bound  # skew: this host's clock minus the database's, seconds
        super().__init__(clock_skew_reason(skew, bound))


def clock_skew(sent: float, answered: float, db_now: float) -> float:
    """This host's wall clock minus the database's, as far as a round trip can prove it (0 if it cannot).

    The database read its clock somewhere between ``sent`` and ``answered``
    (this host's clock): a reading inside that window proves no skew at all.
    """
    db_now = float(db_now)
    if db_now < sent:
        return sent - db_now
    if db_now > answered:
        return answered - db_now
    return 0.0


def clock_skew_reason(skew: float, bound: float) -> str:
    """One phrase for a skewed clock: how far, which way, and the bound."""
    way = "ahead of" if skew > 0 else "behind"
    return (f"this host's clock is {abs(skew):.1f} s {way} the state database's (more than SCHEDULER_MAX_CLOCK_SKEW "
            f"{bound:g} s): it does not lead the fleet's scheduler; fix its time (NTP)")


def reason_alone(reason: str) -> str:
    """A store's reason without its "state store: " / "state database: " prefix, for a sentence that names it."""
    for prefix in ("state store: ", "state database: "):
        if reason.startswith(prefix):
            return reason[len(prefix):]
    return reason


class FencedOut(StoreUnavailable):
    """A leader's write carried an epoch that no longer holds the fleet's lease: refused, nothing was written."""


def primary_code(error: BaseException) -> int | None:
    """SQLite's primary result code of ``error``, if it is a SQLite error that carries one."""
    code = getattr(error, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_corrupt(error: BaseException) -> bool:
    """Whether ``error`` says the file is not a usable database ("file is not a database", "malformed")."""
    if primary_code(error) in (SQLITE_CORRUPT, SQLITE_NOTADB):
        return True
    text = str(error)
    return isinstance(error, sqlite3.DatabaseError) and ("not a database" in text or "malformed" in text)


def reason_for(error: BaseException, busy_timeout: float | None = None, path: str | None = None) -> str:
    """A short reason, for an operator, why the store failed with ``error`` (on the file ``path``, if known).

    An I/O error on a disk that is full is a full disk: SQLite says "disk I/O
    error" when it cannot grow a side file.
    """
    code = primary_code(error)
    number = getattr(error, "errno", None)
    if code == SQLITE_FULL or number == errno.ENOSPC:
        return "state store: disk full"
    if code == SQLITE_IOERR and path is not None and disk_full(path):
        return "state store: disk full"
    if code in (SQLITE_READONLY, SQLITE_PERM) or number in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "state store: not writable (read-only or immutable file or directory)"
    if code in (SQLITE_BUSY, SQLITE_LOCKED):
        bound = f" for over {busy_timeout:g} s" if busy_timeout is not None else ""
        return f"state store: locked by another process{bound}"
    if is_corrupt(error):
        return "state store: the file is corrupt (it is moved aside and rebuilt)"
    if code == SQLITE_CANTOPEN:
        return "state store: cannot open the file"
    if code == SQLITE_IOERR:
        name = getattr(error, "sqlite_errorname", "SQLITE_IOERR")
        return f"state store: I/O error ({name})"
    if isinstance(error, OSError) and error.strerror:
        return f"state store: {error.strerror}"
    return f"state store: {type(error).__name__}: {error}"
