"""The HTML status page: which requests get it, and the page built around the /status report.

The page is one renderer (``static/status.js``) fed by the /status JSON. The
first report is embedded in the page, so the table draws without a second
request; the script then fetches the JSON every ``REFRESH_SECONDS`` (or
``?refresh=<seconds>``) and updates the table in place. A job's run history
is fetched from ``/jobs/<id>`` only when its row is opened, which keeps the
page's weight that of the JSON report even at 1,000 jobs.

Browsers get the page; every other client keeps the JSON it always had: HTML
only when ``Accept`` ranks ``text/html`` strictly above ``application/json``
(``*/*`` alone, curl, monitors and no header at all stay JSON).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

from flask import Flask, Response, render_template, request, url_for
from markupsafe import Markup
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

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


def page_context(app: Flask, report: bytes) -> dict[str, Any]:
    """What ``status.html`` needs: the service's name, the URLs the script uses, and the embedded report."""
    versions = asset_versions(app.static_folder or "")
    return {
        "service": app.config["SERVICE_NAME"],
        "report": embeddable(report),
        "status_url": url_for("status.status"),
        "jobs_url": request.script_root + "/jobs/",
        "refresh_seconds": refresh_seconds(request.args.get("refresh")),
        "stylesheet": url_for("static", filename="status.css", v=versions["status.css"]),
        "script": url_for("static", filename="status.js", v=versions["status.js"]),
    }


def page_response(app: Flask, report: bytes) -> Response:
    """The page, 200, never stored by a cache (it holds the report), with a CSP that allows our own files only."""
    response = Response(render_template("status.html", **page_context(app, report)), status=200,
                        mimetype="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
