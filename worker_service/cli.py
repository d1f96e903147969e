"""The ``worker-service`` command: a monitoring plugin, a status table, a config check, and job control.

``check`` follows the Monitoring Plugins development guidelines: one line of
output with performance data after ``|``, and exit codes 0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN (https://www.monitoring-plugins.org/doc/guidelines.html).
Like ``check_http``, it is CRITICAL when nothing answers (refused, no socket,
timeout) and when a proxy answers 5xx for the service (nginx's 502 while
gunicorn is down); UNKNOWN is what it cannot judge: a bad argument, a 404
(a wrong ``--url``), a 401/403 (a token).

Every command takes ``--url`` as ``http(s)://host[:port]`` or gunicorn's
socket, ``unix:/run/worker-service/gunicorn.sock`` (see
:mod:`.service_client`, which sends the requests).

The job-control commands (``jobs``, ``history``, ``run``, ``pause``,
``resume``) exit with the same codes: 0 done, 1 WARNING (still pending, or
already running), 2 CRITICAL (the run failed, no scheduler leads), 3 UNKNOWN
(unreachable, 401/403, unknown job, an answer that makes no sense). A
success prints one line on stdout; anything else one line on stderr; never a
traceback.

Nothing printed carries a secret or a terminal's control sequence: a URL is
shown without its user name, password and query (``--url`` may hold Basic
credentials, sent as such), and text from the service (a job's error) has
its control characters replaced.
"""

from __future__ import annotations

import getpass
import json
import re
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import click

from .control.tables import printable
from .service_client import AUTHORITY, Answer, Service, Unknown, Unreachable, shown_url
from .version import __version__
from .vocabulary import JobState, Status

__all__ = ["Unknown", "Unreachable", "fetch", "main", "shown_url"]

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
LABELS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
# Keyed by the enums (StrEnum: a word read from JSON finds its member); each must cover every word.
SERVICE_CODES = {Status.AVAILABLE: OK, Status.DEGRADED: WARNING, Status.UNAVAILABLE: CRITICAL}
JOB_CODES = {JobState.HEALTHY: OK, JobState.PENDING: OK, JobState.WARNING: WARNING, JobState.PAUSED: WARNING,
             JobState.UNHEALTHY: CRITICAL}
PERF_VALUE = {Status.AVAILABLE: 1, Status.DEGRADED: 0.5, Status.UNAVAILABLE: 0}
DEFAULT_URL = "http://127.0.0.1:8000"
EX_SOFTWARE = 70  # sysexits.h: gunicorn could not be started at all
FUTURE_TOLERANCE = 2.0  # seconds a last success may seem to lie ahead (clocks of two processes) before it is news


