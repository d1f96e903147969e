"""The ``worker-service`` command: a monitoring plugin, a status table, and a config check.

``check`` follows the Monitoring Plugins development guidelines: one line of
output with performance data after ``|``, and exit codes 0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN (https://www.monitoring-plugins.org/doc/guidelines.html).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import click

from .vocabulary import JobState, Status

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
LABELS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
# Keyed by the enums (StrEnum: a word read from JSON finds its member); each must cover every word.
SERVICE_CODES = {Status.AVAILABLE: OK, Status.DEGRADED: WARNING, Status.UNAVAILABLE: CRITICAL}
JOB_CODES = {JobState.HEALTHY: OK, JobState.PENDING: OK, JobState.WARNING: WARNING, JobState.PAUSED: WARNING,
             JobState.UNHEALTHY: CRITICAL}
PERF_VALUE = {Status.AVAILABLE: 1, Status.DEGRADED: 0.5, Status.UNAVAILABLE: 0}
DEFAULT_URL = "http://127.0.0.1:8000"
FUTURE_TOLERANCE = 2.0  # seconds a last success may seem to lie ahead (clocks of two processes) before it is news

url_option = click.option("--url", envvar="WORKER_SERVICE_URL", default=DEFAULT_URL, show_default=True,
                          help="Base URL of the service (env WORKER_SERVICE_URL).")
token_option = click.option("--token", envvar="STATUS_TOKEN", default=None,
                            help="Bearer token for /status (env STATUS_TOKEN).")
timeout_option = click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0,
                              show_default=True, help="Seconds before giving up (then UNKNOWN).")


class Unknown(Exception):
    """The service's state cannot be told; the message says why."""


def fetch(url: str, timeout: float, token: str | None = None) -> tuple[int, Any]:
    """GET ``url`` and parse JSON; any failure to get a JSON object raises :class:`Unknown`.

    ``timeout`` bounds the whole call (name lookup included) with an interval
    timer, as monitoring plugins do: socket timeouts alone apply per operation.
    """
    try:
        request = urllib.request.Request(url, headers={"Accept": "application/json",
                                                       "User-Agent": "worker-service-check"})
    except ValueError as error:
        raise Unknown(f"bad --url {url!r}: {error}") from None
    if token:
        request.add_unredirected_header("Authorization", f"Bearer {token}")  # never sent on to a redirect
    try:
        with _deadline(timeout), urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except TimeoutError:
        raise Unknown(f"no answer from {url} within {timeout:g} s") from None
    except (http.client.HTTPException, ValueError) as error:
        raise Unknown(f"{url} did not answer HTTP: {type(error).__name__}: {error}") from None
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, TimeoutError) or "timed out" in str(reason):
            raise Unknown(f"no answer from {url} within {timeout:g} s") from None
        raise Unknown(f"cannot reach {url}: {getattr(reason, 'strerror', None) or reason}") from None
    except (ConnectionError, OSError) as error:
        raise Unknown(f"cannot reach {url}: {error}") from None
    if status == 401:
        raise Unknown(f"{url} answered 401: a valid --token (STATUS_TOKEN) is required")
    try:
        body = json.loads(raw)
    except ValueError:
        raise Unknown(f"{url} answered HTTP {status} with a body that is not JSON") from None
    if not isinstance(body, dict):
        raise Unknown(f"{url} answered JSON of an unexpected shape")
    return status, body


