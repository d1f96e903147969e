"""``STATUS_TOKEN``: the bearer token /status and /metrics require when it is set."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

from flask import Response, current_app, request

from ..web import ACCESS_GUARD, error_response


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
    """Guard ``view`` with the token, for every HTTP method.

    The wrapper checks the token when the view runs; the mark it carries lets
    :func:`worker_service.web.init_app` check it before routing, because Flask
    answers OPTIONS and a 405 without ever calling the view.
    """

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        return refuse_without_token() or view(*args, **kwargs)

    setattr(guarded, ACCESS_GUARD, refuse_without_token)
    return guarded
