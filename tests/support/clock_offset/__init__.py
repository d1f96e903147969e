"""Test-only wall-clock offset for service processes (see sitecustomize.py) and a job that records real time."""

from __future__ import annotations

from pathlib import Path

HOOK_DIR = Path(__file__).resolve().parent
OFFSET_FILE_VARIABLE = "WORKER_SERVICE_TEST_CLOCK_OFFSET_FILE"
