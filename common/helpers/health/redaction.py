"""Keep secrets out of reasons, payloads and log lines.

Known secret values (API keys, tokens, passwords taken from URLs) are
registered once at start-up; :func:`redact` also masks anything that looks
like a URL password, a bearer token or a JWT, so an error message from a
client library that echoes its connection string is safe to show.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]+)@")
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)([^\s,;'\"&]+)")
_KEY_VALUE = re.compile(r"(?i)\b(token|apikey|api_key|api-key|passwd|secret)(\s*[:=]\s*)([^\s,;'\"&]+)")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_DSN_PASSWORD = re.compile(r"(?i)\bpassword\s*=\s*('[^']*'|\S+)")

_SECRET_KEY = re.compile(r"(?i)pass|secret|token|key|auth")

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember ``value`` so that :func:`redact` masks it wherever it appears."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def register_url_secrets(url: str | None) -> None:
    """Remember the password (and any query-string token) of a connection URL."""
    if not url:
        return
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return
    if password:
        register_secret(password)
        register_secret(unquote(password))  # clients use, and may echo, the decoded form
    for key, value in parse_qsl(parts.query):
        if _SECRET_KEY.search(key):
            register_secret(value)


def redact(text: object) -> str:
    """Return ``str(text)`` with every known or recognisable secret masked."""
    result = str(text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in result:
            result = result.replace(secret, MASK)
    result = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", result)
    result = _JWT.sub(MASK, result)
    result = _DSN_PASSWORD.sub(f"password={MASK}", result)
    result = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", result)
    result = _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", result)
    return result


def safe_url(url: str) -> str:
    """Return ``url`` with its password masked, for log lines such as 'connecting to …'."""
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", url)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message and exception text."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not drop the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
