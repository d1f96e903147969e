"""The wrk driver: one run, a lopsided start run again, interleaved rounds, medians and ratios to the floor.

Load comes from wrk (-t2 -c16, --latency, bench/wrk_report.lua prints the figures as JSON). Keep-alive runs record
how wrk's connections were split between the workers (``ss -tnp``); every run records each worker's share of CPU
time, which works with Connection: close too.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import time
from typing import Any

import psutil

from .processes import BENCH, REGISTRY, Server, log, quote

LUA = BENCH / "wrk_report.lua"
WRK_THREADS, WRK_CONNECTIONS = 2, 16
LOPSIDED = 0.75  # a keep-alive start with more than this share of connections on one worker is started again


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
        "command": " ".join(quote(a) for a in command),
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
                warmup: float, prewarm: float = 0.0, **kwargs: Any) -> dict[tuple[str, str], list[dict]]:
    """Run every (app, mode) ``rounds`` times, A B C / B C A / C A B ..., after a warm-up of each.

    Each app is idle while the others run (a quiet gap of one run or more). With ``prewarm``, every measured run
    comes right after ``prewarm`` seconds of the same load on the same app: steady state, no quiet gap before it.
    """
    for _label, server, path in apps:
        if warmup > 0:
            wrk(server, path, warmup, **kwargs)
    results: dict[tuple[str, str], list[dict]] = {}
    for round_index in range(rounds):
        shift = round_index % len(apps)
        order = apps[shift:] + apps[:shift]
        for mode in modes:
            for label, server, path in order:
                if prewarm > 0:
                    wrk(server, path, prewarm, close=(mode == "close"), **kwargs)
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

