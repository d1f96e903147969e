"""Whether a file's disk is full: the real cause behind SQLite's "disk I/O error" or a leader's silent heartbeat.

A full filesystem does not always reach a caller as ENOSPC. SQLite reports
"disk I/O error" (``SQLITE_IOERR``) when it cannot create or grow its
journal, and a reader of a shared store only sees that the writer went quiet.
After such a failure one ``statvfs`` tells whether the disk is the cause.
"""

from __future__ import annotations

import os

FULL_BELOW = 64 * 1024  # bytes: less than this left to an unprivileged writer is a full disk for SQLite


def space_left(path: str) -> int | None:
    """Bytes an unprivileged process may still write on the filesystem of ``path`` (or its nearest existing parent)."""
    probe = os.path.abspath(path)
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    try:
        stats = os.statvfs(probe)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def disk_full(path: str) -> str | None:
    """``"disk full (12 KiB left on /var/lib/x)"`` when the filesystem of ``path`` is full, else ``None``."""
    left = space_left(path)
    if left is None or left >= FULL_BELOW:
        return None
    where = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    amount = f"{left} bytes" if left < 1024 else f"{left // 1024} KiB"
    return f"disk full ({amount} left on {where})"
