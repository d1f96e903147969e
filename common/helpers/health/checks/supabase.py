"""Supabase: a cheap HEAD request on a small table, sent with the official client's HTTP session."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..check import ComponentCheck
from ..errors import ServiceUnavailable

_AUTH_CODES = {"401", "403", "PGRST301", "PGRST302", "42501"}
_MISSING_CODES = {"42P01", "PGRST205", "PGRST106"}
_DOWN_CODES = {"500", "502", "503", "504", "520", "PGRST000", "PGRST001", "PGRST002"}
_PROBE = {"select": "*", "limit": "1"}
_DIAGNOSIS = {"select": "*", "limit": "0"}  # no rows, only PostgREST's error body
NOT_POSTGREST = "not a Supabase/PostgREST endpoint"


class SupabaseCheck(ComponentCheck):
    """``HEAD /rest/v1/<table>?select=*&limit=1`` through the client's ``postgrest.session``, no retries.

    The request goes straight to the client's httpx session (its base URL,
    API key headers and timeouts) rather than through ``.execute()``: that
    sends no retries (supabase-py retries GET/HEAD on 503 with 1, 2 and 4 s
    sleeps) and leaves the response's headers to look at. No exact count is
    asked for: it can scan the table. ``/rest/v1/`` itself is closed to anon
    keys on hosted Supabase, so a table is needed.

    The answer must look like PostgREST's: a success carries ``Content-Range``,
    and an error that names no cause in its status (a 404 may be a missing
    table or a server that is not PostgREST at all) is read again with one
    ``GET ...&limit=0``, whose JSON body has PostgREST's error ``code``
    (``42P01``, ``PGRST205``). Anything else is "not a Supabase/PostgREST
    endpoint", so a wrong ``SUPABASE_URL`` is never reported as a missing table.

    :param client_factory: returns the process's supabase client (created once
        per process, after fork).
    :param table: the table to probe (an identifier).
    :raises ServiceUnavailable: with a short reason and no secret.
    """

    backend = "supabase"

    def __init__(self, client_factory: Callable[[], Any], table: str) -> None:
        self._client_factory = client_factory
        self._table = table

    def check(self) -> None:
        import httpx

        try:
            session = self._client_factory().postgrest.session
            response = session.head(self._table, params=_PROBE)
            if response.is_success:
                if "content-range" not in response.headers:
                    raise ServiceUnavailable(f"{NOT_POSTGREST} (HTTP {response.status_code} without Content-Range)")
                return
            code = _status_code(response)
            if code is None:
                diagnosis = session.get(self._table, params=_DIAGNOSIS)
                code = _body_code(diagnosis)
                if code is None:
                    raise ServiceUnavailable(f"{NOT_POSTGREST} (HTTP {response.status_code}, "
                                             f"{diagnosis.headers.get('content-type') or 'no content type'})")
        except httpx.TimeoutException:
            raise ServiceUnavailable("timed out") from None
        except httpx.ConnectError as error:
            text = str(error).lower()
            raise ServiceUnavailable("connection refused" if "refused" in text else f"connect failed: {error}") from None
        except httpx.HTTPError as error:
            raise ServiceUnavailable(f"{type(error).__name__}: {error}") from None
        raise ServiceUnavailable(self._reason(code))

    def _reason(self, code: str) -> str:
        if code in _AUTH_CODES:
            return f"authentication failed (code {code})"
        if code in _MISSING_CODES:
            return f"table '{self._table}' not found (code {code})"
        if code in _DOWN_CODES:
            return f"database unavailable (code {code})"
        return f"API error (code {code})"


def _status_code(response: Any) -> str | None:
    """The cause an error answer names without its body: PostgREST's Proxy-Status code, or a telling status."""
    for member in response.headers.get("proxy-status", "").split(","):
        name, _, params = member.partition(";")
        if name.strip().strip('"').lower() == "postgrest":
            for param in params.split(";"):
                key, _, value = param.partition("=")
                if key.strip() == "error" and value.strip().strip('"'):
                    return value.strip().strip('"')
    status = str(response.status_code)
    # Gateways answer these in their own shapes, and they mean the same whoever sends them.
    return status if status in _AUTH_CODES or status in _DOWN_CODES else None


def _body_code(response: Any) -> str | None:
    """PostgREST's error ``code`` from a JSON error body (``{"code", "message", "details", "hint"}``), else None."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or not {"code", "message"} <= body.keys():
        return None
    code = body["code"]
    return str(code) if isinstance(code, str | int) and str(code) else None
