"""Job control's round trip through gunicorn: POST on a worker that does not lead -> the leader's outcome.

A real gunicorn (our gunicorn.conf.py, WEB_CONCURRENCY=4, GUNICORN_THREADS=4)
leads two jobs an hour apart (they never fire by themselves). Each measured
command is one ``POST /jobs/<id>/run|pause|resume?wait=10`` on a new
connection, timed from before the connection opens to the last byte of the
answer, which carries the leader's outcome (200). The commands alternate
run-now of a no-op job with pause and resume of another job.

Commands are sent one after the other in two series: back to back (each
POST right after the previous answer, which lands just after a leader's poll:
the worst phase) and at random moments (a pause drawn uniformly from 0 to
0.2 s before each POST, so arrivals fall anywhere in the leader's poll cycle,
as an operator's do).

Which worker took each POST is read from its log line; only those taken by
a worker that does not lead count (the others are reported apart). Also
printed: the store's own ``finished_at - requested_at`` per command (queue
to the leader's finish, without HTTP), and a ``GET /health/live`` on a new
connection as the floor of any round trip.

The leader polls its pending commands every 0.2 s (scheduler/commands.py),
so the round trip is about half of that on average, and at most that plus
the request's own poll interval (0.02 s) and HTTP.

Usage: .venv/bin/python bench/command_roundtrip.py [--commands 50] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.servers import Gunicorn, base_env, wait_until  # noqa: E402

ADMIN = "bench-admin-token-0123456789"
JOBS = """
[jobs.noop]
func = "tests.support.sample_jobs:noop"
trigger = "interval"
hours = 1

[jobs.target]
func = "tests.support.sample_jobs:noop"
trigger = "interval"
hours = 1
"""


def post(server: Gunicorn, path: str, who: str) -> tuple[float, int, dict]:
    """(seconds, status, body) of one POST on a new connection."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request("POST", path, headers={"Authorization": f"Bearer {ADMIN}", "X-Requested-By": who,
                                                  "Connection": "close"})
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    return time.perf_counter() - started, response.status, json.loads(raw)


def live(server: Gunicorn) -> float:
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", "/health/live", headers={"Connection": "close"})
        connection.getresponse().read()
    finally:
        connection.close()
    return time.perf_counter() - started


def epoch(timestamp: str) -> float:
    return dt.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC).timestamp()


def summary(values: list[float]) -> dict[str, float]:
    """Median, p90 and worst, in milliseconds."""
    ordered = sorted(values)
    return {"n": len(ordered), "median_ms": round(statistics.median(ordered) * 1000, 1),
            "p90_ms": round(ordered[max(int(len(ordered) * 0.9) - 1, 0)] * 1000, 1),
            "worst_ms": round(ordered[-1] * 1000, 1)}


def series(server: Gunicorn, leader: int, commands: int, jitter: float, tag: str) -> list[tuple[str, float, float, int]]:
    """(action, round trip, queue to finish, pid) of commands until ``commands`` came from workers that do not lead."""
    actions = [("noop", "run"), ("target", "pause"), ("target", "resume")]
    samples: list[tuple[str, float, float, int]] = []
    for index in range(commands * 3):
        if sum(pid != leader for *_, pid in samples) >= commands:
            break
        if jitter:
            time.sleep(random.uniform(0, jitter))  # noqa: S311 - an arrival time, not a secret
        job, action = actions[index % len(actions)]
        who = f"bench-{tag}-{index}"
        seconds, status, body = post(server, f"/jobs/{job}/{action}?wait=10", who)
        assert status == 200, (status, body)
        pattern = re.compile(rf'pid=(\d+) [^\n]*requested by {who} ')
        pid = int(wait_until(lambda p=pattern: p.search(server.stderr()), timeout=5, what="the log line").group(1))
        samples.append((action, seconds, epoch(body["finished_at"]) - epoch(body["requested_at"]), pid))
    return samples


def measure(commands: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="ws-bench-commands-"))
    (workdir / "jobs.toml").write_text(JOBS)
    server = Gunicorn(base_env(workdir / "state", WORKER_JOBS_FILE=str(workdir / "jobs.toml"), WEB_CONCURRENCY="4",
                               GUNICORN_THREADS="4", ADMIN_TOKEN=ADMIN, SCHEDULER_HEARTBEAT_INTERVAL="1",
                               LOG_LEVEL="DEBUG"), workdir)
    server.start()
    try:
        wait_until(lambda: server.get("/health/scheduler")[0] == 200, timeout=20, what="a leader")
        leader = server.get("/status")[2]["metrics"]["scheduler_status"]["pid"]
        back_to_back = series(server, leader, commands, 0.0, "b2b")
        arrivals = series(server, leader, commands, 0.2, "random")
        floor = [live(server) for _ in range(50)]
    finally:
        server.stop()
    result: dict = {
        "machine": f"{os.cpu_count()} cores, Python {sys.version.split()[0]}",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": f".venv/bin/python bench/command_roundtrip.py --commands {commands}",
    }
    for name, samples in (("random arrivals", arrivals), ("back to back", back_to_back)):
        others = [s for s in samples if s[3] != leader]
        result[f"{name}: round trip, non-leader worker"] = summary([s[1] for s in others])
        result[f"{name}: of which run-now"] = summary([s[1] for s in others if s[0] == "run"])
        result[f"{name}: of which pause/resume"] = summary([s[1] for s in others if s[0] != "run"])
        result[f"{name}: queued to finished (store)"] = summary([s[2] for s in others])
        taken_by_leader = [s[1] for s in samples if s[3] == leader]
        if taken_by_leader:
            result[f"{name}: round trip, the leader's worker"] = summary(taken_by_leader)
    result["GET /health/live (floor)"] = summary(floor)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=50, help="answers from workers that do not lead")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    result = measure(args.commands)
    if args.json:
        print(json.dumps(result))
        return
    print(f"# command round trip ({result['machine']}, {result['date']})\n\n`{result['command']}`\n")
    print("| what | n | median ms | p90 ms | worst ms |\n|---|---|---|---|---|")
    for key, value in result.items():
        if isinstance(value, dict):
            print(f"| {key} | {value['n']} | {value['median_ms']} | {value['p90_ms']} | "
                  f"{value['worst_ms']} |")


if __name__ == "__main__":
    main()
