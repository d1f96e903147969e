"""Who runs the scheduler on this host: a small election interface and its host-local file lock.

In a fleet this is the first of two levels: the lock picks the host's one
candidate, and the candidates of all hosts then compete for the PostgreSQL
lease (:mod:`.lease`), which also fences the leader's writes by its epoch.
"""

from __future__ import annotations

import errno
import fcntl
import os
from typing import Protocol


class LeaderElection(Protocol):
    """Exactly one holder at a time; the holder's death must free it."""

    def acquire(self, blocking: bool) -> bool:
        """Become the leader; wait for it if ``blocking``. Return whether this process leads."""

    def release(self) -> None:
        """Stop leading."""

    @property
    def held(self) -> bool:
        """Whether this process leads."""


class FileLockElection:
    """A POSIX record lock (``lockf``) on a file in the state directory.

    A POSIX lock belongs to the *process*: a child the leader forks (a job
    calling ``os.fork()``, ``multiprocessing`` with the fork start method)
    does not inherit it, so a child that outlives the leader cannot keep the
    host without a scheduler. (``flock`` belongs to the open file description,
    which a forked child shares: it would hold the lock for as long as it
    lives.) The kernel releases it when the holder dies, even by SIGKILL. The
    descriptor is close-on-exec, and nothing else in the process opens this
    file (closing any descriptor of it would drop a POSIX lock).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, blocking: bool) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except OSError as error:
            os.close(fd)
            if error.errno in (errno.EACCES, errno.EAGAIN):
                return False
            raise
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the lock

    @property
    def held(self) -> bool:
        return self._fd is not None
