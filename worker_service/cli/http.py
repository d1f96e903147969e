"""Talking to the service: the options that name it (``--url``, ``--timeout``, ``--token``) and :func:`fetch`."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

import click

from ..service_client import Service, Unknown
from .output import CRITICAL, UNKNOWN, fail, mask_userinfo

DEFAULT_URL = "http://127.0.0.1:8000"
READ_TOKENS = "STATUS_TOKEN or ADMIN_TOKEN"  # the names a 401 on a read gives


def _masking(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Note the credentials in ``--url``, so that no line printed from now on shows them."""
    mask_userinfo(value)
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
admin_token_option = click.option("--token", envvar="ADMIN_TOKEN", default=None,
                                  help="The admin token, for job control (env ADMIN_TOKEN).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the answer's JSON.")


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


def message(body: Mapping[str, Any]) -> str:
    """What an answer says, in one short piece: its message, outcome or error."""
    return str(body.get("message") or body.get("outcome") or body.get("error") or "no message")[:300]


def job_path(job_id: str, *rest: str) -> str:
    """``/jobs/<id>[/rest...]``, the id quoted."""
    return "/".join(["", "jobs", urllib.parse.quote(job_id, safe=""), *rest])


def read(url: str, path: str, timeout: float, token: str | None) -> dict[str, Any]:
    """GET a job-control read; exits 2 on 503 (the store), 3 on anything but 2xx."""
    service = Service.parse(url)
    code, body = fetch(service, path, timeout, token, token_name=READ_TOKENS)
    if code == 503:
        fail(CRITICAL, f"{service.shown(path)} answered HTTP 503: {message(body)}")
    if not 200 <= code < 300:
        fail(UNKNOWN, f"{service.shown(path)} answered HTTP {code}: {message(body)}")
    return body


def status_body(service: Service, timeout: float, token: str | None) -> dict[str, Any]:
    """The /status body; :class:`Unknown` unless the service answered 2xx (an error body is no report to print)."""
    code, body = fetch(service, "/status", timeout, token, token_name=READ_TOKENS)
    if not 200 <= code < 300:
        detail = body.get("message") or body.get("error")
        raise Unknown(f"{service.shown('/status')} answered HTTP {code}" + (f": {str(detail)[:200]}" if detail else ""))
    return body
