"""GET /status (and the status page's /status/overview and /status/runs)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from .. import control_token
from ..access import ask_for_admin, is_admin, token_required
from ..control.listing import PageQuery, read_job_page
from ..state import StoreUnavailable
from ..web import error_response, json_response, revalidated_json
from .page import PAGE_SIZE, STRIP_RUNS, page_data, page_response, prefers_html

bp = Blueprint("status", __name__)


@bp.get("/status")
@token_required
def status() -> Response:
    """The detailed view: 200 whenever the report can be built; the overall status is in the body.

    JSON, as always, unless ``Accept`` ranks text/html first (a browser): then the status page (:mod:`.page`),
    whose first screen is embedded: the overview, the first page of jobs and the chart.
    """
    if prefers_html(request.headers.get("Accept", "")):
        # ?admin: "Sign in to control jobs" (a browser sends Basic credentials only once asked for them).
        wants_admin = "admin" in request.args and current_app.config.get("ADMIN_TOKEN") and not is_admin()
        response = ask_for_admin() if wants_admin else _page()
    else:
        response = json_response(current_app.extensions["status"].encoded(), 200)
    response.vary.add("Accept")  # one URL, two bodies: a cache must key on the header
    return response


def _page() -> Response:
    """The status page, with its first screen's data embedded (:mod:`.page`)."""
    reporter = current_app.extensions["status"]
    overview = reporter.overview()
    try:
        jobs = read_job_page(reporter.page_snapshot(), current_app.extensions["store"],
                             PageQuery(limit=PAGE_SIZE, runs=STRIP_RUNS))
        chart = current_app.extensions["run_chart"].current()
    except StoreUnavailable as error:  # the overview says why; the script asks again at its refresh
        jobs, chart = {"jobs": [], "total": 0, "matched": 0, "offset": 0, "limit": PAGE_SIZE,
                       "error": str(error)}, None
    control = control_token.issue(current_app.config["ADMIN_TOKEN"]) if is_admin() else None
    sign_in = bool(current_app.config.get("ADMIN_TOKEN")) and control is None
    return page_response(current_app, page_data(overview, jobs, chart), control, sign_in)


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
