"""What a /health request asks for: a format (the seed's JSON, health+json or verbose text) and checks to leave out.

The seed's body stays the default: health+json only when the ``Accept``
header names ``application/health+json`` at least as high as
``application/json``; ``?verbose`` (text, as kube-apiserver's
``/readyz?verbose``) wins over ``Accept``. ``?exclude=<component>`` may repeat
(or hold a comma-separated list); names that match no component are ignored,
as Kubernetes does, and listed in a ``warn:`` line of the verbose text.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Iterable

from flask import Request
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header

from ..access import refuse_without_token

HEALTH_JSON = "application/health+json"


class Format(enum.Enum):
    """The body a health endpoint answers with."""

    SEED = "application/json"
    HEALTH_JSON = HEALTH_JSON
    VERBOSE = "text/plain"


@dataclasses.dataclass(frozen=True)
class HealthQuery:
    """One request's format and exclusions (known names only; the unknown ones kept for the warning)."""

    format: Format
    exclude: frozenset[str] = frozenset()
    unmatched: tuple[str, ...] = ()


_SEED_ONLY = HealthQuery(Format.SEED)
_HEALTH_JSON_ONLY = HealthQuery(Format.HEALTH_JSON)


def wants_health_json(request: Request) -> bool:
    """True when ``Accept`` names application/health+json, with a quality no lower than application/json's."""
    accept = request.headers.get("Accept", "")
    return "health+json" in accept and _prefers_health_json(accept)  # the common case without parsing the header


@functools.lru_cache(maxsize=64)  # probes send the same few headers again and again; parsing one costs ~70 µs
def _prefers_health_json(accept: str) -> bool:
    parsed = parse_accept_header(accept, MIMEAccept)
    health = max((quality for value, quality in parsed if value.lower() == HEALTH_JSON), default=0)
    plain = max((quality for value, quality in parsed if value.lower() == "application/json"), default=0)
    return health > 0 and health >= plain


def parse_query(request: Request, known: Iterable[str]) -> HealthQuery:
    """The format and the exclusions ``request`` asks for, judged against the ``known`` component names."""
    health_json = wants_health_json(request)
    if not request.query_string:  # a probe's request: one of two answers, built once
        return _HEALTH_JSON_ONLY if health_json else _SEED_ONLY
    if "verbose" in request.args:
        chosen = Format.VERBOSE
    elif health_json:
        chosen = Format.HEALTH_JSON
    else:
        chosen = Format.SEED
    asked = [name.strip() for value in request.args.getlist("exclude") for name in value.split(",") if name.strip()]
    known = set(known)
    unmatched = tuple(dict.fromkeys(name for name in asked if name not in known))
    return HealthQuery(chosen, frozenset(name for name in asked if name in known), unmatched)


def details_allowed() -> bool:
    """Whether the caller may read failure reasons: the same rule as /status (``STATUS_TOKEN`` unset, or the status or admin token, as a bearer or a Basic password)."""
    return refuse_without_token() is None
