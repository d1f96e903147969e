"""The scenarios: 1 /health healthy, 2 /health with Redis hung, 3 /status (3d in-process), 4 tracking overhead,
5 failover, 6 memory under a soak. Each is a method of :class:`Bench`, which keeps their results for the report.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from .processes import (
    BENCH,
    DATABASE_URL,
    REDIS_URL,
    REGISTRY,
    SOURCE,
    WORKERS,
    HungListener,
    Server,
    http_get,
    log,
    ours_env,
    plain_env,
    quote,
    wait_until,
)
from .report import repo_state
from .seed import builtin_job_ids, seed_stats, write_jobs_file
from .wrk import (
    LOPSIDED,
    LUA,
    MAX_RESTARTS,
    WRK_CONNECTIONS,
    WRK_THREADS,
    connection_split,
    cpu_times,
    interleaved,
    summarize,
    wrk,
)

SCENARIOS = ("health", "hung", "status", "status_cost", "tracking", "failover", "memory", "fleet")

# 7. The fleet sharing the work (issue 21): standalone scripts, run in turn; each prints a markdown table.
# (script, full-run arguments, --quick arguments)
FLEET_SCRIPTS = (
    ("fleet_capacity.py", [], ["--quick", "--only", "b"]),
    ("fleet_throughput.py", [], ["--quick", "--only", "b"]),
    ("fleet_failover_exec.py", [], ["--quick", "--after", "20"]),
    ("fleet_handover.py", [], ["--only", "stop-leader"]),
)


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
        # With gaps: each app is idle while the other runs (longer than HEALTH_CACHE_TTL + 2 x timeout, 3 s).
        results = interleaved(apps, self.modes(), self.args.rounds, self.args.duration, self.args.warmup)
        rows = summarize(results, "floor (bare Flask)")
        log("scenario 2, steady state: each measured run right after 1 s of the same load")
        steady = interleaved(apps, self.modes(), self.args.rounds, self.args.duration, 0.0, prewarm=1.0)
        steady_rows = summarize(steady, "floor (bare Flask)")
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
            "rows": rows, "runs": results, "steady_rows": steady_rows, "steady_runs": steady,
            "first_probe": (first[0], round(first_seconds, 3), first[2]),
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
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=str(SOURCE.root))
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
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=str(SOURCE.root))
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
            self.commands["memory wrk"] = "WRK_PATHS=/health,/status " + " ".join(quote(a) for a in command)
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

    # -- 7. fleet ----------------------------------------------------------------------------------------------
    def fleet(self) -> None:
        """The fleet benchmarks of issue 21 (bench/fleet_*.py), each in its own process; their tables go in the report.

        A script is stopped with SIGTERM (it then stops its hosts and drops its schemas), not SIGKILL.
        """
        log("scenario 7: the fleet sharing the work (bench/fleet_*.py)")
        self.stop_floor()
        found: dict[str, dict[str, Any]] = {}
        self.results["fleet"] = found
        for script, full, quick in FLEET_SCRIPTS:
            path = SOURCE.root / "bench" / script
            if not path.is_file():
                found[script] = {"rc": None, "markdown": f"(not in this tree: {script})", "command": ""}
                continue
            arguments = quick if self.args.quick else full
            command = [sys.executable, str(path), *arguments]
            shown = f".venv/bin/python bench/{script} {' '.join(arguments)}".strip()
            self.commands[script] = shown
            log(f"  {shown}")
            with open(self.logdir / f"{script}.log", "wb") as errors:
                process = subprocess.Popen(command, cwd=str(SOURCE.root), stdout=subprocess.PIPE, stderr=errors)
                try:
                    stdout, _ = process.communicate(timeout=1800)
                finally:
                    if process.poll() is None:
                        process.terminate()  # the script cleans up on SIGTERM
                        try:
                            process.wait(timeout=120)
                        except subprocess.TimeoutExpired:
                            process.kill()
                            process.wait(timeout=10)
            found[script] = {"rc": process.returncode, "markdown": stdout.decode(errors="replace").strip(),
                             "command": shown}
            log(f"  {script}: exit {process.returncode}")
