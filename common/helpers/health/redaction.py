"""Keep secrets out of reasons, payloads and log lines.

Known secret values (API keys, tokens, passwords taken from URLs) are
registered once at start-up; :func:`redact` also masks anything that looks
like a secret: a URL password, a ``key=value`` / ``"key": "value"`` / header
pair whose key names a credential, a bearer token, a JWT, a PEM private key, a
token whose prefix names its issuer (AWS access key ids, GitHub, GitLab, Slack,
Stripe), a Slack webhook's path, or the user part of a host name a client
quotes ("failed to resolve host 'pa55@db'": libpq reads the host after a
password's first unencoded ``@``).
An error message from a client library that echoes its connection string is
then safe to show.

Cost is bounded by design, because redaction runs on every log line of
gunicorn's error log (which quotes request headers) and on every job error
(which may carry a 10 MB message), holding the GIL while it runs:

* only the first :data:`MAX_EXAMINED_CHARS` characters are examined and kept;
  the rest is cut *before* any pattern runs and the cut is marked;
* every pattern is linear in its input: each one starts only at a literal
  (``://``, ``eyJ``, ``bearer``, ``-----BEGIN``, a credential word such as
  ``password``), uses possessive quantifiers where a failed match could
  otherwise backtrack, and never lets the scans of two attempts overlap (a URL
  password stops at the next ``://``, and is bounded besides);
* known secrets are found with ``str`` searches, one pass per secret.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"

# 16 KiB: a traceback of a dozen frames with its message fits; a 10 MB exception message does not need to.
MAX_EXAMINED_CHARS = 16 * 1024
# At a cut, the last token (a partial URL, key=value or secret) is dropped if it starts this close to the cut.
_PARTIAL_TOKEN_SPAN = 512

# Each pattern starts with a literal or a set of literals, so the engine skips ahead to where it can match;
# a left boundary is checked by a lookbehind placed after that literal.
#
# "scheme://user:password@": the password may hold "/" (never "@", a space or another "://"), so the scans from
# consecutive "://" never overlap ("://" * n would be quadratic otherwise); 256 bounds it anyway.
_URL_PASSWORD = re.compile(r"(?P<head>://[^:/@\s]*+:)(?P<password>(?:[^@\s:]|:(?!//)){1,256}+)(?=@)")
_JWT = re.compile(r"eyJ(?<![\w-]eyJ)[A-Za-z0-9_-]{5,}+\.[A-Za-z0-9_-]{5,}+(?:\.[A-Za-z0-9_-]*+)?")
_PEM_PRIVATE_KEY = re.compile(
    r"(?P<begin>-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY-----)(?P<body>[\s\S]*?)(?P<end>-----END [A-Z0-9 ]{0,40}-----|\Z)"
)
# RFC 6750 b64token of 8+ characters: "token_type=bearer expires_in=3600" (an "=" is only trailing) and
# "bearer token required" keep their words.
_BEARER = re.compile(r"(?i)(?P<head>bearer(?<![\w-]bearer)[ \t]++)(?P<value>[\w.~+/-]{8,}+=*+)(?![\w=%])")
# Tokens that say who issued them, by prefix. The prefix stays readable (``AKIA***`` says which key leaked);
# the left boundary keeps the scans of two attempts from overlapping inside one word.
_PREFIXED_TOKEN = re.compile(
    r"(?<![\w-])(?P<prefix>"
    r"(?:AKIA|ASIA|ABIA|ACCA)(?=[A-Z0-9]{16}(?![A-Za-z0-9]))"  # AWS access key id (long-lived, STS)
    r"|gh[pousr]_|github_pat_"  # GitHub: personal, OAuth, user-to-server, server-to-server, refresh; fine-grained
    r"|gl(?:pat|dt|rt|ptt|ft|imt|oas|soat|cbt|agent)-"  # GitLab: personal, deploy, runner, trigger, feed, ... tokens
    r"|xox[abeoprs]-|xapp-"  # Slack: bot, user, app-level, refresh, ... tokens
    r"|(?:sk|rk)_(?:live|test)_|whsec_"  # Stripe: secret and restricted keys, webhook signing secrets
    r")(?P<value>[A-Za-z0-9_-]{8,}+)"
)
# A Slack incoming-webhook URL's secret is its path's last part: ".../services/T0123/B0456/<secret>".
_SLACK_WEBHOOK = re.compile(r"(?P<head>/services/T[A-Z0-9]{6,20}+/B[A-Z0-9]{6,20}+/)(?P<value>[A-Za-z0-9]{8,}+)")
# The user part of a quoted host name: psycopg's "failed to resolve host 'u@h'", libpq's 'host name "u@h"' and
# 'connection to server at "u@h"', and a conninfo's "host=u@h". Everything up to the last "@" of the host goes.
_HOST_USERINFO = re.compile(
    r"(?P<head>(?:host|host name|server at) [\"']|host=[\"']?+)(?P<userinfo>(?:[^\"'\s@]{0,256}+@)++)"
)
_COOKIE_HEADER = re.compile(r"(?i)(?P<head>cookie[ \t]*+:[ \t]*+)(?P<value>[^\r\n'\"]++)")

# Keys whose value is a credential: a key ending in one of these words, right before its separator, so
# "PGPASSWORD", "client_secret", "aws_secret_access_key" and "X-Api-Key" match while "keyboard", "tokens",
# "password_file" and "job_id" do not. Matching only the key's last word keeps the search a scan for literals.
_SECRET_KEY_WORDS = (
    r"password|passwd|passphrase|pwd|secret|token|credentials?|signature|sig|authorization|cookie"
    r"|session[_-]?id"
    r"|(?:api|app|private|secret|access|signing|encryption|master|client|service|account|auth|storage|shared)[_-]?key"
)
_KEY_VALUE_PATTERN = (
    rf"(?:{_SECRET_KEY_WORDS})"
    # The separator, with the key's closing quote (plain or escaped, for JSON inside a string).
    r"(?:\\?[\"'])?[ \t]*+[:=][ \t]*+"
    r"(?:\\\"(?P<v1>[^\"\\\r\n]*+)"  # \"value\" (escaped JSON)
    r"|\"(?P<v2>(?:[^\"\\\r\n]|\\.)*+)"  # "value" (JSON, repr)
    r"|\\'(?P<v3>[^'\\\r\n]*+)"  # \'value\'
    r"|'(?P<v4>(?:[^'\\\r\n]|\\.)*+)"  # 'value' (Python repr, libpq)
    # value, or "Basic value" as in an Authorization header (the scheme stays readable)
    r"|(?:(?:basic|bearer|digest|token|negotiate|ntlm)[ \t]++)?(?P<v5>[^\s,;&'\"]++))"
)
# Run on a lower-cased copy: without IGNORECASE the engine skips ahead to the words' first letters (6x faster).
_KEY_VALUE = re.compile(_KEY_VALUE_PATTERN)
_KEY_VALUE_ANYCASE = re.compile(_KEY_VALUE_PATTERN, re.IGNORECASE)  # for text whose length lower() changes
_VALUE_GROUPS = ("v1", "v2", "v3", "v4", "v5")

_SECRET_QUERY_KEY = re.compile(r"(?i)pass|secret|token|key|auth|sig")

_secrets: tuple[str, ...] = ()  # longest first, so a secret containing another is masked whole
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember ``value`` so that :func:`redact` masks it wherever it appears (values under 4 characters are not)."""
    global _secrets
    if value and len(value) >= 4:
        with _lock:
            if value not in _secrets:
                _secrets = tuple(sorted((*_secrets, value), key=len, reverse=True))


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
        if _SECRET_QUERY_KEY.search(key):
            register_secret(value)