def _masking(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Note the credentials in ``--url``, so that no line printed from now on shows them."""
    _mask_userinfo(value)
    return value


url_option = click.option("--url", envvar="WORKER_SERVICE_URL", default=DEFAULT_URL, show_default=True,
                          callback=_masking,
                          help="The service: http(s)://host[:port] (a /health at the end is ignored), or gunicorn's "
                               "socket, unix:/run/worker-service/gunicorn.sock (env WORKER_SERVICE_URL); "
                               "user:password@ in it is sent as HTTP Basic, never printed.")
timeout_option = click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0,
                              show_default=True, help="Seconds before giving up.")
read_token_option = click.option("--token", envvar=["STATUS_TOKEN", "ADMIN_TOKEN"], default=None,
                                 help="Token that reads /status and /jobs (env STATUS_TOKEN, else ADMIN_TOKEN).")
READ_TOKENS = "STATUS_TOKEN or ADMIN_TOKEN"  # the names a 401 on a read gives
admin_token_option = click.option("--token", envvar="ADMIN_TOKEN", default=None,
                                  help="The admin token, for job control (env ADMIN_TOKEN).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the answer's JSON.")


# -- what may be printed ---------------------------------------------------------------------------------------------
_MASKED: set[str] = set()  # the credentials (user:password, password) in the URLs this process was given


def _mask_userinfo(url: str) -> None:
    """Remember the credentials ``url`` carries (``user:password``, and the password), to mask them when printed."""
    start = AUTHORITY.match(url)
    if start is None or "@" not in url[start.end():]:
        return
    userinfo = url[start.end():].rpartition("@")[0]
    password = userinfo.partition(":")[2]
    pieces = {userinfo, password, urllib.parse.unquote(userinfo), urllib.parse.unquote(password)}
    _MASKED.update(piece for piece in pieces if len(piece) >= 3)


def _safe(text: str) -> str:
    """A line as printed: the URLs' credentials masked, control characters replaced."""
    for secret in sorted(_MASKED, key=len, reverse=True):
        text = text.replace(secret, "***")
    return printable(text)


def fetch(service: Service, path: str, timeout: float, token: str | None = None, method: str = "GET",
          headers: Mapping[str, str] | None = None, token_name: str = "STATUS_TOKEN") -> tuple[int, dict[str, Any]]:
    """Send ``method`` to the service's ``path`` and return its status and JSON object.

    Raises :class:`Unknown` (:class:`Unreachable` if nothing answered) for a
    401 (naming ``token_name``), a 2xx that is not a JSON object, or any
    failure to get an answer. An error answer that is not JSON (a proxy's
    page) reads as the service's error shape, ``{"error", "message"}``, its
    message the page's first line, so every command can say what it was.
    """
    answer = service.request(path, timeout, token, method, headers)
    if answer.status == 401:
        raise Unknown(f"{answer.shown} answered 401: a valid --token ({token_name}) is required")
    if answer.body is not None:
        return answer.status, answer.body
    if answer.status >= 400 and not answer.is_json:
        return answer.status, {"error": answer.reason, "message": answer.message}
    if not answer.is_json:
        raise Unknown(f"{answer.shown} answered {answer.status_line} with a body that is not JSON")
    raise Unknown(f"{answer.shown} answered JSON of an unexpected shape")


def _finish(code: int, text: str, perfdata: str = "") -> None:
    click.echo(_safe(f"WORKER-SERVICE {LABELS[code]} - {text}" + (f" | {perfdata}" if perfdata else "")))
    sys.exit(code)


@click.group()
@click.version_option(__version__, "--version", prog_name="worker-service", message="%(prog)s %(version)s")
def main() -> None:
    """worker-service: scheduled jobs with health and status endpoints."""


class PluginCommand(click.Command):
    """A command whose bad arguments exit 3 UNKNOWN with the plugin's one line, not click's usage error (exit 2,
    which a monitor reads as CRITICAL)."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as error:
            _finish(UNKNOWN, f"bad argument: {error.format_message()} (see --help)")
            raise  # not reached: _finish exits


@main.command(cls=PluginCommand)
@url_option
@timeout_option
@read_token_option
@click.option("--job", "job_id", default=None, help="Check one job's health instead of the service (needs /status).")
@click.option("--max-age", type=click.FloatRange(min=0, min_open=True), default=None,
              help="With --job: CRITICAL unless the job's last success is at most this many seconds old "
                   "(a job that has not run yet and is not due yet is OK).")
def check(url: str, timeout: float, token: str | None, job_id: str | None, max_age: float | None) -> None:
    """Nagios/Icinga plugin: exit 0 OK, 1 WARNING, 2 CRITICAL (also: refused, timeout, a proxy's 5xx), 3 UNKNOWN."""
    if max_age is not None and job_id is None:
        _finish(UNKNOWN, "--max-age needs --job")
    try:
        service = Service.parse(url)
        if job_id is None:
            code, text, perf = _check_service(service, timeout)
        else:
            code, text, perf = _check_job(service, timeout, token, job_id, max_age)
    except Unreachable as error:  # refused, no socket, timeout: check_http's CRITICAL
        _finish(CRITICAL, str(error))
    except Unknown as error:
        _finish(UNKNOWN, str(error))
    _finish(code, text, perf)


def _check_service(service: Service, timeout: float) -> tuple[int, str, str]:
    answer = service.request("/health", timeout)
    body = answer.body or {}
    status, components = body.get("status"), body.get("components")
    if status not in SERVICE_CODES or not isinstance(components, dict):
        return (*_not_a_report(answer, "status and components", None), _time(answer))
    code = SERVICE_CODES[status]
    summary = ", ".join(f"{name} {value}" for name, value in components.items())
    perf = " ".join([*(f"{name}={PERF_VALUE.get(value, 0)};;;0;1" for name, value in components.items()),
                     _time(answer)])
    return code, f"{body.get('service', 'service')} is {status}: {summary}", perf


def _time(answer: Answer) -> str:
    """The ``time`` performance datum: how long the service (or what answered for it) took, as check_http's."""
    return f"time={answer.elapsed:.3f}s;;;0"


def _not_a_report(answer: Answer, expected: str, token_name: str | None) -> tuple[int, str]:
    """The verdict on an answer that is not the service's report, in check_http's terms.

    A 5xx is CRITICAL with what the proxy (or the service) said: nginx's 502
    when gunicorn is down, a load balancer's 503 with no server left. What
    the plugin cannot judge is UNKNOWN: a 404 (most likely a wrong --url),
    a 401/403 (a token; ``token_name`` names which, None for /health, which
    needs none), any other answer that is not the report.
    """
    said = f"{answer.shown} answered {answer.status_line}"
    if answer.status >= 500:
        return CRITICAL, f"{said}: {answer.message}"
    if answer.status == 404:
        return UNKNOWN, (f"{said} ({answer.message}): is --url the service's base URL? (http://host[:port], "
                         "or unix:/run/worker-service/gunicorn.sock)")
    if answer.status in (401, 403):
        if token_name is None:
            return UNKNOWN, (f"{said} ({answer.message}): /health needs no token, so something in front of the "
                             "service refused this client")
        if answer.status == 401:
            return UNKNOWN, f"{said}: a valid --token ({token_name}) is required"
        return UNKNOWN, f"{said} ({answer.message}): reading it takes --token with {token_name}, from an address " \
                        "the proxy lets in"
    if 200 <= answer.status < 300 and not answer.is_json:
        return UNKNOWN, f"{said} with a body that is not JSON: is --url the service's base URL?"
    if 200 <= answer.status < 300:
        return UNKNOWN, f"{answer.shown} answered JSON without {expected}"
    return UNKNOWN, f"{said}: {answer.message}"


def _check_job(service: Service, timeout: float, token: str | None, job_id: str,
               max_age: float | None) -> tuple[int, str, str]:
    answer = service.request("/status", timeout, token)
    if answer.status != 200 or answer.body is None:
        if answer.status == 200 and answer.is_json:
            raise Unknown(f"{answer.shown} answered JSON of an unexpected shape")
        return (*_not_a_report(answer, "metrics.jobs_analysis.job_health", READ_TOKENS), _time(answer))
    try:
        jobs = answer.body["metrics"]["jobs_analysis"]["job_health"]
    except (KeyError, TypeError):
        raise Unknown(f"{answer.shown} answered JSON without metrics.jobs_analysis.job_health") from None
    health = jobs.get(job_id)
    if not isinstance(health, dict) or health.get("status") not in JOB_CODES:
        raise Unknown(f"no job {job_id!r} on this service (jobs: {', '.join(sorted(jobs)) or 'none'})")
    code = JOB_CODES[health["status"]]
    text = f"job {job_id} is {health['status']}"
    due = health.get("next_execution")
    # `pending` is the service's word for a job that has not run yet and whose first run is not overdue (its next
    # run time plus the grace has not passed): a fresh install, not a job that fails to succeed.
    first_run_due = health["status"] == JobState.PENDING and due is not None
    if first_run_due:
        text += f", first run due at {re.sub(r'[.][0-9]+Z$', 'Z', str(due))}"
    elif health.get("reason"):
        text += f" ({health['reason']})"
    last_success = health.get("last_success")
    age = last_success.get("time_ago_seconds") if isinstance(last_success, dict) else None
    if max_age is not None:
        if age is None and first_run_due:
            text += f" (max age {max_age:g} s applies from its first run)"
        elif age is None:
            code, text = CRITICAL, f"{text}; it has never succeeded (max age {max_age:g} s)"
        elif age < -FUTURE_TOLERANCE:
            code = max(code, WARNING)
            text = f"{text}; last success {-age:.0f} s in the future: the wall clock went back, its age is unknown"
        elif age > max_age:
            code, text = CRITICAL, f"{text}; last success {age:.0f} s ago (max {max_age:g} s)"
        else:
            text += f"; last success {age:.0f} s ago"
    perf = (f"errors={health.get('error_count', 0)}c;;;0 successes={health.get('success_count', 0)}c;;;0 "
            f"consecutive_failures={health.get('consecutive_failures', 0)};;;0")
    if age is not None:
        perf += f" last_success_age={age:.3f}s;;{max_age if max_age is not None else ''};0"
    return code, text, f"{perf} {_time(answer)}"


@main.command()
@url_option
@timeout_option
@read_token_option
@click.option("--json", "as_json", is_flag=True, help="Print the raw /status JSON.")
def status(url: str, timeout: float, token: str | None, as_json: bool) -> None:
    """Print components and jobs as a table (colour on a terminal). Exit 3 if the service cannot be read."""
    from .status_table import render

    try:
        body = _status_body(Service.parse(url), timeout, token)
    except Unknown as error:
        _fail(UNKNOWN, str(error))
    if as_json:
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))
        return
    click.echo(render(body, colour=sys.stdout.isatty()))


