"""JSON responses and errors, the same shape everywhere (the token guard is :mod:`worker_service.access`)."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from flask import Flask, Response
from werkzeug.exceptions import HTTPException


def json_response(body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    """A JSON response that no cache or proxy keeps (``Cache-Control: no-store``); ``body`` may be encoded already."""
    encoded = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":"))
    response = Response(encoded, status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """``{"error": "<reason phrase>", "message": "..."}`` with the given status."""
    return json_response({"error": HTTPStatus(status).phrase, "message": message}, status, headers)


def init_app(app: Flask) -> None:
    """Answer every HTTP error, and any unexpected one, as JSON."""

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        response = error_response(error.code or 500, error.description or "")
        if error.code == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        app.logger.exception("unhandled error")
        return error_response(500, "internal error; see the service log")
