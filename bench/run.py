"""worker-service benchmark: /health and /status against a bare-Flask floor and py-healthcheck, on loopback.

Usage (what ``make bench`` runs):

    .venv/bin/python bench/run.py            # full run, about 23 minutes, writes bench/results.md
    .venv/bin/python bench/run.py --quick    # smoke run (5 s wrk runs, 60 s soak), writes bench/out/results-quick.md

    .venv/bin/python bench/run.py --ref HEAD # pin one commit (a `git archive` snapshot), e.g. while others edit the tree

Options: --only health,hung,status,status_cost,tracking,failover,memory  --rounds N  --duration S
--sweep-duration S  --soak S  --tries N  --out FILE  --ref REF  --no-install  (see --help).

Every server is a real gunicorn on 127.0.0.1 with 2 workers x 4 threads (gthread):

* ours:  gunicorn -c gunicorn.conf.py --chdir <repo> wsgi:app, WEB_CONCURRENCY=2 GUNICORN_THREADS=4
* floor: gunicorn -k gthread -w 2 --threads 4 --keep-alive 5 (+ the same access-log format) bench/floor_app.py
* peer:  the same flags, bench/peer_app.py (py-healthcheck, Redis PING + PostgreSQL SELECT 1)

Load comes from wrk (-t2 -c16, --latency, bench/wrk_report.lua prints the figures as JSON). Runs are
interleaved (the order rotates every round), each keep-alive run records how wrk's connections were
split between the two workers (``ss -tnp``) and is rerun when one worker holds more than 75 %; every run
also records each worker's share of CPU time, which works with Connection: close too. Each process this
script starts is stopped by its PID, on success, error or Ctrl-C. Logs go to bench/out/<timestamp>/.
"""

from __future__ import annotations

import argparse
import ast
import datetime as dt
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
LUA = BENCH / "wrk_report.lua"
SRC = ROOT  # the service's source tree; a `git archive` snapshot with --ref
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from tests.support.servers import HungListener, base_env, free_port, http_get, wait_until  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/15"
DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
WORKERS, THREADS = 2, 4
WRK_THREADS, WRK_CONNECTIONS = 2, 16
LOPSIDED = 0.75
SCENARIOS = ("health", "hung", "status", "status_cost", "tracking", "failover", "memory")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------
class Registry:
    """Everything started here, stopped by PID in reverse order."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def add(self, item: Any) -> Any:
        self.items.append(item)
        return item

    def remove(self, item: Any) -> None:
        if item in self.items:
            self.items.remove(item)

    def cleanup(self) -> None:
        for item in reversed(self.items):
            try:
                if isinstance(item, Server):
                    item.stop()
                elif isinstance(item, HungListener):
                    item.close()
                elif isinstance(item, subprocess.Popen):
                    if item.poll() is None:
                        item.kill()
                        item.wait(timeout=10)
            except Exception as error:  # keep cleaning up the rest
                print(f"cleanup of {item!r} failed: {error}", file=sys.stderr)
        self.items.clear()


REGISTRY = Registry()


def _access_log_format() -> str:
    """The access-log format of gunicorn.conf.py (read, not run), so floor and peer log the same line per request."""
    tree = ast.parse((SRC / "gunicorn.conf.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "access_log_format" for t in node.targets):
            return ast.literal_eval(node.value)
    raise RuntimeError("gunicorn.conf.py has no access_log_format")


class Server:
    """One gunicorn master on a free loopback port."""

    def __init__(self, name: str, kind: str, env: dict[str, str], logdir: Path, app: str | None = None) -> None:
        self.name, self.kind, self.env = name, kind, env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logdir = logdir
        gunicorn = str(BIN / "gunicorn")
        bind = f"127.0.0.1:{self.port}"
        if kind == "ours":
            self.command = [gunicorn, "-c", str(SRC / "gunicorn.conf.py"), "-b", bind, "--chdir", str(SRC), "wsgi:app"]
            self.env.update({"WEB_CONCURRENCY": str(WORKERS), "GUNICORN_THREADS": str(THREADS)})
        else:
            self.command = [gunicorn, "-k", "gthread", "-w", str(WORKERS), "--threads", str(THREADS), "--keep-alive", "5",
                            "-b", bind, "--chdir", str(BENCH), "--access-logfile", "-",
                            "--access-logformat", ACCESS_LOG_FORMAT, app]
        self.process: subprocess.Popen | None = None

    def describe(self) -> str:
        shown = {k: v for k, v in self.env.items() if k.startswith(
            ("WEB_", "GUNICORN_", "REDIS_", "DATABASE_", "WORKER_", "STATUS_", "HEALTH_", "SCHEDULER_", "FLOOR_",
             "PYTHONPATH"))}
        env = " ".join(f"{k}={v}" for k, v in sorted(shown.items()))
        return f"{env} {' '.join(_quote(a) for a in self.command)}".strip()

    def start(self, ready_path: str | None = "/health/live") -> Server:
        out = open(self.logdir / f"{self.name}.out", "ab")
        err = open(self.logdir / f"{self.name}.err", "ab")
        self.process = subprocess.Popen(self.command, env=self.env, cwd=str(SRC if self.kind == "ours" else BENCH),
                                        stdout=out, stderr=err)
        out.close()
        err.close()
        REGISTRY.add(self)
        wait_until(self._up, timeout=40, what=f"{self.name} listening with {WORKERS} workers")
        if ready_path:
            wait_until(lambda: http_get(self.url + ready_path, timeout=2)[0] in (200, 503), timeout=30,
                       what=f"{self.name} {ready_path}")
        return self

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.logdir}/{self.name}.err")
        if len(self.workers()) < WORKERS:
            return False
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    @property
    def pid(self) -> int:
        return self.process.pid

    def workers(self) -> list[int]:
        try:
            return sorted(child.pid for child in psutil.Process(self.process.pid).children())
        except psutil.Error:
            return []

    def stop(self) -> None:
        if self.process is None:
            return
        REGISTRY.remove(self)
        if self.process.poll() is None:
            children = []
            try:
                children = psutil.Process(self.process.pid).children(recursive=True)
            except psutil.Error:
                pass
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            for child in children:  # workers are stopped by the master; make sure, by PID
                try:
                    child.kill()
                except psutil.Error:
                    pass
        if not KEEP_ACCESS_LOGS:  # stdout is the access log: ~170 bytes a request, gigabytes over a full run
            (self.logdir / f"{self.name}.out").unlink(missing_ok=True)


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


ACCESS_LOG_FORMAT = ""
KEEP_ACCESS_LOGS = False


# --------------------------------------------------------------------------------------------
# wrk
# --------------------------------------------------------------------------------------------
def connection_split(port: int) -> dict[int, int]:
    """Established server-side connections on ``port``, counted by owning PID (ss -tnp)."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True, timeout=10).stdout
    counts: dict[int, int] = {}
    for line in out.splitlines():
        match = re.search(r"pid=(\d+)", line)
        if match:
            pid = int(match.group(1))
            counts[pid] = counts.get(pid, 0) + 1
    return counts


