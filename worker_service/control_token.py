"""The status page's control token: a per-page token a browser's job-control request carries besides its origin.

The page served to the holder of ``ADMIN_TOKEN`` embeds a fresh token; its
Run now, Pause and Resume buttons send it back in ``X-Control-Token``. A token
is a random nonce and its HMAC under a key derived from ``ADMIN_TOKEN``, so
every worker of every host checks it without shared state, and rotating the
admin token voids every page's token. It is no secret of the service: it
proves only that the request's sender could read a page served to the admin
(another site's page cannot: same-origin policy), on top of the origin check
of :mod:`worker_service.access`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

HEADER = "X-Control-Token"
_PURPOSE = b"worker-service status page control token v1"


def _key(admin_token: str) -> bytes:
    return hmac.new(admin_token.encode(), _PURPOSE, hashlib.sha256).digest()


def _mac(admin_token: str, nonce: str) -> str:
    digest = hmac.new(_key(admin_token), nonce.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def issue(admin_token: str) -> str:
    """A new page's token: ``<nonce>.<mac>``."""
    nonce = secrets.token_urlsafe(16)
    return f"{nonce}.{_mac(admin_token, nonce)}"


def valid(token: str | None, admin_token: str | None) -> bool:
    """Whether ``token`` was issued under ``admin_token`` (compared in constant time)."""
    if not token or not admin_token or len(token) > 200:
        return False
    nonce, dot, mac = token.partition(".")
    return bool(dot and nonce) and hmac.compare_digest(mac.encode(), _mac(admin_token, nonce).encode())
