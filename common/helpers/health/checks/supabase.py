"""Supabase: a cheap HEAD request on a small table through the official client."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..check import ComponentCheck
from ..errors import ServiceUnavailable

_AUTH_CODES = {"401", "403", "PGRST301", "PGRST302", "42501"}
_MISSING_CODES = {"404", "42P01", "PGRST205", "PGRST106"}
_DOWN_CODES = {"500", "502", "503", "504", "520", "PGRST000", "PGRST001", "PGRST002"}


class SupabaseCheck(ComponentCheck):
    """``HEAD /rest/v1/<table>?select=*&limit=1`` with retries off.

    supabase-py retries GET/HEAD on 503 and network errors with 1, 2 and 4 s
    sleeps; ``.retry(False)`` turns that off. No exact count is asked for:
    it can scan the table. ``/rest/v1/`` itself is closed to anon keys on
    hosted Supabase, so a table is needed.

    :param client_factory: returns the process's supabase client (created once
        per process, after fork).
    """

    backend = "supabase"

    def __init__(self, client_factory: Callable[[], Any], table: str) -> None:
        self._client_factory = client_factory
        self._table = table

    def check(self) -> None:
        import httpx
        from postgrest.exceptions import APIError

        try:
            query = self._client_factory().table(self._table).select("*", head=True).limit(1)
            query.retry(False).execute()
        except APIError as error:
            raise ServiceUnavailable(self._api_reason(error)) from None
        except httpx.TimeoutException:
            raise ServiceUnavailable("timed out") from None
        except httpx.ConnectError as error:
            text = str(error).lower()
            raise ServiceUnavailable("connection refused" if "refused" in text else f"connect failed: {error}") from None
        except httpx.HTTPError as error:
            raise ServiceUnavailable(f"{type(error).__name__}: {error}") from None

    def _api_reason(self, error: Any) -> str:
        code = str(getattr(error, "code", "") or "")
        message = getattr(error, "message", None) or ""
        if code in _AUTH_CODES:
            return f"authentication failed (code {code})"
        if code in _MISSING_CODES:
            return f"table '{self._table}' not found (code {code})"
        if code in _DOWN_CODES:
            return f"database unavailable (code {code})"
        return f"API error (code {code or 'unknown'}) {message}".strip()
