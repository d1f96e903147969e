"""Alert channel URLs: what may be shown of one, and the secrets in it the redactor must know.

A channel URL is a credential more often than not: a Slack or Teams webhook
is a token in its path, a Telegram URL a bot token in its host part, a
``mailto://user:pass@host`` a password. So wherever one is shown (``/status``,
``worker-service alerts``, a log line) it is masked to its scheme and, for
HTTP(S) and e-mail, its host: ``https://hooks.slack.com/***``,
``mailto://***@smtp.example.com``, ``tgram://***``. And every part that may
be a secret is registered with the redactor, so a library's error message
quoting the URL is masked too.
"""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qsl, unquote

from common.helpers.health import register_secret

MASK = "***"
_HOST_SHOWN = {"http", "https", "json", "jsons", "form", "forms", "xml", "xmls", "mailto", "mailtos", "ntfy", "ntfys"}


def _parts(url: str) -> tuple[str, str, str, str]:
    """``(scheme, userinfo, host[:port], rest)`` without a URL parser's validation (Apprise URLs bend the rules)."""
    scheme, _, rest = url.partition("://")
    end = min((index for index in (rest.find(c) for c in "/?#") if index >= 0), default=len(rest))
    authority, path = rest[:end], rest[end:]
    userinfo, at, host = authority.rpartition("@")
    return scheme.lower(), userinfo if at else "", host, path


def mask_channel_url(url: str) -> str:
    """What may be shown of a channel URL: its scheme and (HTTP, e-mail, ntfy) host, never a token or password."""
    scheme, userinfo, host, rest = _parts(url)
    if scheme not in _HOST_SHOWN:
        return f"{scheme}://{MASK}"
    shown = f"{scheme}://" + (f"{MASK}@" if userinfo else "") + host
    return shown + (f"/{MASK}" if rest.strip("/") else "")


def channel_id(kind: str, url: str) -> str:
    """A stable name for a channel that shows nothing of its URL: ``webhook-1a2b3c4d``."""
    return f"{kind}-{hashlib.sha256(url.encode()).hexdigest()[:8]}"


def register_channel_secrets(url: str) -> None:
    """Tell the redactor every part of ``url`` that may be a secret (the masked form hides the same parts)."""
    scheme, userinfo, host, rest = _parts(url)
    register_secret(url)
    if userinfo:
        password = userinfo.partition(":")[2] or userinfo
        register_secret(password)
        register_secret(unquote(password))
    if scheme not in _HOST_SHOWN:
        register_secret(host)
    path, _, query = rest.partition("?")
    if rest.strip("/"):
        register_secret(rest)
    if path.strip("/"):
        register_secret(path)
        for segment in path.split("/"):
            if len(segment) >= 8:
                register_secret(segment)
    for _key, value in parse_qsl(query):
        if len(value) >= 8:
            register_secret(value)
