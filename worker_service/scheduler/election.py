"""Who runs the scheduler: a small election interface and its host-local file lock.

A lease shared by several hosts (Redis) can implement the same interface.
"""

from __future__ import annotations

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
    """``flock`` on a file in the state directory.

    The lock belongs to the open file description, so the file is opened in
    the process that wants to lead (a gunicorn worker, never the master: a
    descriptor inherited through fork would share the lock). The kernel
    releases it when the holder dies, even by SIGKILL.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, blocking: bool) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the last descriptor drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None