def _status_body(service: Service, timeout: float, token: str | None) -> dict[str, Any]:
    """The /status body; :class:`Unknown` unless the service answered 2xx (an error body is no report to print)."""
    code, body = fetch(service, "/status", timeout, token, token_name=READ_TOKENS)
    if not 200 <= code < 300:
        detail = body.get("message") or body.get("error")
        raise Unknown(f"{service.shown('/status')} answered HTTP {code}" + (f": {str(detail)[:200]}" if detail else ""))
    return body


@main.command("check-config")
@click.option("--at-start", is_flag=True, hidden=True,
              help="As the service's start runs it: a state database that does not answer yet is only a warning.")
def check_config(at_start: bool) -> None:
    """Validate the environment and the jobs file; exit 0 if usable, 78 if not (like `nginx -t`)."""
    from .gunicorn.hooks import EX_CONFIG, validate_configuration

    warn = (lambda line: click.echo(f"worker-service: {line}", err=True)) if at_start else None
    problem = validate_configuration(warn)
    if problem:
        click.echo(f"worker-service: {problem}", err=True)
        sys.exit(EX_CONFIG)
    click.echo("worker-service: configuration OK")


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--bind", "-b", multiple=True, metavar="ADDRESS",
              help="Where gunicorn listens (repeatable): host:port, [IPv6]:port or unix:/path; sets GUNICORN_BIND "
                   "(default 127.0.0.1:8000).")
