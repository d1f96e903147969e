"""A job for clock-jump tests: it records the monotonic clock, which a wall-clock offset leaves alone."""

from __future__ import annotations

import os
import time


def append_monotonic(path: str) -> None:
    """Append '<pid> <monotonic seconds>' to ``path``: comparable across processes on this host, jump or not."""
    with open(path, "a") as handle:
        handle.write(f"{os.getpid()} {time.monotonic():.6f}\n")
