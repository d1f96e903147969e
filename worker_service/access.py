"""``STATUS_TOKEN``: the bearer token /status and /metrics require when it is set, for every HTTP method.

A view wrapped in :func:`token_required` checks the token when it runs, and
carries the check under :data:`ACCESS_GUARD`. :func:`init_app` runs that check
before routing too, because Flask answers OPTIONS and a 405 without ever
calling the view: no method learns anything (not even the ``Allow`` header)
about a guarded endpoint.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from .web import error_response

# A view carrying a callable under this name is guarded: the callable returns a
# refusal (a Response) or None. init_app runs it before routing, for every method.
ACCESS_GUARD = "access_guard"


def refuse_without_token() -> Response | None:
    """401 unless ``Authorization: Bearer <STATUS_TOKEN>`` matches (constant-time compare); None lets it through."""
    expected = current_app.config.get("STATUS_TOKEN")
    if not expected:
        return None
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode()):
        return None
    return error_response(401, "a valid 'Authorization: Bearer <token>' header is required",
                          {"WWW-Authenticate": 'Bearer realm="worker-service"'})


def token_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Guard ``view`` with the token, for every HTTP method (see the module docstring)."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        return refuse_without_token() or view(*args, **kwargs)

    setattr(guarded, ACCESS_GUARD, refuse_without_token)
    return guarded


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
    """Run the guard of any guarded view before routing, for every method."""

    @app.before_request
    def _access_guard() -> Response | None:
        guard = _requested_guard(app)
        return guard() if guard is not None else None
