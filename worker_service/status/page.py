"""The HTML status page: which requests get it, and the page built around the service's state.

The page is one renderer (``static/status.js``). It never holds every job:
at 5,000 jobs the whole /status report is 4.5 MB and 80,000 elements. The
page embeds, so that its first screen draws without another request:

* the overview (GET /status/overview: the report without its per-job parts);
* the first page of jobs, problems first, each with its newest
  :data:`STRIP_RUNS` runs (GET /jobs?limit=&runs=);
* the runs per minute of the last hour (GET /status/runs);
* for the holder of ``ADMIN_TOKEN`` only, a per-page control token
  (:mod:`worker_service.control_token`) for its Run now, Pause and Resume buttons.

The script then refreshes those three every ``REFRESH_SECONDS`` (or
``?refresh=<seconds>``): the overview is a few KB; the job page and the chart
carry ETags, so a refresh when nothing changed costs two 304s. Filtering and
paging ask the server for another page. A job's full history is fetched from
``/jobs/<id>`` only when its row is opened.

Browsers get the page; every other client keeps the JSON it always had: HTML
only when ``Accept`` ranks ``text/html`` strictly above ``application/json``
(``*/*`` alone, curl, monitors and no header at all stay JSON).
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from flask import Flask, Response, render_template, request, url_for
from markupsafe import Markup
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

PAGE_SIZE = 25  # job rows per page: a screen shows about ten to fifteen
STRIP_RUNS = 20  # marks in each row's strip of recent runs
REFRESH_SECONDS = 10  # the default; ?refresh=<seconds> picks another, from MIN_REFRESH to MAX_REFRESH
MIN_REFRESH, MAX_REFRESH = 2, 300
ASSETS = ("status.css", "status.js")

# The script and styles come from this origin only; the embedded report is data
# (type="application/json"), which CSP does not treat as a script.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

# Characters that could end the <script> element or start markup, as JSON escapes.
# In compact JSON they can only occur inside strings, where the escapes mean the same.
_EMBED_ESCAPES = ((b"&", b"\\u0026"), (b"<", b"\\u003c"), (b">", b"\\u003e"))


def prefers_html(accept: str) -> bool:
    """True when an ``Accept`` header ranks text/html strictly above application/json (a browser)."""
    return "html" in accept and _ranks_html_first(accept)  # curl's */* and JSON clients skip the parsing


@functools.lru_cache(maxsize=64)  # browsers send the same few headers again and again
def _ranks_html_first(accept: str) -> bool:
    parsed = parse_accept_header(accept, MIMEAccept)
    return parsed.quality("text/html") > parsed.quality("application/json")


def refresh_seconds(asked: str | None) -> int:
    """The refresh period a page asked for with ``?refresh=``, kept within bounds; the default when absent or not a number."""
    try:
        return min(max(int(asked), MIN_REFRESH), MAX_REFRESH) if asked else REFRESH_SECONDS
    except ValueError:
        return REFRESH_SECONDS


def embeddable(report: bytes) -> Markup:
    """``report`` (JSON bytes) made safe to put inside a ``<script type="application/json">`` element."""
    for raw, escaped in _EMBED_ESCAPES:
        report = report.replace(raw, escaped)
    return Markup(report.decode())


@functools.cache
def asset_versions(static_folder: str) -> dict[str, str]:
    """A short digest of each asset, put in its URL so that a deploy's new script is never mixed with an old page."""
    return {name: hashlib.sha256((Path(static_folder) / name).read_bytes()).hexdigest()[:12] for name in ASSETS}


def page_context(app: Flask, data: bytes, control: str | None, sign_in: bool = False) -> dict[str, Any]:
    """What ``status.html`` needs: the service's name, the URLs the script uses, the embedded data, the token."""
    versions = asset_versions(app.static_folder or "")
    return {
        "service": app.config["SERVICE_NAME"],
        "data": embeddable(data),
        "control_token": control,
        "sign_in_url": url_for("status.status", admin="") if sign_in else None,
        "overview_url": url_for("status.overview"),
        "chart_url": url_for("status.run_chart"),
        "jobs_url": request.script_root + "/jobs/",
        "page_size": PAGE_SIZE,
        "strip_runs": STRIP_RUNS,
        "refresh_seconds": refresh_seconds(request.args.get("refresh")),
        "stylesheet": url_for("static", filename="status.css", v=versions["status.css"]),
        "script": url_for("static", filename="status.js", v=versions["status.js"]),
    }


def page_data(overview: bytes, jobs: dict[str, Any], chart: dict[str, Any] | None) -> bytes:
    """The embedded data: the overview as served (already JSON), the first job page and the chart."""
    rest = json.dumps({"jobs": jobs, "chart": chart}, separators=(",", ":")).encode()
    return b'{"overview":' + overview + b"," + rest[1:]


def page_response(app: Flask, data: bytes, control: str | None, sign_in: bool = False) -> Response:
    """The page, 200, never stored by a cache (it holds the data and maybe a token), with a CSP for our files only.

    ``sign_in``: job control is on but this reader is not the admin; the page links to ``?admin``.
    """
    response = Response(render_template("status.html", **page_context(app, data, control, sign_in)), status=200,
                        mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
