#!/usr/bin/env python3
"""Replay the stale-answer scenario of issue 9, compressed in time, against a real gunicorn and a private Redis.

Cron and Nagios probe every few minutes. Before the fix, each worker served its
last result, however old, so a probe reported the state of the previous probe:
with Redis stopped between two probes, the first probe after the outage said
OK. Here HEALTH_CACHE_TTL is 2 s and the probes are --spacing seconds apart
(default 20 s, ten TTLs: a 5-minute cron period with a TTL of 30 s looks the
same). Each probe is `worker-service check` (the Nagios plugin) followed by
/status for the age of the cache's result; Redis is stopped and started again
*between* two probes, with no probe in between.

Usage (from the repository, needs redis-server): bench/replay_stale_answer.py [--spacing 20]
Exit 0 when the first probe after the outage shows it and the first after the recovery shows that.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve() and VENV_PYTHON.exists():
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])  # the project's venv has the test helpers
sys.path.insert(0, str(ROOT))

from tests.support.private_services import PrivateRedis  # noqa: E402
from tests.support.servers import BIN, Gunicorn, base_env, wait_until  # noqa: E402

TTL = 2.0


def probe(server: Gunicorn, started: float, event: str) -> str:
    """Run the plugin, then read the cache's age from /status; print one line; return the plugin's label."""
    done = subprocess.run([str(BIN / "worker-service"), "check", "--url", server.url], capture_output=True,
                          text=True, timeout=30)
    line = done.stdout.strip().split(" | ")[0]
    _, _, body = server.get("/status", headers={"Connection": "close"})
    cache = body["metrics"]["dependencies"]["cache"]
    age = cache.get("age_seconds")  # absent before the fix: then only checked_at tells
    print(f"t={time.monotonic() - started:6.1f}s  {event:<26} exit={done.returncode}  {line}"
          f"  [cache {cache['status']}, result age {'-' if age is None else f'{age:.2f}s'},"
          f" checked_at {cache['checked_at']}]", flush=True)
    return line.split(" ")[1]


def pause(seconds: float) -> None:
    until = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() >= until, timeout=seconds + 5, interval=0.1, what="the next probe")


def between_probes(spacing: float, started: float, change: Callable[[], object], what: str) -> None:
    """Half a spacing, ``change`` (said as ``what``), half a spacing: no probe sees the moment of the change."""
    pause(spacing / 2)
    change()
    print(f"t={time.monotonic() - started:6.1f}s  -- {what}", flush=True)
    pause(spacing / 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spacing", type=float, default=20.0, help="seconds between the spaced probes")
    spacing = parser.parse_args().spacing
    workdir = Path(tempfile.mkdtemp(prefix="replay-stale-answer-"))
    redis = PrivateRedis(workdir).start()
    env = base_env(workdir / "state", REDIS_URL=f"redis://127.0.0.1:{redis.port}/0", HEALTH_CACHE_TTL=str(TTL),
                   HEALTH_CRITICAL_COMPONENTS="cache,database,scheduler", WEB_CONCURRENCY="2")
    server = Gunicorn(env, workdir)
    try:
        server.start()
        started = time.monotonic()
        print(f"gunicorn {server.url} (2 workers), private Redis on port {redis.port}, HEALTH_CACHE_TTL={TTL:g} s,"
              f" HEALTH_CHECK_TIMEOUT 0.5 s, spaced probes {spacing:g} s apart", flush=True)
        wait_until(lambda: server.get("/health")[0] == 200, timeout=20, what="the service to be available")
        for _ in range(12):
            probe(server, started, "healthy, frequent")
            pause(0.25)
        probe(server, started, "last probe before outage")
        between_probes(spacing, started, redis.stop, "Redis stopped (no probe until the next spaced one)")
        after_outage = probe(server, started, "first after the outage")
        pause(spacing)
        probe(server, started, "still down")
        between_probes(spacing, started, redis.start, "Redis started again (no probe until the next)")
        after_recovery = probe(server, started, "first after the recovery")
    finally:
        server.stop()
        redis.stop()
    ok = after_outage == "CRITICAL" and after_recovery == "OK"
    print(("PASS" if ok else "FAIL") + f": first probe after the outage {after_outage} (want CRITICAL),"
          f" first after the recovery {after_recovery} (want OK)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
