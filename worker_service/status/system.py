"""System and process figures from psutil, cheap enough for the request path.

* CPU percentages come from psutil's non-blocking form (``interval=None``),
  primed once, so a request never sleeps to measure; they cover the time since
  the previous sample.
* The ``Process`` object is created once and reused (creating one costs more
  than most readings).
* ``open_files`` counts descriptors with ``num_fds()`` on Linux: psutil's
  ``open_files()`` scans /proc/<pid>/fd and costs ~100x more with many fds.
* A sample is reused for ``min_interval`` seconds, so a burst of /status
  requests costs one set of readings.
"""

from __future__ import annotations

import os
import threading
import time
from types import SimpleNamespace
from typing import Any

import psutil

MB = 1024 * 1024
GB = 1024 * MB


class SystemSampler:
    """One per process: readings of the host and of this process."""

    def __init__(self, disk_path: str, min_interval: float = 1.0) -> None:
        self.disk_path = disk_path
        self.min_interval = min_interval
        self._process: psutil.Process | None = None
        self._pid = 0
        self._sample: dict[str, Any] | None = None
        self._sampled_at = 0.0
        self._lock = threading.Lock()

    def _proc(self) -> psutil.Process:
        if self._process is None or self._pid != os.getpid():  # a new process after fork
            self._process, self._pid = psutil.Process(), os.getpid()
            self._process.cpu_percent(None)
            psutil.cpu_percent(None)
        return self._process

    def prime(self) -> None:
        """Start the CPU counters so that the first real sample has a baseline."""
        self._proc()

    def sample(self) -> dict[str, Any]:
        """The ``system_resources`` block of /status."""
        with self._lock:
            now = time.monotonic()
            if self._sample is None or now - self._sampled_at >= self.min_interval or self._pid != os.getpid():
                self._sample, self._sampled_at = self._read(), now
            return self._sample

    def _read(self) -> dict[str, Any]:
        process = self._proc()
        memory = psutil.virtual_memory()
        try:
            disk = psutil.disk_usage(self.disk_path)
        except OSError:  # the path went away (an unmounted disk): report it empty rather than fail /status
            disk = SimpleNamespace(total=0, used=0, free=0, percent=0.0)
        network = psutil.net_io_counters()
        with process.oneshot():
            rss = process.memory_info().rss
            process_cpu = process.cpu_percent(None)
            threads = process.num_threads()
            fds = process.num_fds() if hasattr(process, "num_fds") else len(process.open_files())
        return {
            "cpu": {"percent": round(psutil.cpu_percent(None), 2), "count": psutil.cpu_count() or 0},
            "memory": {
                "total_gb": round(memory.total / GB, 2),
                "used_gb": round((memory.total - memory.available) / GB, 2),
                "percent": round(memory.percent, 2),
            },
            "disk": {
                "path": self.disk_path,
                "total_gb": round(disk.total / GB, 2),
                "used_gb": round(disk.used / GB, 2),
                "percent": round(disk.percent, 2),
            },
            "network": {
                "bytes_sent_mb": round(network.bytes_sent / MB, 2),
                "bytes_recv_mb": round(network.bytes_recv / MB, 2),
                "packets_sent": network.packets_sent,
                "packets_recv": network.packets_recv,
            },
            "process": {
                "pid": process.pid,
                "memory_mb": round(rss / MB, 2),
                "cpu_percent": round(process_cpu, 2),
                "threads": threads,
                "open_files": fds,
            },
        }
