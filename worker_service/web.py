"""JSON responses and errors, the same shape everywhere; the access guard that every HTTP method passes."""

from __future__ import annotations

import json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

# A view carrying a callable under this name is guarded: the callable returns a
# refusal (a Response) or None. init_app runs it before routing, for every method.
ACCESS_GUARD = "access_guard"


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


def _requested_guard(app: Flask) -> Callable[[], Response | None] | None:
    """The access guard of any view the request's path names, whatever the method (a 405 has no endpoint)."""
    if request.url_rule is not None:
        endpoints = [request.url_rule.endpoint]
    elif isinstance(request.routing_exception, MethodNotAllowed) and request.routing_exception.valid_methods:
        adapter = app.create_url_adapter(request)
        endpoints = []
        for method in sorted(request.routing_exception.valid_methods):
            try:
                endpoints.append(adapter.match(method=method)[0])
            except HTTPException:
                continue
    else:
        return None
    for endpoint in endpoints:
        guard = getattr(app.view_functions.get(endpoint), ACCESS_GUARD, None)
        if guard is not None:
            return guard
    return None


def init_app(app: Flask) -> None:
    """Guard marked views for every method; answer every HTTP error, and any unexpected one, as JSON."""

    @app.before_request
    def _access_guard() -> Response | None:
        # Runs before Flask's automatic OPTIONS answer and its 405, so no method
        # learns anything (not even the Allow header) about a guarded endpoint.
        guard = _requested_guard(app)
        return guard() if guard is not None else None

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
