"""Job control: ``jobs`` and ``history`` read, ``run``, ``pause`` and ``resume`` ask the leader (admin token).

Exit codes as the plugin's: 0 done, 1 WARNING (still pending, or already
running), 2 CRITICAL (the run failed, no scheduler leads), 3 UNKNOWN.
"""

from __future__ import annotations

import getpass
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import click

from ..service_client import Service, Unknown
from .http import (
    admin_token_option,
    fetch,
    job_path,
    json_option,
    message,
    read,
    read_token_option,
    timeout_option,
    url_option,
)
from .output import CRITICAL, OK, UNKNOWN, WARNING, done, fail, print_json
from .tables import render_history, render_jobs

POLL_COMMAND, POLL_RUN = 0.25, 0.5  # seconds between two reads while `run --wait` waits
POST_WAIT = 5.0  # the ?wait= of a command's POST: the server's own bound on waiting for the leader



@click.command()
@url_option
@timeout_option
@read_token_option
@json_option
def jobs(url: str, timeout: float, token: str | None, as_json: bool) -> None:
    """List the jobs: health, paused (by whom), next run, last run."""
    try:
        body = read(url, "/jobs", timeout, token)
    except Unknown as error:
        fail(UNKNOWN, str(error))
    if as_json:
        print_json(body)
        return
    click.echo(render_jobs(body, sys.stdout.isatty()))


@click.command()
@click.argument("job_id")
@url_option
@timeout_option
@read_token_option
@json_option
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show only the newest N runs.")
def history(job_id: str, url: str, timeout: float, token: str | None, as_json: bool, limit: int | None) -> None:
    """A job's last runs: when, how long, the outcome, scheduled or who asked, the error."""
    try:
        body = read(url, job_path(job_id), timeout, token)
    except Unknown as error:
        fail(UNKNOWN, str(error))
    if as_json:
        print_json(body)
    else:
        click.echo(render_history(body, sys.stdout.isatty(), limit))


def default_requester() -> str:
    """``user@host`` of whoever runs the command (the service keeps it with the command)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no USER and no passwd entry (a bare container)
        user = "cli"
    return f"{user}@{socket.gethostname()}"


requested_by_option = click.option("--as", "requested_by", default=None, metavar="NAME",
                                   help="Who asks, kept with the command (default: user@host).")


def _command_verdict(job_id: str, action: str, status: int, body: Mapping[str, Any]) -> tuple[int, str]:
    """The exit code and the line a command's answer (POST, or its state polled) maps to."""
    command = body.get("command_id")
    if status == 200:
        return OK, f"{job_id}: {action}: {body.get('outcome') or 'done'} (command {command})"
    if status == 202:
        return WARNING, (f"{job_id}: {action} queued as command {command}, not applied yet: the leader has not "
                         f"taken it (poll {body.get('poll')})")
    if status == 409:
        return WARNING, f"{job_id}: {action} refused: {message(body)}"
    if status == 503:
        return CRITICAL, f"{job_id}: {action} not applied: {message(body)}"
    if status == 404:
        return UNKNOWN, f"{job_id}: {message(body)}"
    return UNKNOWN, f"{job_id}: {action} answered HTTP {status}: {message(body)}"


def _send_command(service: Service, timeout: float, token: str | None, job_id: str, action: str,
                  requested_by: str | None, wait: float = POST_WAIT) -> tuple[int, dict[str, Any]]:
    target = job_path(job_id, action) + f"?wait={wait:g}"
    return fetch(service, target, timeout + wait, token, "POST",
                 {"X-Requested-By": requested_by or default_requester()}, token_name="ADMIN_TOKEN")


def _control(action: str, job_id: str, url: str, timeout: float, token: str | None, as_json: bool,
             requested_by: str | None) -> None:
    try:
        status, body = _send_command(Service.parse(url), timeout, token, job_id, action, requested_by)
    except Unknown as error:
        fail(UNKNOWN, str(error))
    code, text = _command_verdict(job_id, action, status, body)
    done(code, text, body, as_json)


def control_command(function: Callable[..., None]) -> click.Command:
    """A job-control command (run, pause, resume): JOB_ID, --url, --timeout, the admin --token, --json and --as."""
    for option in (requested_by_option, json_option, admin_token_option, timeout_option, url_option,
                   click.argument("job_id")):
        function = option(function)
    return click.command()(function)