def redact(text: object) -> str:
    """Return ``str(text)`` with every known or recognisable secret masked, cut to a bounded length.

    At most :data:`MAX_EXAMINED_CHARS` characters are examined and kept; a longer text ends with
    ``"… [N characters cut]"``, so the result never exceeds :data:`MAX_EXAMINED_CHARS` + 40 characters. The cut never leaves part of a registered secret, and drops a last
    token that it split (a URL or ``key=value`` cut in the middle of its secret).
    """
    secrets = _secrets
    text = str(text)
    text, cut = _clip(text, secrets)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    text = mask_patterns(text)
    if len(text) > MAX_EXAMINED_CHARS:  # masks of 1-2 character values lengthen the text (at most 1.5x)
        cut += len(text) - MAX_EXAMINED_CHARS
        text = text[:MAX_EXAMINED_CHARS]
    return f"{text}… [{cut:,} characters cut]" if cut else text


def mask_patterns(text: str) -> str:
    """Return ``text`` with every recognisable secret shape masked; linear in ``len(text)``, no cap."""
    text = _PEM_PRIVATE_KEY.sub(lambda m: f"{m['begin']}{MASK}{m['end']}", text)
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", text)
    text = _JWT.sub(MASK, text)
    text = _PREFIXED_TOKEN.sub(lambda m: f"{m['prefix']}{MASK}", text)
    text = _SLACK_WEBHOOK.sub(lambda m: f"{m['head']}{MASK}", text)
    text = _HOST_USERINFO.sub(lambda m: f"{m['head']}{MASK}@", text)
    text = _COOKIE_HEADER.sub(lambda m: f"{m['head']}{MASK}", text)
    text = _mask_key_values(text)
    return _BEARER.sub(lambda m: f"{m['head']}{MASK}", text)


