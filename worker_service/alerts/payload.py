"""The JSON every channel is given: the webhook body, documented in README and in the OpenAPI ``webhooks``."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any
from urllib.parse import quote

from common.helpers.health import redact

from .settings import AlertSettings

VERSION = "1"


def iso(at: float) -> str:
    """An epoch time as ISO 8601 UTC with milliseconds."""
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def subject_url(settings: AlertSettings, kind: str, subject: str) -> str:
    """The status page's link to the subject (for a job, the page filtered to it; the page otherwise)."""
    base = (settings.public_url or "").rstrip("/")
    anchor = f"#job={quote(subject, safe='')}" if kind in ("job", "metric") and subject not in ("disk", "memory") else ""
    return f"{base}/status{anchor}"


def build(settings: AlertSettings, *, key: str, kind: str, subject: str, firing: bool, state: str,
          previous_state: str | None, reason: str | None, host: str, at: float, since: float,
          repeat: bool = False, test: bool = False, event_id: str | None = None) -> dict[str, Any]:
    """One notification's payload; the reason is redacted."""
    body: dict[str, Any] = {
        "version": VERSION,
        "id": event_id or uuid.uuid4().hex,
        "status": "firing" if firing else "resolved",
        "kind": kind,
        "subject": subject,
        "state": state,
        "previous_state": previous_state,
        "reason": None if reason is None else redact(reason),
        "dedup_key": f"{settings.service}/{key}",
        "service": settings.service,
        "host": host,
        "at": iso(at),
        "since": iso(since),
        "url": subject_url(settings, kind, subject),
        "repeat": repeat,
    }
    if kind == "metric":  # which rule: disk, memory, duration, error_rate, crashes
        body["rule"] = key.split(":")[1]
    if test:
        body["test"] = True
    return body


def encode(body: dict[str, Any]) -> str:
    """The payload as the JSON text the outbox keeps and every channel sends."""
    return json.dumps(body, separators=(",", ":"))
