"""Render a /status body as tables for a person at a terminal."""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from ..vocabulary import HostState, JobState, RunState, Status
from .tables import printable, span

COLOURS = {
    Status.AVAILABLE: "green", JobState.HEALTHY: "green", "running": "green",
    Status.DEGRADED: "yellow", JobState.WARNING: "yellow", JobState.PENDING: "cyan", JobState.PAUSED: "cyan",
    Status.UNAVAILABLE: "red", JobState.UNHEALTHY: "red", "stopped": "red", "unknown": "red", "none": "red",
    HostState.ACTIVE: "green", HostState.STOPPING: "yellow", HostState.EXPIRED: "red", RunState.WAITING: "cyan",
}
RUNNING_SHOWN = 20  # runs in flight printed; the rest are counted
_BOLD = (Status.UNAVAILABLE, JobState.UNHEALTHY)


def _paint(word: str, colour: bool) -> str:
    return click.style(word, fg=COLOURS.get(word), bold=word in _BOLD) if colour else word


def _ago(timestamp: str | None, now: dt.datetime) -> str:
    if not timestamp:
        return "-"
    moment = dt.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    seconds = (now - moment).total_seconds()
    return span(abs(seconds)) + (" ago" if seconds >= 0 else " from now")


def _table(headers: list[str], rows: list[list[str]], colour_columns: set[int], colour: bool) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)).rstrip()]
    for row in rows:
        cells = []
        for index, (cell, width) in enumerate(zip(row, widths, strict=False)):
            padded = str(cell).ljust(width)
            cells.append(padded.replace(str(cell), _paint(str(cell), colour), 1) if index in colour_columns else padded)
        lines.append("  ".join(cells).rstrip())
    return lines


def _process(process: dict[str, Any] | None) -> str:
    return "-" if not process else f"{process.get('host') or '?'} pid {process.get('pid') or '?'}"


def _fleet_lines(fleet: dict[str, Any], now: dt.datetime, colour: bool) -> list[str]:
    """In fleet mode: the lease holder (host, pid, epoch, expiry) and the last change of leader; nothing on one host."""
    if fleet.get("mode") != "fleet":
        return []
    leader = fleet.get("leader")
    if fleet.get("error"):
        lines = [f"leader: {_paint('unknown', colour)}  ({fleet['error']})"]
    elif leader is None:
        lines = [f"leader: {_paint('none', colour)}  no host holds a live scheduler lease"]
    else:
        expires = leader.get("lease_expires_in_seconds")
        lines = [f"leader: {_process(leader)}  epoch {leader.get('epoch')}"
                 f"  lease expires {'-' if expires is None else f'in {expires:.1f}s'}"
                 f" ({leader.get('lease_expires_at') or '-'})  since {_ago(leader.get('since'), now)}"]
    changes = fleet.get("changes") or []
    if changes:
        last = changes[0]
        lines.append(f"last change: {_ago(last.get('at'), now)}  {last.get('reason')}  {_process(last.get('from'))}"
                     f" -> {_process(last.get('to'))}  (epoch {last.get('epoch')})")
    return lines


def _hosts_lines(hosts: list[dict[str, Any]], colour: bool) -> list[str]:
    """Each executing host (a process: a reload shows two for a moment): state, runs held of its threads, heartbeat."""
    rows = []
    for host in hosts:
        age = host.get("heartbeat_age_seconds")
        rows.append([printable(str(host.get("host"))), str(host.get("pid")), str(host.get("state")),
                     f"{host.get('claimed', 0)}/{host.get('threads', 0)}", "-" if age is None else f"{age:.1f}s ago"])
    if not rows:
        return []
    return ["", *_table(["HOST", "PID", "STATE", "CLAIMED/THREADS", "HEARTBEAT"], rows, {2}, colour)]


def _running_lines(running: list[dict[str, Any]], now: dt.datetime, colour: bool) -> list[str]:
    """The runs in flight, oldest first (at most :data:`RUNNING_SHOWN`), and the host running each."""
    rows = [[printable(str(run.get("job_id"))), str(run.get("run_id")), str(run.get("state")),
             "-" if run.get("host") is None else f"{printable(str(run['host']))} pid {run.get('pid')}",
             _ago(run.get("started_at"), now)] for run in running[:RUNNING_SHOWN]]
    if not rows:
        return []
    more = [f"... and {len(running) - RUNNING_SHOWN} more"] if len(running) > RUNNING_SHOWN else []
    return ["", *_table(["RUNNING", "RUN", "STATE", "HOST", "STARTED"], rows, {2}, colour), *more]


def render(body: dict[str, Any], colour: bool) -> str:
    """The service line, then components, the scheduler (and in fleet mode its lease), jobs, hosts and runs in flight."""
    now = dt.datetime.now(dt.UTC)
    metrics = body.get("metrics", {})
    lines = [f"{body.get('service', 'service')}: {_paint(body.get('status', '?'), colour)}"
             f"   uptime {metrics.get('uptime_formatted', '?')}"]
    dependencies = metrics.get("dependencies", {})
    rows = []
    for name, status in body.get("components", {}).items():
        detail = dependencies.get(name, {})
        latency = detail.get("latency_seconds")
        rows.append([name, status, detail.get("backend", "-"),
                     "-" if latency is None else f"{latency * 1000:.1f}ms", printable(detail.get("reason") or "")])
    lines += ["", *_table(["COMPONENT", "STATUS", "BACKEND", "LATENCY", "REASON"], rows, {1}, colour)]
    scheduler = metrics.get("scheduler_status", {})
    age = scheduler.get("heartbeat_age_seconds")
    lines += ["", f"scheduler: {_paint(scheduler.get('state', '?'), colour)}  pid {scheduler.get('pid') or '-'}"
                  f" on {scheduler.get('hostname') or '-'}  heartbeat {'-' if age is None else f'{age:.1f}s ago'}"
                  f"  timezone {scheduler.get('timezone', '?')}"]
    lines += _fleet_lines(metrics.get("fleet") or {}, now, colour)
    health = metrics.get("jobs_analysis", {}).get("job_health", {})
    rows = []
    for job in metrics.get("scheduled_jobs", []):
        state = health.get(job["id"], {}).get("status", "?")
        average = job.get("avg_execution_time")
        runs = job.get("success_count", 0) + job.get("error_count", 0)
        last = health.get(job["id"], {}).get("last_execution") or {}
        rows.append([printable(job["id"]), state, _ago(last.get("timestamp"), now), _ago(job.get("next_run_time"), now),
                     "-" if average is None else f"{average:.3f}s", f"{job.get('error_count', 0)}/{runs}"])
    lines += ["", *_table(["JOB", "STATE", "LAST RUN", "NEXT RUN", "AVG", "ERRORS/RUNS"], rows, {1}, colour)]
    lines += _hosts_lines(body.get("hosts") or [], colour)
    lines += _running_lines(body.get("running") or [], now, colour)
    return "\n".join(lines)
