"""GET /status and GET /openapi.json."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request

from ..access import token_required
from ..web import json_response
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


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI document generated from the marshmallow schemas."""
    return json_response(current_app.extensions["openapi"], 200)
