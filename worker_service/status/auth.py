"""``STATUS_TOKEN``: the bearer token /status and /metrics require when it is set."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any

from flask import current_app, request

from ..http import error_response


def token_required(view: Callable[..., Any]) -> Callable[..., Any]:
    """Answer 401 unless ``Authorization: Bearer <STATUS_TOKEN>`` matches (constant-time compare)."""

    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        expected = current_app.config.get("STATUS_TOKEN")
        if expected:
            scheme, _, given = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
                return error_response(401, "a valid 'Authorization: Bearer <token>' header is required",
                                      {"WWW-Authenticate": 'Bearer realm="worker-service"'})
        return view(*args, **kwargs)

    return guarded