@click.option("--workers", "-w", type=click.IntRange(min=1), default=None,
              help="Worker processes; sets WEB_CONCURRENCY (default 2).")
@click.argument("gunicorn_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- GUNICORN_OPTIONS]")
def serve(bind: tuple[str, ...], workers: int | None, gunicorn_args: tuple[str, ...]) -> None:
    """Run the service: exec gunicorn with the packaged configuration, from any directory.

    Every GUNICORN_* and WEB_CONCURRENCY variable applies as documented; other
    gunicorn options go after `--`. A bad setting or jobs file: one line, exit 78.
    """
    from .serve import serve as exec_gunicorn

    try:
        exec_gunicorn(bind, workers, gunicorn_args)
    except OSError as error:
        _fail(EX_SOFTWARE, f"cannot start gunicorn: {error.strerror or error}")


# -- job control ---------------------------------------------------------------

POLL_COMMAND, POLL_RUN = 0.25, 0.5  # seconds between two reads while `run --wait` waits
POST_WAIT = 5.0  # the ?wait= of a command's POST: the server's own bound on waiting for the leader


def _fail(code: int, text: str) -> None:
    """One line on stderr (``worker-service: ...``) and exit ``code``."""
    click.echo(_safe(f"worker-service: {text}"), err=True)
    sys.exit(code)