@control_command
@click.option("--wait", "wait_for_run", is_flag=True,
              help="Wait until the run finished, and exit by its outcome (0 success, 2 failed).")
@click.option("--max-wait", type=click.FloatRange(min=0, min_open=True), default=3600.0, show_default=True,
              help="With --wait: seconds before giving up (then WARNING; the run goes on).")
def run(job_id: str, url: str, timeout: float, token: str | None, as_json: bool, requested_by: str | None,
        wait_for_run: bool, max_wait: float) -> None:
    """Run a job now, through the leader (never beyond its max_instances)."""
    if not wait_for_run:
        _control("run", job_id, url, timeout, token, as_json, requested_by)
    deadline = time.monotonic() + max_wait
    try:
        service = Service.parse(url)
        status, body = _send_command(service, timeout, token, job_id, "run", requested_by, min(POST_WAIT, max_wait))
        if status == 202:
            status, body = _await_command(service, timeout, token, job_id, body, deadline)
        code, text = _command_verdict(job_id, "run", status, body)
        if code != OK or body.get("command_id") is None:
            done(code, text, body, as_json)
        code, text, entry = _await_run(service, timeout, token, job_id, body, deadline)
    except Unknown as error:
        fail(UNKNOWN, str(error))
    done(code, text, {"command": body, "run": entry}, as_json)


def _await_command(service: Service, timeout: float, token: str | None, job_id: str, body: dict[str, Any],
                   deadline: float) -> tuple[int, dict[str, Any]]:
    """Poll a queued command until the leader finished it (its status) or ``deadline`` (202)."""
    target = job_path(job_id, "commands", str(body.get("command_id")))
    while time.monotonic() < deadline:
        time.sleep(min(POLL_COMMAND, max(deadline - time.monotonic(), 0)))
        code, polled = fetch(service, target, timeout, token, token_name="ADMIN_TOKEN")
        if code != 200:
            return code, polled
        if polled.get("state") != "pending":
            return int(polled.get("status") or 200), polled
        body = polled
    return 202, body


def _await_run(service: Service, timeout: float, token: str | None, job_id: str, command: dict[str, Any],
               deadline: float) -> tuple[int, str, dict[str, Any] | None]:
    """Poll the job's history until the run this command started is there; its verdict, line and entry."""
    target, command_id = job_path(job_id), command["command_id"]
    while True:
        code, job = fetch(service, target, timeout, token, token_name="ADMIN_TOKEN")
        if code != 200:
            return UNKNOWN, f"{service.shown(target)} answered HTTP {code}: {message(job)}", None
        entry = next((run for run in job.get("history") or [] if run.get("command_id") == command_id), None)
        if entry is not None:
            return _run_verdict(job_id, entry)
        if time.monotonic() >= deadline:
            return WARNING, f"{job_id}: the run of command {command_id} has not finished yet; see " \
                            f"`worker-service history {job_id}`", None
        time.sleep(min(POLL_RUN, max(deadline - time.monotonic(), 0)))


def _run_verdict(job_id: str, entry: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
    duration = entry.get("duration_seconds")
    took = "" if duration is None else f" in {duration:.3f} s"
    if entry.get("outcome") == "success":
        return OK, f"{job_id}: run succeeded{took} (command {entry.get('command_id')})", entry
    error = entry.get("error") or {}
    detail = f": {error.get('type')}: {error.get('message')}" if error else ""
    return CRITICAL, f"{job_id}: run {entry.get('outcome')}{took}{detail}"[:500], entry


@control_command
def pause(job_id: str, url: str, timeout: float, token: str | None, as_json: bool, requested_by: str | None) -> None:
    """Pause a job until it is resumed (the pause outlives reloads and restarts)."""
    _control("pause", job_id, url, timeout, token, as_json, requested_by)


@control_command
def resume(job_id: str, url: str, timeout: float, token: str | None, as_json: bool, requested_by: str | None) -> None:
    """Resume a paused job."""
    _control("resume", job_id, url, timeout, token, as_json, requested_by)


COMMANDS = (jobs, history, run, pause, resume)
