"""Delete old files from the temporary directory, never following a symlink out of it."""

from __future__ import annotations

import logging
import os
import stat
import time

from .. import runtime

log = logging.getLogger(__name__)


def cleanup_temporary_files(directory: str | None = None, max_age: float | None = None) -> int:
    """Delete files (and symlinks, not their targets) older than ``max_age`` seconds; return how many.

    Defaults come from ``CLEANUP_DIR`` and ``CLEANUP_MAX_AGE``. ``os.fwalk``
    with ``follow_symlinks=False`` works on directory descriptors, so a
    directory swapped for a symlink mid-walk is not entered.
    """
    settings = runtime.settings()
    directory = directory or settings["CLEANUP_DIR"]
    max_age = settings["CLEANUP_MAX_AGE"] if max_age is None else max_age
    if not os.path.isdir(directory):
        if directory != os.path.join(settings["WORKER_STATE_DIR"], "tmp"):
            raise FileNotFoundError(f"cleanup directory {directory} does not exist (CLEANUP_DIR)")
        os.makedirs(directory, exist_ok=True)  # the default lives in the state directory: ours to create
    cutoff = time.time() - max_age
    deleted = 0
    for _, dirnames, filenames, dirfd in os.fwalk(directory, follow_symlinks=False):
        for name in filenames + dirnames:
            try:
                info = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if (stat.S_ISREG(info.st_mode) or stat.S_ISLNK(info.st_mode)) and info.st_mtime < cutoff:
                try:
                    os.unlink(name, dir_fd=dirfd)
                    deleted += 1
                except FileNotFoundError:
                    pass
    log.info("cleanup_temporary_files: deleted %d files older than %.0f s from %s", deleted, max_age, directory)
    return deleted