def _done(code: int, text: str, body: Any = None, as_json: bool = False) -> None:
    """Print ``body`` as JSON (``--json``) or ``text`` (stdout when OK, else stderr), and exit ``code``."""
    if as_json and body is not None:
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))
    elif code == OK:
        click.echo(_safe(text))
    else:
        click.echo(_safe(f"worker-service: {text}"), err=True)
    sys.exit(code)


def _job_path(job_id: str, *rest: str) -> str:
    return "/".join(["", "jobs", urllib.parse.quote(job_id, safe=""), *rest])


def _message(body: Mapping[str, Any]) -> str:
    return str(body.get("message") or body.get("outcome") or body.get("error") or "no message")[:300]


def _read(url: str, path: str, timeout: float, token: str | None) -> dict[str, Any]:
    """GET a job-control read; exits 2 on 503 (the store), 3 on anything but 2xx."""
    service = Service.parse(url)
    code, body = fetch(service, path, timeout, token, token_name=READ_TOKENS)
    if code == 503:
        _fail(CRITICAL, f"{service.shown(path)} answered HTTP 503: {_message(body)}")
    if not 200 <= code < 300:
        _fail(UNKNOWN, f"{service.shown(path)} answered HTTP {code}: {_message(body)}")
    return body


@main.command()
@url_option
@timeout_option
@read_token_option
@json_option
def jobs(url: str, timeout: float, token: str | None, as_json: bool) -> None:
    """List the jobs: health, paused (by whom), next run, last run."""
    from .control.tables import render_jobs

    try:
        body = _read(url, "/jobs", timeout, token)
    except Unknown as error:
        _fail(UNKNOWN, str(error))
    click.echo(json.dumps(body, indent=2, ensure_ascii=False) if as_json else render_jobs(body, sys.stdout.isatty()))


@main.command()
@click.argument("job_id")
@url_option
@timeout_option
@read_token_option
@json_option
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Show only the newest N runs.")
def history(job_id: str, url: str, timeout: float, token: str | None, as_json: bool, limit: int | None) -> None:
    """A job's last runs: when, how long, the outcome, scheduled or who asked, the error."""
    from .control.tables import render_history

    try:
        body = _read(url, _job_path(job_id), timeout, token)
    except Unknown as error:
        _fail(UNKNOWN, str(error))
    if as_json:
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        click.echo(render_history(body, sys.stdout.isatty(), limit))


def _default_requester() -> str:
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
        return WARNING, f"{job_id}: {action} refused: {_message(body)}"
    if status == 503:
        return CRITICAL, f"{job_id}: {action} not applied: {_message(body)}"
    if status == 404:
        return UNKNOWN, f"{job_id}: {_message(body)}"
    return UNKNOWN, f"{job_id}: {action} answered HTTP {status}: {_message(body)}"


def _send_command(service: Service, timeout: float, token: str | None, job_id: str, action: str,
                  requested_by: str | None, wait: float = POST_WAIT) -> tuple[int, dict[str, Any]]:
    target = _job_path(job_id, action) + f"?wait={wait:g}"
    return fetch(service, target, timeout + wait, token, "POST",
                 {"X-Requested-By": requested_by or _default_requester()}, token_name="ADMIN_TOKEN")


def _control(action: str, job_id: str, url: str, timeout: float, token: str | None, as_json: bool,
             requested_by: str | None) -> None:
    try:
        status, body = _send_command(Service.parse(url), timeout, token, job_id, action, requested_by)
    except Unknown as error:
        _fail(UNKNOWN, str(error))
    code, text = _command_verdict(job_id, action, status, body)
    _done(code, text, body, as_json)


def control_command(function: Callable[..., None]) -> click.Command:
    """A job-control command (run, pause, resume): JOB_ID, --url, --timeout, the admin --token, --json and --as."""
    for option in (requested_by_option, json_option, admin_token_option, timeout_option, url_option,
                   click.argument("job_id")):
        function = option(function)
    return main.command()(function)


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
            _done(code, text, body, as_json)
        code, text, entry = _await_run(service, timeout, token, job_id, body, deadline)
    except Unknown as error:
        _fail(UNKNOWN, str(error))
    _done(code, text, {"command": body, "run": entry}, as_json)


