"""GET /status (and the status page's /status/overview and /status/runs) and GET /openapi.json."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from ..access import token_required
from ..state import StoreUnavailable
from ..web import error_response, json_response, revalidated_json
from .page import page_response, prefers_html

bp = Blueprint("status", __name__)


@bp.get("/status")
@token_required
def status() -> Response:
    """The detailed view: 200 whenever the report can be built; the overall status is in the body.

    JSON, as always, unless ``Accept`` ranks text/html first (a browser): then the status page around the same report.
    """
    report = current_app.extensions["status"].encoded()
    if prefers_html(request.headers.get("Accept", "")):
        response = page_response(current_app, report)
    else:
        response = json_response(report, 200)
    response.vary.add("Accept")  # one URL, two bodies: a cache must key on the header
    return response


@bp.get("/status/overview")
@token_required
def overview() -> Response:
    """The report without its per-job parts: what the status page refreshes besides its page of jobs."""
    return json_response(current_app.extensions["status"].overview(), 200)


@bp.get("/status/runs")
@token_required
def run_chart() -> Response:
    """Runs per minute by outcome over the last hour, from the run history (the page's chart)."""
    try:
        chart = current_app.extensions["run_chart"].current()
    except StoreUnavailable as error:
        return error_response(503, str(error))
    return revalidated_json(chart, exclude=("timestamp",))


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI document generated from the marshmallow schemas."""
    return json_response(current_app.extensions["openapi"], 200)