def cpu_times(pids: list[int]) -> dict[int, float]:
    result = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            result[pid] = times.user + times.system
        except psutil.Error:
            pass
    return result


def wrk(server: Server, path: str, duration: float, *, close: bool = False, connections: int = WRK_CONNECTIONS,
        threads: int = WRK_THREADS, timeout: str = "5s", paths: str | None = None,
        abort_if_lopsided: bool = False) -> dict[str, Any]:
    """One wrk run against ``server``; returns the figures, the worker split and the command.

    Keep-alive connections stay with the worker that accepted them, so the split is known
    0.5 s in: with ``abort_if_lopsided`` a run whose split is over 75/25 is stopped there
    and ``{"aborted": True, "conn_split": [...]}`` is returned, for the caller to start again.
    """
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{int(round(duration))}s", "--latency", "--timeout",
               timeout, "-s", str(LUA)]
    if close:
        command += ["-H", "Connection: close"]
    command.append(server.url + path)
    env = dict(os.environ)
    if paths:
        env["WRK_PATHS"] = paths
    workers = server.workers()
    cpu_before = cpu_times(workers)
    process = REGISTRY.add(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
    samples: list[dict[int, int]] = []
    try:
        if not close:  # two looks at who holds wrk's connections: 0.5 s in, and half-way
            first = min(0.5, duration / 4)
            for index, delay in enumerate((first, max(duration / 2 - first, 0.0))):
                time.sleep(delay)
                if process.poll() is not None:
                    break
                samples.append(connection_split(server.port))
                if index == 0 and abort_if_lopsided:
                    counts = [samples[0].get(pid, 0) for pid in workers]
                    if sum(counts) and max(counts) / sum(counts) > LOPSIDED:
                        process.kill()
                        process.communicate(timeout=10)
                        return {"aborted": True, "conn_split": counts, "mode": "keep-alive"}
        stdout, stderr = process.communicate(timeout=duration + 60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        REGISTRY.remove(process)
    cpu_after = cpu_times(workers)
    match = re.search(r"^WRKJSON (\{.*\})$", stdout, re.M)
    if not match:
        raise RuntimeError(f"wrk printed no figures: {stdout[-500:]} {stderr[-500:]}")
    figures = json.loads(match.group(1))
    seconds = figures["duration_us"] / 1e6
    cpu = {pid: max(cpu_after.get(pid, 0) - cpu_before.get(pid, 0), 0.0) for pid in workers}
    total_cpu = sum(cpu.values()) or 1.0
    connections_seen = max(samples, key=lambda s: sum(s.values())) if samples else {}
    conn_counts = [connections_seen.get(pid, 0) for pid in workers]
    conn_total = sum(conn_counts)
    result = {
        "command": " ".join(_quote(a) for a in command),
        "mode": "close" if close else "keep-alive",
        "rps": figures["requests"] / seconds if seconds else 0.0,
        "requests": figures["requests"],
        "non2xx": figures["status"],
        "socket_errors": {k: figures[k] for k in ("connect", "read", "write", "timeout")},
        "p50_ms": figures["lat_p50"] / 1000, "p90_ms": figures["lat_p90"] / 1000,
        "p99_ms": figures["lat_p99"] / 1000, "max_ms": figures["lat_max"] / 1000, "mean_ms": figures["lat_mean"] / 1000,
        "workers": workers,
        "conn_split": conn_counts,
        "cpu_split": [round(cpu[pid] / total_cpu, 3) for pid in workers],
        "cpu_seconds": round(sum(cpu.values()), 2),
        "loadavg": os.getloadavg()[0],
    }
    # One worker holding most connections only matters when there are several to split.
    share = max(conn_counts) / conn_total if conn_total and connections > 1 else None
    result["conn_max_share"] = share
    result["lopsided"] = bool(share is not None and share > LOPSIDED)
    return result


MAX_RESTARTS = 8


def measured_run(server: Server, path: str, duration: float, close: bool, **kwargs: Any) -> dict:
    """A wrk run. A keep-alive run whose connections sit > 75 % on one worker is stopped 0.5 s in and started
    again (up to MAX_RESTARTS times; the last try runs to the end and is flagged if still lopsided)."""
    restarts: list[list[int]] = []
    several = kwargs.get("connections", WRK_CONNECTIONS) > 1
    for attempt in range(MAX_RESTARTS + 1):
        check = not close and several and attempt < MAX_RESTARTS
        run = wrk(server, path, duration, close=close, abort_if_lopsided=check, **kwargs)
        if run.get("aborted"):
            restarts.append(run["conn_split"])
            continue
        break
    run["restarts"] = restarts
    return run


def split_text(run: dict) -> str:
    conn = "/".join(str(c) for c in run["conn_split"]) if run["mode"] == "keep-alive" else "-"
    cpu = "/".join(f"{100 * s:.0f}" for s in run["cpu_split"])
    extra = f" after {len(run['restarts'])} restart(s)" if run.get("restarts") else ""
    flag = " LOPSIDED" if run["lopsided"] else ""
    return f"conn {conn}, cpu% {cpu}{extra}{flag}"


def interleaved(apps: list[tuple[str, Server, str]], modes: list[str], rounds: int, duration: float,
                warmup: float, **kwargs: Any) -> dict[tuple[str, str], list[dict]]:
    """Run every (app, mode) ``rounds`` times, A B C / B C A / C A B ..., after a warm-up of each."""
    for _label, server, path in apps:
        wrk(server, path, warmup, **kwargs)
    results: dict[tuple[str, str], list[dict]] = {}
    for round_index in range(rounds):
        shift = round_index % len(apps)
        order = apps[shift:] + apps[:shift]
        for mode in modes:
            for label, server, path in order:
                run = measured_run(server, path, duration, close=(mode == "close"), **kwargs)
                run["round"] = round_index + 1
                run["app"] = label
                results.setdefault((label, mode), []).append(run)
                log(f"  round {round_index + 1} {mode:10s} {label:40s} {run['rps']:8.0f} req/s  p50 {run['p50_ms']:.2f} ms"
                    f"  p99 {run['p99_ms']:.2f} ms  max {run['max_ms']:.0f} ms  non-2xx {run['non2xx']}  {split_text(run)}")
    return results


def summarize(results: dict[tuple[str, str], list[dict]], floor_label: str) -> list[dict]:
    """Medians per (app, mode), ratio of medians to the floor and the per-round ratios."""
    rows = []
    for (label, mode), runs in results.items():
        floor_runs = {run["round"]: run for run in results.get((floor_label, mode), [])}
        per_round = [run["rps"] / floor_runs[run["round"]]["rps"] for run in runs if run["round"] in floor_runs]
        floor_median = statistics.median(r["rps"] for r in floor_runs.values()) if floor_runs else None
        median = statistics.median(r["rps"] for r in runs)
        rows.append({
            "app": label, "mode": mode, "rps": median,
            "ratio": median / floor_median if floor_median else None,
            "round_ratios": per_round,
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "max_p99_ms": max(r["p99_ms"] for r in runs),
            "max_ms": max(r["max_ms"] for r in runs),
            "non2xx": sum(r["non2xx"] for r in runs),
            "requests": sum(r["requests"] for r in runs),
            "timeouts": sum(r["socket_errors"]["timeout"] for r in runs),
            "errors": sum(sum(r["socket_errors"].values()) for r in runs),
            "splits": [split_text(r) for r in runs],
            "lopsided": any(r["lopsided"] for r in runs),
        })
    return rows


# --------------------------------------------------------------------------------------------
# environments and fixtures
# --------------------------------------------------------------------------------------------
def ours_env(state_dir: Path, **extra: str) -> dict[str, str]:
    state_dir.mkdir(parents=True, exist_ok=True)
    values = {"REDIS_URL": REDIS_URL, "DATABASE_URL": DATABASE_URL}
    values.update(extra)
    return base_env(state_dir, **values)


def plain_env(**extra: str) -> dict[str, str]:
    return base_env(Path(tempfile.gettempdir()), **extra)


def write_jobs_file(path: Path, count: int) -> list[str]:
    """``count`` interval jobs on tests.support.sample_jobs:noop, 1 to 24 hours apart (they never fire here)."""
    lines, ids = [], []
    for i in range(count):
        job_id = f"job_{i:04d}"
        ids.append(job_id)
        lines += [f"[jobs.{job_id}]", f'name = "Job {i}"', 'func = "tests.support.sample_jobs:noop"',
                  'trigger = "interval"', f"hours = {1 + i % 24}", f"critical = {'true' if i % 10 == 0 else 'false'}",
                  ""]
    path.write_text("\n".join(lines))
    return ids


def builtin_job_ids() -> list[str]:
    import tomllib

    from worker_service.config import BUILTIN_JOBS_FILE

    with open(BUILTIN_JOBS_FILE, "rb") as handle:
        return list(tomllib.load(handle)["jobs"])


def seed_stats(state_dir: Path, ids: list[str]) -> None:
    """Give every job a run history before the service starts (as bench/status_cost.py does): one success
    30 s ago, and an error 20 s ago for every 5th job, so /status has the fields it shows in production."""
    from worker_service.state.setup import STATE_FILE
    from worker_service.state.sqlite_store import SqliteStateStore

    store = SqliteStateStore(str(state_dir / STATE_FILE))
    now = time.time()
    for i, job_id in enumerate(ids):
        store.record_run(job_id, "success", now - 30, 0.01 * (i % 7))
        if i % 5 == 0:
            store.record_run(job_id, "error", now - 20, 0.02, "RuntimeError", "boom")


# --------------------------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------------------------
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.logdir = BENCH / "out" / stamp
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix="ws-bench-"))
        self.results: dict[str, Any] = {}
        self.commands: dict[str, str] = {}
        self.floor: Server | None = None
        self.body_bytes = 173
        self.started = time.time()
        self.repo_at_start = repo_state()
        self.commit: str | None = None

    # -- helpers -------------------------------------------------------------------------------
    def server(self, name: str, kind: str, env: dict[str, str], app: str | None = None,
               ready: str | None = "/health/live") -> Server:
        server = Server(name, kind, env, self.logdir, app).start(ready)
        self.commands[name] = server.describe()
        return server

    def ensure_floor(self) -> Server:
        if self.floor is None:
            self.floor = self.server("floor", "floor", plain_env(FLOOR_BODY_BYTES=str(self.body_bytes)),
                                     "floor_app:app", ready="/health")
        return self.floor

    def stop_floor(self) -> None:
        """The HTTP comparisons are over: leave nothing idle beside what follows."""
        if self.floor is not None:
            self.floor.stop()
            self.floor = None

    def modes(self) -> list[str]:
        return ["keep-alive", "close"]

    # -- 1. /health healthy ---------------------------------------------------------------------------
    def health(self) -> None:
        log("scenario 1: /health, dependencies healthy")
        ours = self.server("ours-health", "ours", ours_env(self.tmp / "health"))
        status, _, body = http_get(ours.url + "/health", timeout=5)
        self.body_bytes = len(json.dumps(body, separators=(",", ":")).encode())
        floor = self.ensure_floor()
        peer = self.server("peer-health", "peer", plain_env(REDIS_URL=REDIS_URL, DATABASE_URL=DATABASE_URL),
                           "peer_app:app", ready="/health")
        peer_status, _, peer_body = http_get(peer.url + "/health", timeout=15)
        apps = [("floor (bare Flask)", floor, "/health"), ("ours /health", ours, "/health"),
                ("peer py-healthcheck", peer, "/health")]
        results = interleaved(apps, self.modes(), self.args.rounds, self.args.duration, self.args.warmup)
        self.results["health"] = {"rows": summarize(results, "floor (bare Flask)"), "runs": results,
                                  "ours_status": status, "body_bytes": self.body_bytes, "peer_status": peer_status,
                                  "peer_body": peer_body}
        ours.stop()
        peer.stop()

    # -- 2. /health with Redis hung --------------------------------------------------------------------
    def hung(self) -> None:
        log("scenario 2: /health with Redis accepting and never answering")
        hung = REGISTRY.add(HungListener())
        hung_url = f"redis://127.0.0.1:{hung.port}/15"
        floor = self.ensure_floor()
        ours = self.server("ours-hung", "ours", ours_env(self.tmp / "hung", REDIS_URL=hung_url))
        started = time.monotonic()
        first = http_get(ours.url + "/health", timeout=15)
        first_seconds = time.monotonic() - started
        apps = [("floor (bare Flask)", floor, "/health"), ("ours /health, Redis hung", ours, "/health")]
        results = interleaved(apps, self.modes(), self.args.rounds, self.args.duration, self.args.warmup)
        rows = summarize(results, "floor (bare Flask)")
        ours.stop()

        # py-healthcheck beside it: short, bounded runs with a long wrk timeout so slow answers are measured.
        peer = self.server("peer-hung", "peer", plain_env(REDIS_URL=hung_url, DATABASE_URL=DATABASE_URL),
                           "peer_app:app", ready=None)
        started = time.monotonic()
        probe = http_get(peer.url + "/health", timeout=30)
        probe_seconds = time.monotonic() - started
        peer_runs = []
        for mode in self.modes():
            run = wrk(peer, "/health", self.args.peer_duration, close=(mode == "close"), timeout="10s")
            run["app"] = "peer py-healthcheck, Redis hung"
            peer_runs.append(run)
            log(f"  {mode:10s} peer (Redis hung) {run['rps']:8.1f} req/s  p50 {run['p50_ms']:.0f} ms  max {run['max_ms']:.0f} ms"
                f"  non-2xx {run['non2xx']}  timeouts {run['socket_errors']['timeout']}")
        peer.stop()
        REGISTRY.remove(hung)
        hung.close()
        self.results["hung"] = {
            "rows": rows, "runs": results, "first_probe": (first[0], round(first_seconds, 3), first[2]),
            "peer_probe": (probe[0], round(probe_seconds, 3), probe[2]), "peer_runs": peer_runs,
            "peer_duration": self.args.peer_duration,
        }

    # -- 3. /status ---------------------------------------------------------------------------------------
    def status(self) -> None:
        log("scenario 3: /status, 3 jobs (built-in) and 10/100/1000 generated jobs; STATUS_CACHE_TTL default and 0")
        floor = self.ensure_floor()
        servers: dict[tuple[int, str], Server] = {}
        try:
            for count in (3, 10, 100, 1000):
                for ttl in ("default", "0"):
                    state = self.tmp / f"status-{count}-{ttl}"
                    state.mkdir(parents=True, exist_ok=True)
                    extra = {}
                    if count == 3:
                        ids = builtin_job_ids()
                    else:
                        jobs_file = state / "jobs.toml"
                        ids = write_jobs_file(jobs_file, count)
                        extra["WORKER_JOBS_FILE"] = str(jobs_file)
                    if ttl == "0":
                        extra["STATUS_CACHE_TTL"] = "0"
                    seed_stats(state, ids)
                    servers[(count, ttl)] = self.server(f"ours-status-{count}-ttl{ttl}", "ours",
                                                        ours_env(state, **extra))
            for server in servers.values():  # the leader has published the job list
                wait_until(lambda s=server: http_get(s.url + "/status", timeout=10)[2]["metrics"]["jobs_analysis"]
                           ["total_jobs"] > 0, timeout=30, what="jobs published")
            sizes = {f"{c}-{t}": len(json.dumps(http_get(s.url + "/status", timeout=10)[2]).encode())
                     for (c, t), s in servers.items()}

            def label(count: int, ttl: str) -> str:
                return f"ours /status {count} jobs, TTL {'1 s (default)' if ttl == 'default' else '0'}"

            log(" 3a: 3 jobs (built-in), keep-alive and Connection: close")
            apps = [("floor (bare Flask)", floor, "/status"), (label(3, "default"), servers[(3, "default")], "/status"),
                    (label(3, "0"), servers[(3, "0")], "/status")]
            main = interleaved(apps, self.modes(), self.args.rounds, self.args.duration, self.args.warmup)

            log(" 3b: 10 / 100 / 1000 jobs, keep-alive")
            apps = [("floor (bare Flask)", floor, "/status")]
            for count in (10, 100, 1000):
                for ttl in ("default", "0"):
                    apps.append((label(count, ttl), servers[(count, ttl)], "/status"))
            sweep = interleaved(apps, ["keep-alive"], self.args.rounds, self.args.sweep_duration, self.args.warmup)

            log(" 3c: 1000 jobs, one connection (latency of a single request stream)")
            apps = [(label(1000, "default") + ", 1 conn", servers[(1000, "default")], "/status"),
                    (label(1000, "0") + ", 1 conn", servers[(1000, "0")], "/status")]
            single = interleaved(apps, ["keep-alive"], self.args.rounds, self.args.sweep_duration, self.args.warmup,
                                 connections=1, threads=1)
        finally:
            for server in servers.values():
                server.stop()
        self.results["status"] = {
            "main": summarize(main, "floor (bare Flask)"), "sweep": summarize(sweep, "floor (bare Flask)"),
            "single": summarize(single, "none"), "runs": {**main, **sweep, **single}, "body_sizes": sizes,
        }

    def status_cost(self) -> None:
        log("scenario 3d: bench/status_cost.py (in-process, STATUS_CACHE_TTL=0)")
        command = [sys.executable, str(BENCH / "status_cost.py"), "3", "10", "100", "1000"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=str(SRC))
        self.commands["status_cost"] = ".venv/bin/python bench/status_cost.py 3 10 100 1000"
        self.results["status_cost"] = done.stdout.strip() or done.stderr[-2000:]
        print(self.results["status_cost"])

    # -- 4. tracking overhead ----------------------------------------------------------------------------
    def tracking(self) -> None:
        self.stop_floor()
        log("scenario 4: execution-tracking overhead per job run (in-process)")
        state = self.tmp / "tracking"
        state.mkdir()
        command = [sys.executable, str(BENCH / "tracking_cost.py"), "--runs", str(self.args.tracking_runs),
                   "--state-dir", str(state), "--json"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=str(SRC))
        self.commands["tracking"] = f".venv/bin/python bench/tracking_cost.py --runs {self.args.tracking_runs} --json"
        line = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        if not line:
            raise RuntimeError(f"tracking_cost.py failed: {done.stderr[-2000:]}")
        self.results["tracking"] = json.loads(line[-1])
        r = self.results["tracking"]
        log(f"  overhead per run: median {r['overhead_median_ms']:.3f} ms, p99 of a tracked run {r['tracked_p99_ms']:.3f} ms")

    # -- 5. failover ----------------------------------------------------------------------------------------
    def failover(self) -> None:
        log("scenario 5: failover after SIGKILL of the leader worker and after SIGHUP to the master")
        self.stop_floor()
        from worker_service.state.setup import STATE_FILE
        from worker_service.state.sqlite_store import SqliteStateStore

        state = self.tmp / "failover"
        state.mkdir()
        runs_path = state / "runs.txt"
        jobs = state / "jobs.toml"
        jobs.write_text('[jobs.tick]\nfunc = "tests.support.sample_jobs:append_pid"\ntrigger = "interval"\nseconds = 1\n'
                        f'kwargs = {{ path = "{runs_path}" }}\n')
        server = self.server("ours-failover", "ours", ours_env(state, WORKER_JOBS_FILE=str(jobs),
                                                                SCHEDULER_HEARTBEAT_INTERVAL="1"))
        store = SqliteStateStore(str(state / STATE_FILE))

        def lines() -> list[tuple[int, float]]:
            try:
                text = runs_path.read_text()
            except FileNotFoundError:
                return []
            out = []
            for row in text.splitlines():
                parts = row.split()
                if len(parts) == 2:
                    out.append((int(parts[0]), float(parts[1])))
            return out

        def settled() -> bool:
            workers = server.workers()
            recent = [r for r in lines() if r[1] > time.time() - 2.5]
            return len(workers) == WORKERS and len(recent) >= 2 and recent[-1][0] in workers

        try:
            wait_until(settled, timeout=30, what="the job running every second")
            def kill_once() -> dict:
                wait_until(settled, timeout=40, what="a steady leader")
                time.sleep(1.2)
                leader, last_at = lines()[-1]
                row = store.scheduler()
                t0 = time.time()
                os.kill(leader, signal.SIGKILL)
                first = wait_until(lambda: next((r for r in lines() if r[1] > t0 and r[0] != leader), None),
                                   timeout=60, what="a run after SIGKILL")
                row_after = wait_until(lambda: (s := store.scheduler()) and s.pid == first[0] and s.heartbeat_at > t0
                                       and s, timeout=30, what="the store's scheduler row to show the new leader")
                window = [r for r in lines() if last_at - 0.01 <= r[1] <= first[1] + 3]
                result = {
                    "killed": leader, "store_pid_before": row.pid if row else None, "new_leader": first[0],
                    "delay": first[1] - t0, "gap": first[1] - last_at,
                    "store_row_delay": row_after.heartbeat_at - t0 if row_after else None,
                    "doubles": sum(1 for a, b in zip(window, window[1:], strict=False) if b[1] - a[1] < 0.5),
                }
                log(f"  SIGKILL {leader} (store row pid {result['store_pid_before']}): next run {result['delay']:.3f} s "
                    f"later by {first[0]} (gap between runs {result['gap']:.3f} s)")
                return result

            def hup_once() -> dict:
                wait_until(settled, timeout=60, what="a steady leader")
                time.sleep(1.2)
                old_workers = set(server.workers())
                leader, last_at = lines()[-1]
                t0 = time.time()
                os.kill(server.pid, signal.SIGHUP)
                first_any = wait_until(lambda: next((r for r in lines() if r[1] > t0), None), timeout=60,
                                       what="a run after SIGHUP")
                first_new = wait_until(lambda: next((r for r in lines() if r[1] > t0 and r[0] not in old_workers), None),
                                       timeout=90, what="a run by a new worker after SIGHUP")
                wait_until(lambda: not (set(server.workers()) & old_workers) and len(server.workers()) == WORKERS,
                           timeout=90, what="old workers gone")
                window = [r for r in lines() if last_at - 0.01 <= r[1] <= first_new[1] + 2]
                gaps = [b[1] - a[1] for a, b in zip(window, window[1:], strict=False)]
                result = {
                    "old_leader": leader, "new_leader": first_new[0], "delay_any": first_any[1] - t0,
                    "delay_new": first_new[1] - t0, "max_gap": max(gaps) if gaps else None,
                    "doubles": sum(1 for g in gaps if g < 0.5),
                }
                log(f"  SIGHUP: next run {result['delay_any']:.3f} s later; first run by a new worker "
                    f"{result['delay_new']:.3f} s (pid {first_new[0]}); longest gap {result['max_gap']:.3f} s")
                return result

            kills = [kill_once() for _ in range(self.args.tries)]
            hups = [hup_once() for _ in range(self.args.tries)]
            self.results["failover"] = {"kill": kills, "hup": hups, "total_runs": len(lines())}
        finally:
            server.stop()

    # -- 6. memory ----------------------------------------------------------------------------------------
    def memory(self) -> None:
        soak = self.args.soak
        log(f"scenario 6: memory under {soak:.0f} s of load (/health and /status alternating, keep-alive)")
        self.stop_floor()
        state = self.tmp / "memory"
        state.mkdir()
        seed_stats(state, builtin_job_ids())
        server = self.server("ours-memory", "ours", ours_env(state))

        def rss() -> dict[str, float]:
            values = {f"master ({server.pid})": psutil.Process(server.pid).memory_info().rss / 2**20}
            for pid in workers_at_start:
                try:
                    values[f"worker {pid}"] = psutil.Process(pid).memory_info().rss / 2**20
                except psutil.Error:
                    values[f"worker {pid}"] = float("nan")
            return values

        try:
            workers_at_start = server.workers()
            samples = [(0.0, "after start-up", rss())]
            interval = max(5.0, soak / 30)
            env = dict(os.environ, WRK_PATHS="/health,/status")
            command = ["wrk", f"-t{WRK_THREADS}", f"-c{WRK_CONNECTIONS}", f"-d{int(soak)}s", "--latency", "--timeout",
                       "5s", "-s", str(LUA), server.url + "/health"]
            self.commands["memory wrk"] = "WRK_PATHS=/health,/status " + " ".join(_quote(a) for a in command)
            cpu_before = cpu_times(workers_at_start)
            restarts: list[list[int]] = []
            split: dict[int, int] = {}
            for attempt in range(MAX_RESTARTS + 1):  # restart a lopsided start, as in measured_run
                started = time.monotonic()
                process = REGISTRY.add(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                        text=True, env=env))
                try:
                    time.sleep(0.5)
                    split = connection_split(server.port)
                    counts = [split.get(p, 0) for p in workers_at_start]
                    if attempt < MAX_RESTARTS and sum(counts) and max(counts) / sum(counts) > LOPSIDED:
                        restarts.append(counts)
                        continue
                    next_sample = started + interval
                    while process.poll() is None:
                        time.sleep(0.5)
                        if time.monotonic() >= next_sample and process.poll() is None:
                            samples.append((time.monotonic() - started, "under load", rss()))
                            next_sample += interval
                    stdout, _ = process.communicate(timeout=60)
                    break
                finally:
                    if process.poll() is None:
                        process.kill()
                        process.wait(timeout=10)
                    REGISTRY.remove(process)
            samples.append((time.monotonic() - started, "after load", rss()))
            time.sleep(5)
            samples.append((time.monotonic() - started, "after load + 5 s idle", rss()))
            cpu_after = cpu_times(workers_at_start)
            match = re.search(r"^WRKJSON (\{.*\})$", stdout, re.M)
            figures = json.loads(match.group(1)) if match else {}
            total_cpu = sum(max(cpu_after.get(p, 0) - cpu_before.get(p, 0), 0) for p in workers_at_start) or 1
            self.results["memory"] = {
                "soak": soak, "samples": samples, "wrk": figures,
                "workers_same": server.workers() == workers_at_start,
                "conn_split": [split.get(p, 0) for p in workers_at_start], "restarts": restarts,
                "cpu_split": [round(max(cpu_after.get(p, 0) - cpu_before.get(p, 0), 0) / total_cpu, 3)
                              for p in workers_at_start],
            }
            log(f"  rss start {samples[0][2]} -> end {samples[-2][2]}")
        finally:
            server.stop()

    # -- report ------------------------------------------------------------------------------------------
    def write(self, path: Path, complete: bool, error: str | None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(self, complete, error))
        (self.logdir / "results.json").write_text(json.dumps(_jsonable(self.results), indent=1, default=str))
        log(f"wrote {path} (raw figures and logs in {self.logdir})")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {(" | ".join(k) if isinstance(k, tuple) else k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------------------------
def repo_state() -> dict[str, str]:
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--short", "--", ".", ":!bench"], capture_output=True,
                           text=True).stdout.split("\n")
    return {"head": head, "dirty": ", ".join(line.strip() for line in dirty if line.strip()) or "clean"}


def machine() -> dict[str, str]:
    model = "?"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in ("gunicorn", "flask", "werkzeug", "redis", "psycopg", "py-healthcheck", "apscheduler"):
        try:
            from importlib.metadata import version

            versions[name] = version(name)
        except Exception:
            versions[name] = "?"
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[:1]
    return {
        "nproc": str(os.cpu_count()), "model": model,
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB", "kernel": platform.release(),
        "python": platform.python_version(), "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "wrk": wrk_version[0] if wrk_version else "?",
    }


def source_line(bench: Bench) -> str:
    start, end = bench.repo_at_start, repo_state()
    if bench.args.ref:
        return (f"- service code: snapshot of `{bench.args.ref}` = commit {bench.commit} (`git archive` into a temp dir, "
                f"servers and in-process scripts run from it with PYTHONPATH set to it); the working tree was at "
                f"{start['head']} when the run started and at {end['head']} when it ended")
    line = f"- service code: the working tree at {start['head']} (uncommitted changes outside bench/: {start['dirty']})"
    if start != end:
        line += (f"; **the tree changed during the run** (at the end: {end['head']}, {end['dirty']}): servers started "
                 "after the change ran the new code; rerun with `--ref HEAD` to pin one commit")
    return line


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**met**" if ok else "**MISSED**")


def rows_table(rows: list[dict], ratio: bool = True) -> list[str]:
    head = "| app | connections | req/s (median) | ÷ floor (ratio of medians) | per-round ratios | p50 ms | p99 ms | max ms | non-2xx | worker split per run (conn / cpu %) |"
    out = [head, "|---|---|---:|---:|---|---:|---:|---:|---:|---|"]
    for row in rows:
        rr = ", ".join(f"{r:.2f}" for r in row["round_ratios"]) if ratio else "-"
        out.append(f"| {row['app']} | {row['mode']} | {row['rps']:,.0f} | {fmt(row['ratio']) if ratio else '-'} | {rr} | "
                   f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['max_ms']:.0f} | {row['non2xx']} | "
                   f"{'; '.join(row['splits'])} |")
    return out


