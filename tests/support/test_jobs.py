"""Job functions the tests' jobs files point at (``tests.support.test_jobs:<name>``)."""

from __future__ import annotations

import os
import time


def append_pid(path: str) -> None:
    """Append '<pid> <epoch>' to ``path``: one line per run, from whichever process runs it."""
    with open(path, "a") as handle:
        handle.write(f"{os.getpid()} {time.time():.6f}\n")


def slow(seconds: float = 0.2, path: str | None = None) -> None:
    """Sleep ``seconds``; with ``path``, write 'start' and 'end' lines around it."""
    if path:
        with open(path, "a") as handle:
            handle.write(f"start {os.getpid()} {time.time():.6f}\n")
    time.sleep(seconds)
    if path:
        with open(path, "a") as handle:
            handle.write(f"end {os.getpid()} {time.time():.6f}\n")


def always_fail() -> None:
    """Fail every time, with a secret-looking value in the message that must be redacted."""
    raise RuntimeError("upstream refused: password=canary-job-secret")


def noop() -> None:
    """Do nothing (for measuring tracking overhead)."""
