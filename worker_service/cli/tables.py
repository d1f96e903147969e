"""Render GET /jobs and a job's history (GET /jobs/<id>) as text tables for the CLI (no Flask here).

:mod:`.status_table` renders /status with the helpers below (:func:`printable`, :func:`span`).

Every text from the service is printed through :func:`printable`: no control character reaches the terminal.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from ..logfmt import CONTROL_CHARACTERS

_COLOURS = {"healthy": "green", "success": "green", "warning": "yellow", "pending": "cyan", "paused": "cyan",
            "unhealthy": "red", "error": "red", "crashed": "red", "killed": "red", "missed": "yellow", "lost": "yellow"}


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: a tab or line break becomes a space, any other control character ``?``.

    A job's error text is anyone's text: it must not move the cursor or recolour the terminal. The characters are
    those the log lines escape (:data:`~worker_service.logfmt.CONTROL_CHARACTERS`).
    """
    return CONTROL_CHARACTERS.sub(lambda match: " " if match.group() in "\t\n\r" else "?", text)


def _when(timestamp: str | None, now: dt.datetime) -> str:
    """``12s ago`` / ``in 3m`` for an ISO-8601 time, ``-`` for none."""
    if not timestamp:
        return "-"
    try:
        moment = dt.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return timestamp
    seconds = (now - moment).total_seconds()
    return f"{span(abs(seconds))} ago" if seconds >= 0 else f"in {span(abs(seconds))}"


def span(seconds: float) -> str:
    """A length of time as a person reads it at a glance: ``42s``, ``5m``, ``1.5h``, ``2.0d``."""
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _table(headers: list[str], rows: list[list[str]], painted: set[int], colour: bool) -> str:
    rows = [[printable(cell) for cell in row] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        cells = []
        for index, (cell, width) in enumerate(zip(row, widths, strict=True)):
            padded = cell.ljust(width)
            if colour and index in painted and cell in _COLOURS:
                padded = padded.replace(cell, click.style(cell, fg=_COLOURS[cell]), 1)
            cells.append(padded)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def render_jobs(body: dict[str, Any], colour: bool, now: dt.datetime | None = None) -> str:
    """GET /jobs as a table: id, health, paused (and by whom), next run, last run and its outcome."""
    now = now or dt.datetime.now(dt.UTC)
    rows = []
    for job in body.get("jobs") or []:
        paused_by = job.get("paused_by")
        paused = f"yes ({paused_by['by']})" if paused_by else ("yes" if job.get("paused") else "-")
        last = "-" if not job.get("last_run_at") else f"{job.get('last_outcome') or '?'} {_when(job['last_run_at'], now)}"
        rows.append([str(job.get("id")), str(job.get("health")), paused, _when(job.get("next_run"), now), last,
                     str(job.get("health_reason") or "")])
    if not rows:
        return "no jobs are published (is a scheduler running?)"
    return _table(["JOB", "HEALTH", "PAUSED", "NEXT RUN", "LAST RUN", "REASON"], rows, {1}, colour)


def render_history(body: dict[str, Any], colour: bool, limit: int | None = None,
                   now: dt.datetime | None = None) -> str:
    """A job's runs, newest first (started, duration, outcome, scheduled or by whom, error), then its state."""
    now = now or dt.datetime.now(dt.UTC)
    head = f"{body.get('id')} ({body.get('name')}): {body.get('health')}"
    if body.get("health_reason") and body["health_reason"] != body.get("health"):
        head += f" - {body['health_reason']}"
    if body.get("paused_by"):
        head += f"; paused by {body['paused_by'].get('by')} {_when(body['paused_by'].get('at'), now)}"
    head += f"; next run {_when(body.get('next_run'), now)}"
    head = printable(head)
    runs = (body.get("history") or [])[:limit]
    rows = []
    for run in runs:
        duration = run.get("duration_seconds")
        who = "scheduled" if run.get("trigger") != "manual" else f"manual ({run.get('requested_by') or '?'})"
        error = run.get("error")
        rows.append([_when(run.get("started_at") or run.get("finished_at"), now),
                     "-" if duration is None else f"{duration:.3f}s", str(run.get("outcome")), who,
                     "" if not error else f"{error.get('type')}: {error.get('message')}"[:120]])
    if not rows:
        return head + "\nno runs yet"
    return head + "\n" + _table(["STARTED", "DURATION", "OUTCOME", "TRIGGER", "ERROR"], rows, {2}, colour)
