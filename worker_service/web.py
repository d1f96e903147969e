"""JSON responses and errors, the same shape everywhere (the token guard is :mod:`worker_service.access`)."""

from __future__ import annotations

import hashlib
import json
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException


def json_response(body: Any, status: int, headers: dict[str, str] | None = None) -> Response:
    """A JSON response that no cache or proxy keeps (``Cache-Control: no-store``); ``body`` may be encoded already."""
    encoded = body if isinstance(body, bytes) else json.dumps(body, separators=(",", ":"))
    response = Response(encoded, status=status, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def revalidated_json(body: dict[str, Any], exclude: tuple[str, ...] = ()) -> Response:
    """200 with ``body`` and an ETag, or 304 when the request's ``If-None-Match`` names it.

    The ETag digests the body without the keys in ``exclude`` (a timestamp of
    the answer itself), so it holds while nothing else changed. The browser
    may keep the answer but must ask again each time (``private, no-cache``):
    a refresh that changed nothing costs a 304 and no body.
    """
    kept = {key: value for key, value in body.items() if key not in exclude}
    tag = hashlib.sha256(json.dumps(kept, separators=(",", ":"), sort_keys=True).encode()).hexdigest()[:27]
    if request.if_none_match.contains_weak(tag):
        response = Response(status=304)
    else:
        response = json_response(body, 200)
    response.set_etag(tag, weak=True)
    response.headers["Cache-Control"] = "private, no-cache"
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
