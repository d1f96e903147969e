"""Keep a worker's listening sockets out of the children its jobs fork.

A job may ``os.fork()`` (or use ``multiprocessing`` with the fork start
method). The child inherits every descriptor, the gunicorn listening sockets
among them: a child that outlives the worker keeps the port bound, and a new
master then fails with "Address already in use". Python runs at-fork handlers
for ``os.fork()`` (not for ``subprocess``, whose exec closes these
close-on-exec descriptors anyway), so the child swaps each listener for
``/dev/null`` before the job's code goes on. ``dup2`` keeps the descriptor
number valid, so nothing in the child can close an unrelated file later.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

_listeners: list[int] = []


def protect_listeners(sockets: Iterable[Any]) -> None:
    """Register the worker's listening sockets; each forked child drops them at once."""
    first = not _listeners
    _listeners[:] = [sock.fileno() for sock in sockets]
    if first:
        os.register_at_fork(after_in_child=_drop_listeners)


def _drop_listeners() -> None:
    if not _listeners:
        return
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        for fd in _listeners:
            try:
                os.dup2(null, fd, inheritable=False)
            except OSError:
                pass
    finally:
        os.close(null)
    _listeners.clear()
