"""How a command ends and what it may print: the plugin's exit codes, credentials masked, control characters replaced."""

from __future__ import annotations

import json
import sys
import urllib.parse
from typing import Any, NoReturn

import click

from ..service_client import AUTHORITY
from .tables import printable

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
LABELS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}

_MASKED: set[str] = set()  # the credentials (user:password, password) in the URLs this process was given


def mask_userinfo(url: str) -> None:
    """Remember the credentials ``url`` carries (``user:password``, and the password), to mask them when printed."""
    start = AUTHORITY.match(url)
    if start is None or "@" not in url[start.end():]:
        return
    userinfo = url[start.end():].rpartition("@")[0]
    password = userinfo.partition(":")[2]
    pieces = {userinfo, password, urllib.parse.unquote(userinfo), urllib.parse.unquote(password)}
    _MASKED.update(piece for piece in pieces if len(piece) >= 3)


def safe(text: str) -> str:
    """A line as printed: the URLs' credentials masked, control characters replaced."""
    for secret in sorted(_MASKED, key=len, reverse=True):
        text = text.replace(secret, "***")
    return printable(text)


def print_json(body: Any) -> None:
    """``body`` as indented JSON on stdout (``--json``)."""
    click.echo(json.dumps(body, indent=2, ensure_ascii=False))


def fail(code: int, text: str) -> NoReturn:
    """One line on stderr (``worker-service: ...``) and exit ``code``."""
    click.echo(safe(f"worker-service: {text}"), err=True)
    sys.exit(code)


def done(code: int, text: str, body: Any = None, as_json: bool = False) -> NoReturn:
    """Print ``body`` as JSON (``--json``) or ``text`` (stdout when OK, else stderr), and exit ``code``."""
    if as_json and body is not None:
        print_json(body)
    elif code == OK:
        click.echo(safe(text))
    else:
        click.echo(safe(f"worker-service: {text}"), err=True)
    sys.exit(code)