def _mask_key_values(text: str) -> str:
    lowered = text.lower()
    if len(lowered) != len(text):  # a few characters ("İ") lower to two: the spans would not line up
        matches, lowered = _KEY_VALUE_ANYCASE.finditer(text), text
    else:
        matches = _KEY_VALUE.finditer(lowered)
    pieces, kept_to = [], 0
    for match in matches:
        for group in _VALUE_GROUPS:
            start, end = match.span(group)
            if start >= 0:
                if end > start:  # an empty value hides nothing
                    pieces += (text[kept_to:start], MASK)
                    kept_to = end
                break
    if not pieces:
        return text
    pieces.append(text[kept_to:])
    return "".join(pieces)


def _clip(text: str, secrets: tuple[str, ...]) -> tuple[str, int]:
    """Return the head of ``text`` that is examined, and how many characters were cut after it."""
    if len(text) <= MAX_EXAMINED_CHARS:
        return text, 0
    head = _drop_partial_token(text[:MAX_EXAMINED_CHARS])
    head = _drop_partial_secret(head, secrets)
    return head, len(text) - len(head)


def _drop_partial_token(head: str) -> str:
    """Drop the last token if the cut split it: its secret may be cut too short to be recognised."""
    tail = head[-_PARTIAL_TOKEN_SPAN:]
    offset = len(head) - len(tail)
    boundary = max(tail.rfind(" "), tail.rfind("\n"), tail.rfind("\t"), tail.rfind("\r"))
    url = tail.rfind("://")
    if url > boundary:  # "…scheme://user:passw" with no "@" left to show it is a password
        return head[: offset + url]
    if boundary >= 0:
        return head[: offset + boundary + 1]
    return head


def _drop_partial_secret(head: str, secrets: tuple[str, ...]) -> str:
    """Drop the end of ``head`` where it is the start of a registered secret that the cut split."""
    for secret in secrets:
        for length in range(min(len(secret) - 1, len(head)), 0, -1):
            if head.endswith(secret[:length]):
                head = head[:-length]
                break
    return head


class RedactingFilter(logging.Filter):
    """A logging filter that redacts (and so bounds) each record's message, exception text and stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not drop the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:  # also when a handler before this one formatted it
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
