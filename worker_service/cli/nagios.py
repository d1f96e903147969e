"""``worker-service check``: a Nagios/Icinga plugin for the service, or for one of its jobs.

It follows the Monitoring Plugins development guidelines: one line of
output with performance data after ``|``, and exit codes 0 OK, 1 WARNING,
2 CRITICAL, 3 UNKNOWN (https://www.monitoring-plugins.org/doc/guidelines.html).
Like ``check_http``, it is CRITICAL when nothing answers (refused, no socket,
timeout) and when a proxy answers 5xx for the service (nginx's 502 while
gunicorn is down); UNKNOWN is what it cannot judge: a bad argument, a 404
(a wrong ``--url``), a 401/403 (a token).
"""

from __future__ import annotations

import re
import sys
from typing import Any, NoReturn

import click

from ..service_client import Answer, Service, Unknown, Unreachable
from ..vocabulary import JobState, Status
from .http import READ_TOKENS, read_token_option, timeout_option, url_option
from .output import CRITICAL, LABELS, OK, UNKNOWN, WARNING, safe

# Keyed by the enums (StrEnum: a word read from JSON finds its member); each must cover every word.
SERVICE_CODES = {Status.AVAILABLE: OK, Status.DEGRADED: WARNING, Status.UNAVAILABLE: CRITICAL}
JOB_CODES = {JobState.HEALTHY: OK, JobState.PENDING: OK, JobState.WARNING: WARNING, JobState.PAUSED: WARNING,
             JobState.UNHEALTHY: CRITICAL}
PERF_VALUE = {Status.AVAILABLE: 1, Status.DEGRADED: 0.5, Status.UNAVAILABLE: 0}
FUTURE_TOLERANCE = 2.0  # seconds a last success may seem to lie ahead (clocks of two processes) before it is news


def _finish(code: int, text: str, perfdata: str = "") -> NoReturn:
    click.echo(safe(f"WORKER-SERVICE {LABELS[code]} - {text}" + (f" | {perfdata}" if perfdata else "")))
    sys.exit(code)


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


@click.command(cls=PluginCommand)
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
