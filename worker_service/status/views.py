"""GET /status and GET /openapi.json."""

from __future__ import annotations

from flask import Blueprint, current_app

from ..access import token_required
from ..web import json_response

bp = Blueprint("status", __name__)


@bp.get("/status")
@token_required
def status():
    """The detailed view: 200 whenever the report can be built; the overall status is in the body."""
    return json_response(current_app.extensions["status"].encoded(), 200)


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI document generated from the marshmallow schemas."""
    return json_response(current_app.extensions["openapi"], 200)