@contextlib.contextmanager
def _deadline(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the main thread after ``seconds``."""

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _finish(code: int, text: str, perfdata: str = "") -> None:
    click.echo(f"WORKER-SERVICE {LABELS[code]} - {text}" + (f" | {perfdata}" if perfdata else ""))
    sys.exit(code)


@click.group()
def main() -> None:
    """worker-service: scheduled jobs with health and status endpoints."""


@main.command()
@url_option
@timeout_option
@token_option
@click.option("--job", "job_id", default=None, help="Check one job's health instead of the service (needs /status).")
@click.option("--max-age", type=click.FloatRange(min=0, min_open=True), default=None,
              help="With --job: CRITICAL unless the job's last success is at most this many seconds old.")
def check(url: str, timeout: float, token: str | None, job_id: str | None, max_age: float | None) -> None:
    """Nagios/Icinga plugin: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN."""
    if max_age is not None and job_id is None:
        _finish(UNKNOWN, "--max-age needs --job")
    started = time.monotonic()
    base = url.rstrip("/")
    try:
        if job_id is None:
            code, text, perf = _check_service(base, timeout)
        else:
            code, text, perf = _check_job(base, timeout, token, job_id, max_age)
    except Unknown as error:
        _finish(UNKNOWN, str(error))
    _finish(code, text, f"{perf} time={time.monotonic() - started:.3f}s;;;0".strip())


def _check_service(base: str, timeout: float) -> tuple[int, str, str]:
    _, body = fetch(base + "/health", timeout)
    status, components = body.get("status"), body.get("components")
    if status not in SERVICE_CODES or not isinstance(components, dict):
        raise Unknown(f"{base}/health answered JSON without status and components")
    code = SERVICE_CODES[status]
    summary = ", ".join(f"{name} {value}" for name, value in components.items())
    perf = " ".join(f"{name}={PERF_VALUE.get(value, 0)};;;0;1" for name, value in components.items())
    return code, f"{body.get('service', 'service')} is {status}: {summary}", perf


def _check_job(base: str, timeout: float, token: str | None, job_id: str, max_age: float | None) -> tuple[int, str, str]:
    _, body = fetch(base + "/status", timeout, token)
    try:
        jobs = body["metrics"]["jobs_analysis"]["job_health"]
    except (KeyError, TypeError):
        raise Unknown(f"{base}/status answered JSON without metrics.jobs_analysis.job_health") from None
    health = jobs.get(job_id)
    if not isinstance(health, dict) or health.get("status") not in JOB_CODES:
        raise Unknown(f"no job {job_id!r} on this service (jobs: {', '.join(sorted(jobs)) or 'none'})")
    code = JOB_CODES[health["status"]]
    text = f"job {job_id} is {health['status']}"
    if health.get("reason"):
        text += f" ({health['reason']})"
    last_success = health.get("last_success")
    age = last_success.get("time_ago_seconds") if isinstance(last_success, dict) else None
    if max_age is not None:
        if age is None:
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
    return code, text, perf


@main.command()
@url_option
@timeout_option
@token_option
@click.option("--json", "as_json", is_flag=True, help="Print the raw /status JSON.")
def status(url: str, timeout: float, token: str | None, as_json: bool) -> None:
    """Print components and jobs as a table (colour on a terminal). Exit 3 if the service cannot be read."""
    from .status_table import render

    try:
        body = _status_body(url.rstrip("/") + "/status", timeout, token)
    except Unknown as error:
        click.echo(f"worker-service: {error}", err=True)
        sys.exit(UNKNOWN)
    if as_json:
        click.echo(json.dumps(body, indent=2, ensure_ascii=False))
        return
    click.echo(render(body, colour=sys.stdout.isatty()))


def _status_body(url: str, timeout: float, token: str | None) -> dict[str, Any]:
    """The /status body; :class:`Unknown` unless the service answered 2xx (an error body is no report to print)."""
    code, body = fetch(url, timeout, token)
    if not 200 <= code < 300:
        detail = body.get("message") or body.get("error")
        raise Unknown(f"{url} answered HTTP {code}" + (f": {str(detail)[:200]}" if detail else ""))
    return body


@main.command("check-config")
def check_config() -> None:
    """Validate the environment and the jobs file; exit 0 if usable, 78 if not (like `nginx -t`)."""
    from .scheduler.gunicorn_hooks import EX_CONFIG, validate_configuration

    problem = validate_configuration()
    if problem:
        click.echo(f"worker-service: {problem}", err=True)
        sys.exit(EX_CONFIG)
    click.echo("worker-service: configuration OK")


if __name__ == "__main__":  # `python -m worker_service.cli`, as gunicorn.conf.py's on_starting runs it
    main()
