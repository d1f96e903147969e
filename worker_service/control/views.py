"""GET /jobs, GET /jobs/<id>, POST /jobs/<id>/run|pause|resume, GET /jobs/<id>/commands/<cid>."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, request

from ..access import admin_required, token_required
from ..state import StoreUnavailable
from ..web import error_response, json_response, revalidated_json
from .listing import BadPage, PageQuery, is_paged, read_job_page
from .payloads import answer_status, command_answer, command_path
from .reads import JobReports, UnknownJob
from .requester import client_address, requested_by
from .submission import DEFAULT_WAIT, MAX_WAIT, JobControl, Refusal

bp = Blueprint("control", __name__)


def _reports() -> JobReports:
    return current_app.extensions["job_reports"]


def _store_read(read: Callable[[], Any]) -> Response:
    """200 with what ``read`` returns; 503 with the store's reason when it cannot be read."""
    try:
        return json_response(read(), 200)
    except StoreUnavailable as error:
        return error_response(503, str(error))


@bp.get("/jobs")
@token_required
def job_list() -> Response:
    """Every published job, short; or one page of them, problems first (:mod:`.listing`)."""
    if not is_paged(request.args):
        return _store_read(_reports().job_list)
    try:
        query = PageQuery.parse(request.args)
    except BadPage as error:
        return error_response(400, str(error))
    try:
        body = read_job_page(current_app.extensions["status"].page_snapshot(), current_app.extensions["store"], query)
    except StoreUnavailable as error:
        return error_response(503, str(error))
    return revalidated_json(body, exclude=("timestamp",))


@bp.get("/jobs/<job_id>")
@token_required
def job_detail(job_id: str) -> Response:
    """One job: definition, stats, history and commands; 404 for an unknown job."""
    try:
        return _store_read(lambda: _reports().job_detail(job_id))
    except UnknownJob:
        return error_response(404, f"unknown job: {job_id!r}")


# <command_id> is matched as text and read here: a path that only routes matches before the guard runs,
# and every path of a guarded endpoint must meet the guard first (access.init_app).
@bp.get("/jobs/<job_id>/commands/<command_id>")
@token_required
def command_state(job_id: str, command_id: str) -> Response:
    """One command's state, to poll after a 202."""
    number = int(command_id) if command_id.isascii() and command_id.isdigit() and len(command_id) < 19 else None
    try:
        command = None if number is None else current_app.extensions["store"].command(number)
    except StoreUnavailable as error:
        return error_response(503, str(error))
    if command is None or command.job_id != job_id:
        return error_response(404, f"no command {command_id} on job {job_id!r}")
    return json_response(command_answer(command), 200)


@bp.post("/jobs/<job_id>/run")
@admin_required
def run_now(job_id: str) -> Response:
    """Run the job now through the leader (as a scheduled run would, within max_instances)."""
    return _submit(job_id, "run")


@bp.post("/jobs/<job_id>/pause")
@admin_required
def pause(job_id: str) -> Response:
    """Pause the job until resumed (the pause outlives leaders, reloads and restarts)."""
    return _submit(job_id, "pause")


@bp.post("/jobs/<job_id>/resume")
@admin_required
def resume(job_id: str) -> Response:
    """Resume a paused job."""
    return _submit(job_id, "resume")


def _submit(job_id: str, action: str) -> Response:
    wait = _wait_seconds()
    if wait is None:
        return error_response(400, f"wait must be a number of seconds from 0 to {MAX_WAIT:g}")
    control: JobControl = current_app.extensions["job_control"]
    try:
        command = control.submit(job_id, action, requested_by(), wait, client_address())
    except Refusal as refusal:
        return error_response(refusal.status, refusal.message)
    except StoreUnavailable as error:
        return error_response(503, f"{error}; the command was not queued")
    status = answer_status(command)
    headers = {"Location": command_path(command)} if status == 202 else None
    return json_response(command_answer(command, as_error=True), status, headers)


def _wait_seconds() -> float | None:
    """``?wait=`` (seconds, 0 to MAX_WAIT), DEFAULT_WAIT when absent; None when it is not such a number."""
    raw = request.args.get("wait")
    if raw is None:
        return DEFAULT_WAIT
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) and 0 <= value <= MAX_WAIT else None