def find(rows: list[dict], app_prefix: str, mode: str) -> dict | None:
    return next((r for r in rows if r["app"].startswith(app_prefix) and r["mode"] == mode), None)


def render(bench: Bench, complete: bool, error: str | None) -> str:
    args, res = bench.args, bench.results
    m = machine()
    elapsed = time.time() - bench.started
    out = [
        "# worker-service benchmark results",
        "",
        f"Generated by `bench/run.py` ({'--quick' if args.quick else 'full run'}), "
        f"{dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}, wall time {elapsed / 60:.1f} min."
        + ("" if complete else " **Incomplete run**: " + (error or "interrupted")),
        "",
        "## Machine",
        "",
        f"- nproc: {m['nproc']}; CPU: {m['model']}; memory: {m['memory']}; kernel {m['kernel']}; Python {m['python']}",
        f"- {m['versions']}; {m['wrk']}",
        source_line(bench),
        "- shared machine: wrk (-t2) and the servers share the same 2 cores; figures are ratios to the floor measured in "
        "the same interleaved rounds.",
        "",
        "## Commands",
        "",
        f"- Benchmark: `.venv/bin/python bench/run.py{' --quick' if args.quick else ''}"
        f"{' --ref ' + args.ref if args.ref else ''}` "
        f"(rounds {args.rounds}, wrk runs {args.duration:g} s, sweep/latency runs {args.sweep_duration:g} s, "
        f"warm-up {args.warmup:g} s per app, soak {args.soak:g} s, failover tries {args.tries})",
        f"- wrk: `wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d<D>s --latency --timeout 5s -s bench/wrk_report.lua "
        "[-H 'Connection: close'] http://127.0.0.1:<port><path>`. Keep-alive: the split of wrk's connections between the "
        "two workers is read with `ss -Htnp state established '( sport = :<port> )'` 0.5 s in and half-way; a run "
        "with more than 75 % on one worker is stopped at 0.5 s and started again (up to 8 times; a run still "
        "lopsided after that is flagged LOPSIDED). Connection: close runs spread every request; for every run the "
        "workers' shares of CPU time are recorded too.",
        "- Servers (ports are free ports picked per run; state dirs are temp dirs):",
        "",
    ]
    for name, command in bench.commands.items():
        out.append(f"  - {name}: `{command}`")
    out.append("")
    goals: list[tuple[str, str, bool | None]] = []

    if "health" in res:
        h = res["health"]
        out += ["## 1. /health, dependencies healthy", "",
                f"Redis PING ({REDIS_URL}) and PostgreSQL SELECT 1 ({DATABASE_URL}); ours answered {h['ours_status']} "
                f"with a {h['body_bytes']}-byte body, the floor returns a constant {h['body_bytes']}-byte body; "
                f"py-healthcheck answered {h['peer_status']}.", ""]
        out += rows_table(h["rows"])
        for mode in ("keep-alive", "close"):
            row = find(h["rows"], "ours", mode)
            if row:
                goals.append((f"1. /health healthy ≥ 0.95× floor ({mode})", f"{row['ratio']:.2f}×",
                              row["ratio"] >= 0.95))
        out.append("")

    if "hung" in res:
        g = res["hung"]
        status, seconds, body = g["first_probe"]
        out += ["## 2. /health with Redis hung (a listener that accepts and never answers)", "",
                f"First probe after start: HTTP {status} in {seconds:.3f} s, body `{json.dumps(body)[:300]}`.", ""]
        out += rows_table(g["rows"])
        out += ["", f"py-healthcheck with the same hung Redis ({g['peer_duration']:g} s wrk runs, --timeout 10s): "
                f"a single probe took {g['peer_probe'][1]:.2f} s and answered HTTP {g['peer_probe'][0]} "
                f"`{json.dumps(g['peer_probe'][2])[:300]}`.", "",
                "| app | connections | req/s | p50 ms | p99 ms | max ms | responses | non-2xx | wrk timeouts |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for run in g["peer_runs"]:
            out.append(f"| {run['app']} | {run['mode']} | {run['rps']:,.1f} | {run['p50_ms']:.0f} | {run['p99_ms']:.0f} | "
                       f"{run['max_ms']:.0f} | {run['requests']} | {run['non2xx']} | {run['socket_errors']['timeout']} |")
        for mode in ("keep-alive", "close"):
            row = find(g["rows"], "ours", mode)
            if row:
                goals.append((f"2. /health Redis hung ≥ 0.9× floor ({mode})", f"{row['ratio']:.2f}×", row["ratio"] >= 0.9))
                goals.append((f"2. /health Redis hung: no response > 1 s ({mode})",
                              f"max {row['max_ms']:.0f} ms, p99 {row['max_p99_ms']:.0f} ms (worst run), "
                              f"{row['timeouts']} timeouts", row["max_ms"] <= 1000 and row["timeouts"] == 0))
        out.append("")

    if "status" in res:
        s = res["status"]
        out += ["## 3. /status", "",
                "Job stats are seeded before start (one success 30 s ago for every job, an error 20 s ago for every "
                "5th), so /status shows the fields it shows in production. Body sizes (bytes): "
                + ", ".join(f"{k}: {v:,}" for k, v in s["body_sizes"].items()) + ".", "",
                "### 3a. 3 jobs (built-in jobs file)", ""]
        out += rows_table(s["main"])
        out += ["", "### 3b. 10 → 100 → 1,000 jobs (keep-alive)", ""]
        out += rows_table(s["sweep"])
        out += ["", "### 3c. 1,000 jobs, one connection (`wrk -t1 -c1`): latency of one request at a time", ""]
        out += rows_table(s["single"], ratio=False)
        for mode in ("keep-alive", "close"):
            row = find(s["main"], "ours /status 3 jobs, TTL 1 s", mode)
            if row:
                goals.append((f"3. /status 3 jobs ≥ 0.6× floor, default TTL ({mode})", f"{row['ratio']:.2f}×",
                              row["ratio"] >= 0.6))
            row = find(s["main"], "ours /status 3 jobs, TTL 0", mode)
            if row:
                goals.append((f"3. /status 3 jobs ≥ 0.6× floor, STATUS_CACHE_TTL=0 ({mode})", f"{row['ratio']:.2f}×",
                              row["ratio"] >= 0.6))
        for ttl, name in (("1 s", "default TTL"), ("0", "STATUS_CACHE_TTL=0")):
            row = find(s["single"], f"ours /status 1000 jobs, TTL {ttl}", "keep-alive")
            if row:
                goals.append((f"3. /status 1,000 jobs median ≤ 50 ms, {name}, one connection",
                              f"p50 {row['p50_ms']:.1f} ms (p99 {row['p99_ms']:.1f})", row["p50_ms"] <= 50))
            row = find(s["sweep"], f"ours /status 1000 jobs, TTL {ttl}", "keep-alive")
            if row:
                goals.append((f"3. /status 1,000 jobs median ≤ 50 ms, {name}, with 16 concurrent connections (stricter reading)",
                              f"p50 {row['p50_ms']:.1f} ms", row["p50_ms"] <= 50))
        out.append("")
    if "status_cost" in res:
        out += ["### 3d. In-process cost (bench/status_cost.py, STATUS_CACHE_TTL=0, Flask test client, one thread)", "",
                res["status_cost"], ""]

    if "tracking" in res:
        t = res["tracking"]
        out += ["## 4. Execution-tracking overhead per job run", "",
                f"`bench/tracking_cost.py`: a real SchedulerService and SqliteStateStore (on {t['state_fs']}); per run: "
                "the submission record (with the next run time) + the tracker's wrapper around `noop` (started and "
                "finished records) + the executor's done callback, "
                f"{t['runs']:,} runs, against a bare `noop()` call.", "",
                "| measure | value |", "|---|---:|",
                f"| bare noop() median | {t['bare_median_us']:.2f} µs |",
                f"| tracked run median / mean | {t['tracked_median_ms']:.3f} / {t['tracked_mean_ms']:.3f} ms |",
                f"| tracked run p99 / max | {t['tracked_p99_ms']:.3f} / {t['tracked_max_ms']:.3f} ms |",
                f"| **overhead per run, median (mean)** | **{t['overhead_median_ms']:.3f} ms** ({t['overhead_mean_ms']:.3f} ms) |",
                f"| submission record (record_submitted) median | {t['submitted_median_ms']:.3f} ms |",
                f"| wrapper call (record_started + record_run) median | {t['wrapped_call_median_ms']:.4f} ms |",
                f"| executor's done callback median / p99 | {t['executed_median_ms']:.3f} / {t['executed_p99_ms']:.3f} ms |",
                f"| runs recorded / history rows kept | {t['success_count_recorded']:,} / {t['history_rows_kept']} |", ""]
        goals.append(("4. tracking overhead ≤ 0.5 ms per run", f"median {t['overhead_median_ms']:.3f} ms, "
                      f"mean {t['overhead_mean_ms']:.3f} ms", t["overhead_mean_ms"] <= 0.5))

    if "failover" in res:
        f = res["failover"]
        kd = [k["delay"] for k in f["kill"]]
        hd = [h["delay_new"] for h in f["hup"]]
        out += ["## 5. Scheduler failover (job every 1 s, SCHEDULER_HEARTBEAT_INTERVAL=1)", "",
                "SIGKILL: time from the kill of the leader worker (the pid of the last line the job wrote, checked "
                "against the store's scheduler row) to the first run by another worker; gap = that run minus the last "
                "run before the kill; store row = when the store's scheduler row first showed the new leader (its "
                "first heartbeat). SIGHUP: time from the signal to the next run by any worker, and to the first run by "
                "a new worker; longest gap between consecutive runs around the reload. Doubles: consecutive runs < 0.5 s apart.",
                "", "| event | median s | max s | details |", "|---|---:|---:|---|",
                f"| SIGKILL leader → next run | {statistics.median(kd):.3f} | {max(kd):.3f} | gaps "
                + ", ".join(f"{k['gap']:.2f}" for k in f["kill"]) + "; store row after "
                + ", ".join(fmt(k["store_row_delay"], 2) for k in f["kill"]) + " s; doubles "
                + str(sum(k["doubles"] for k in f["kill"])) + " |",
                f"| SIGHUP master → next run (any worker) | {statistics.median(h['delay_any'] for h in f['hup']):.3f} | "
                f"{max(h['delay_any'] for h in f['hup']):.3f} | |",
                f"| SIGHUP master → first run by a new worker | {statistics.median(hd):.3f} | {max(hd):.3f} | longest gaps "
                + ", ".join(fmt(h["max_gap"], 2) for h in f["hup"]) + " s; doubles "
                + str(sum(h["doubles"] for h in f["hup"])) + " |", ""]

    if "memory" in res:
        mem = res["memory"]
        names = list(mem["samples"][0][2])
        out += [f"## 6. Memory (RSS, MiB) under {mem['soak']:.0f} s of load", "",
                f"wrk -t2 -c16 alternating /health and /status (keep-alive) on the default 3 jobs; "
                f"{mem['wrk'].get('requests', 0):,} requests "
                f"({mem['wrk'].get('requests', 0) / max(mem['wrk'].get('duration_us', 1) / 1e6, 1e-9):,.0f} req/s), "
                f"non-2xx {mem['wrk'].get('status', '?')}, worker connections {mem['conn_split']}, cpu split "
                f"{mem['cpu_split']}; same worker pids throughout: {mem['workers_same']}.", "",
                "| t (s) | when | " + " | ".join(names) + " |", "|---:|---|" + "---:|" * len(names)]
        for at, label, values in mem["samples"]:
            out.append(f"| {at:.0f} | {label} | " + " | ".join(f"{values.get(n, float('nan')):.1f}" for n in names) + " |")
        start, end = mem["samples"][0][2], mem["samples"][-2][2]
        loaded = [s for s in mem["samples"] if s[1] == "under load"]
        mid = loaded[len(loaded) // 2][2] if loaded else start
        out += ["", "| process | start-up | end of load | growth | growth over the second half of the load |",
                "|---|---:|---:|---:|---:|"]
        worst_second_half = 0.0
        for n in names:
            second = end.get(n, 0) - mid.get(n, 0)
            worst_second_half = max(worst_second_half, second)
            out.append(f"| {n} | {start.get(n, 0):.1f} | {end.get(n, 0):.1f} | {end.get(n, 0) - start.get(n, 0):+.1f} | "
                       f"{second:+.1f} |")
        out.append("")
        goals.append(("6. memory does not grow without bound", f"largest growth over the second half of the load "
                      f"{worst_second_half:+.1f} MiB", worst_second_half <= 2.0))

    if goals:
        out += ["## Goals", "", "| goal | measured (same-run ratios) | verdict |", "|---|---|---|"]
        out += [f"| {name} | {value} | {verdict(ok)} |" for name, value, ok in goals]
        out.append("")
    out += ["## Every run", "", "<details><summary>all wrk runs, with the splits of the keep-alive starts that were "
            "stopped at 0.5 s as lopsided</summary>", "",
            "| scenario | app | mode | round | req/s | p50 ms | p99 ms | max ms | non-2xx | conn split | cpu split | "
            "restarted after splits | load avg |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|---|---:|"]
    for scenario, key in (("health", "runs"), ("hung", "runs"), ("status", "runs")):
        for (label, mode), runs in (res.get(scenario, {}).get(key) or {}).items():
            for run in runs:
                out.append(f"| {scenario} | {label} | {mode} | {run['round']} | {run['rps']:,.0f} | "
                           f"{run['p50_ms']:.2f} | {run['p99_ms']:.2f} | {run['max_ms']:.0f} | "
                           f"{run['non2xx']} | {run['conn_split']}{' LOPSIDED' if run['lopsided'] else ''} | "
                           f"{run['cpu_split']} | {' '.join(str(r) for r in run['restarts']) or '-'} | "
                           f"{run['loadavg']:.2f} |")
    out += ["", "</details>", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
def ensure_peer(install: bool) -> None:
    if importlib.util.find_spec("healthcheck") is not None:
        return
    if not install:
        raise SystemExit("py-healthcheck is not installed: .venv/bin/pip install py-healthcheck (or drop --no-install)")
    log("installing py-healthcheck into the venv (bench only)")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "py-healthcheck"], check=True, timeout=300)


def preflight() -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    for host, port, what in (("127.0.0.1", 6379, "Redis"), ("127.0.0.1", 5432, "PostgreSQL")):
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError as error:
            raise SystemExit(f"{what} is not reachable on {host}:{port} ({error}); try `make services`") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="worker-service benchmark (see the module docstring)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 s wrk runs, 3 s sweep runs, 60 s soak, 3 tries")
    parser.add_argument("--only", default=",".join(SCENARIOS), help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--duration", type=float, help="seconds per wrk run in scenarios 1-3a (default 10, quick 5)")
    parser.add_argument("--sweep-duration", type=float, help="seconds per run of the 10/100/1000 sweep and the "
                        "one-connection runs (default 5, quick 3)")
    parser.add_argument("--peer-duration", type=float, help="seconds per py-healthcheck run with Redis hung (default 10, quick 5)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per app before the rounds (default 2, quick 1)")
    parser.add_argument("--soak", type=float, help="seconds of load in the memory scenario (default 600, quick 60)")
    parser.add_argument("--tries", type=int, help="failover tries per signal (default 5, quick 3)")
    parser.add_argument("--tracking-runs", type=int, help="job runs timed in scenario 4 (default 5000, quick 2000)")
    parser.add_argument("--out", type=Path, help="markdown output (default bench/results.md; quick: bench/out/results-quick.md)")
    parser.add_argument("--no-install", action="store_true", help="do not pip-install py-healthcheck when missing")
    parser.add_argument("--keep-access-logs", action="store_true", help="keep each server's access log (stdout) in "
                        "bench/out/<timestamp>/ (deleted when the server stops otherwise: gigabytes in a full run)")
    parser.add_argument("--ref", help="benchmark this commit (e.g. HEAD): a `git archive` snapshot in a temp dir, so "
                        "edits made to the tree during the run do not change what is measured (default: the working tree)")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {"duration": (10, 5), "sweep_duration": (5, 3), "peer_duration": (10, 5), "warmup": (2, 1),
                "soak": (600, 60), "tries": (5, 3), "tracking_runs": (5000, 2000)}
    for name, (full, short) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, short if quick else full)
    if args.out is None:
        args.out = BENCH / "out" / "results-quick.md" if quick else BENCH / "results.md"
    args.only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return args