def _await_command(service: Service, timeout: float, token: str | None, job_id: str, body: dict[str, Any],
                   deadline: float) -> tuple[int, dict[str, Any]]:
    """Poll a queued command until the leader finished it (its status) or ``deadline`` (202)."""
    target = _job_path(job_id, "commands", str(body.get("command_id")))
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
    target, command_id = _job_path(job_id), command["command_id"]
    while True:
        code, job = fetch(service, target, timeout, token, token_name="ADMIN_TOKEN")
        if code != 200:
            return UNKNOWN, f"{service.shown(target)} answered HTTP {code}: {_message(job)}", None
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


# -- alerts --------------------------------------------------------------------

@main.group(invoke_without_command=True)
@url_option
@timeout_option
@read_token_option
@json_option
@click.pass_context
def alerts(ctx: click.Context, url: str, timeout: float, token: str | None, as_json: bool) -> None:
    """List the recent alert deliveries (from /status); `alerts test` sends a test notification."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        body = _status_body(Service.parse(url), timeout, token)
    except Unknown as error:
        _fail(UNKNOWN, str(error))
    block = (body.get("metrics") or {}).get("alerts")
    if not isinstance(block, dict):
        _fail(UNKNOWN, "this service reports no alerts (an older version?)")
    if as_json:
        click.echo(json.dumps(block, indent=2, ensure_ascii=False))
        return
    for line in _alerts_text(block):
        click.echo(_safe(line))


def _alerts_text(block: Mapping[str, Any]) -> list[str]:
    """The alerts block as a few lines for people."""
    if not block.get("enabled"):
        return ["no alert channel is configured (ALERT_WEBHOOK_URLS, ALERT_APPRISE_URLS)"]
    lines = ["channels: " + ", ".join(f"{c['id']} {c['url']}" for c in block.get("channels", [])),
             f"pending: {block.get('pending')}, sent: {block.get('sent')}, failed: {block.get('failed')}"]
    if block.get("error"):
        lines.append(f"outbox not readable: {block['error']}")
    for alert in block.get("firing", []):
        lines.append(f"firing since {alert['since']}: {alert['kind']} {alert['subject']} is {alert['state']}"
                     f" ({alert.get('reason') or 'no reason'})")
    lines.append(f"{'created':<24} {'status':<9} {'subject':<28} {'channel':<18} {'outcome':<8} tries  last error")
    for row in block.get("recent", []):
        subject = f"{row.get('kind')} {row.get('subject')}"
        lines.append(f"{str(row.get('created_at')):<24} {row['status']:<9} {printable(subject)[:28]:<28} "
                     f"{row['channel']:<18} {row['outcome']:<8} {row['attempts']:<6} {row.get('last_error') or ''}")
    return lines


@alerts.command("test")
def alerts_test() -> None:
    """Send a test notification through every configured channel; print each result. Exit 0 if all accepted, 2 if not.

    Reads the service's settings from the environment, as the service does
    (run it with the service's environment file), and sends from here: it
    checks the channels themselves, whether or not the service runs.
    """
    from .alerts import AlertSettings, build_channels
    from .alerts import payload as payloads
    from .config import ConfigError, load_settings
    from .host_identity import host_id, host_label

    try:
        settings = AlertSettings.from_settings(load_settings())
    except ConfigError as error:
        _fail(UNKNOWN, str(error))
    channels = build_channels(settings)
    if not channels:
        _fail(UNKNOWN, "no alert channel is configured (ALERT_WEBHOOK_URLS, ALERT_APPRISE_URLS)")
    now = time.time()
    body = payloads.build(settings, key="test", kind="test", subject="alerts test", firing=True, state="test",
                          previous_state=None, reason=f"a test notification sent by {_default_requester()}",
                          host=host_label(host_id()) or "", at=now, since=now, test=True)
    failed = 0
    for channel in channels:
        result = channel.send(payloads.encode(body))
        failed += not result.accepted
        verdict = "accepted" if result.accepted else "FAILED"
        click.echo(_safe(f"{channel.id} {channel.label}: {verdict} ({result.detail})"))
    sys.exit(CRITICAL if failed else OK)


if __name__ == "__main__":  # `python -m worker_service.cli`, as gunicorn.conf.py's on_starting runs it
    main()