def snapshot(ref: str, into: Path) -> str:
    """Extract commit ``ref`` of the repository into ``into``; return the commit's short hash."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "--short", f"{ref}^{{commit}}"],
                            capture_output=True, text=True, check=True).stdout.strip()
    into.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", commit], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    archive.stdout.close()
    if archive.wait() != 0:
        raise SystemExit(f"git archive {commit} failed")
    return commit


def main(argv: list[str] | None = None) -> int:
    global ACCESS_LOG_FORMAT, SRC, KEEP_ACCESS_LOGS
    args = parse_args(argv)
    KEEP_ACCESS_LOGS = args.keep_access_logs
    preflight()
    ensure_peer(not args.no_install)
    commit = None
    source_dir = None
    if args.ref:  # before anything imports worker_service: this process uses the snapshot too
        source_dir = Path(tempfile.mkdtemp(prefix="ws-bench-src-"))
        commit = snapshot(args.ref, source_dir / "src")
        SRC = source_dir / "src"
        sys.path.insert(0, str(SRC))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
        log(f"benchmarking {args.ref} = {commit} from {SRC}")
    ACCESS_LOG_FORMAT = _access_log_format()

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Also SIGINT: a shell starts background jobs with SIGINT ignored, and Ctrl-C / kill -INT must still clean up.
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    bench = Bench(args)
    bench.commit = commit
    log(f"logs in {bench.logdir}; scenarios: {', '.join(args.only)}")
    complete, error = False, None
    try:
        for name in SCENARIOS:
            if name in args.only:
                getattr(bench, name)()
        complete = True
    except KeyboardInterrupt:
        error = "interrupted"
        log("interrupted: stopping everything")
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    finally:
        REGISTRY.cleanup()
        try:
            bench.write(args.out, complete, error)
        except Exception:
            traceback.print_exc()
        shutil.rmtree(bench.tmp, ignore_errors=True)
        if source_dir:
            shutil.rmtree(source_dir, ignore_errors=True)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
