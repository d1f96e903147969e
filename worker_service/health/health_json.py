"""``application/health+json`` (draft-inadarei-api-health-check-06) from a health report.

Status words map pass/warn/fail (available, degraded, unavailable) with the
draft's HTTP mapping, the same codes as the seed's: 200 for pass and warn,
503 for fail. Each check is keyed ``<component>:responseTime`` and carries its
latency in milliseconds and the time the check really ended (a reused result
keeps its own time). ``output`` (the redacted reason) is there only for a
caller allowed to see details, and never for a check that passed (draft 4.8).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from typing import Any

from common.helpers.health import CheckResult, Status, format_timestamp

from .report import HealthReport

DRAFT_STATUS = {Status.AVAILABLE: "pass", Status.DEGRADED: "warn", Status.UNAVAILABLE: "fail"}
COMPONENT_TYPES = {"cache": "datastore", "database": "datastore", "scheduler": "component"}
MEASUREMENT = "responseTime"
UNIT = "ms"


def check_entry(result: CheckResult, details: bool) -> dict[str, Any]:
    """One element of a ``checks`` array (the draft's "component details" object)."""
    entry: dict[str, Any] = {
        "componentId": result.component,
        "componentType": COMPONENT_TYPES.get(result.component, "component"),
    }
    if result.latency is not None:
        entry["observedValue"] = round(result.latency * 1000, 3)
        entry["observedUnit"] = UNIT
    entry["status"] = DRAFT_STATUS[result.status]
    entry["time"] = format_timestamp(result.checked_at)
    entry["backend"] = result.backend  # an additional key (draft 4.10)
    if details and result.reason and result.status is not Status.AVAILABLE:
        entry["output"] = result.reason
    return entry


def health_json(report: HealthReport, service: str, version: str, details: bool) -> dict[str, Any]:
    """The health+json document of ``report``, keys in the draft's order."""
    body: dict[str, Any] = {
        "status": DRAFT_STATUS[report.status],
        "version": version,
        "serviceId": service,
        "description": f"health of {service}",
    }
    failing = [f"{name}: {result.reason}" for name, result in report.results.items()
               if result.reason and result.status is not Status.AVAILABLE]
    if details and failing and report.status is not Status.AVAILABLE:
        body["output"] = "; ".join(failing)
    body["checks"] = {f"{name}:{MEASUREMENT}": [check_entry(result, details)] for name, result in report.results.items()}
    return body


def encode(body: dict[str, Any]) -> bytes:
    """Compact JSON bytes."""
    return json.dumps(body, separators=(",", ":")).encode()


class HealthJsonBodies:
    """health+json bodies, encoded once per change of results, like :class:`~.report.HealthBodies` for the seed's.

    A body holds no "now" (each check's ``time`` is its own), so while the
    engine hands back the same results the whole encoded body is reused. One
    is kept per shape: details or not, overall status, components reported
    (at most 2 x 3 x 2^3 of them).
    """

    def __init__(self, service: str, version: str) -> None:
        self._service = service
        self._version = version
        self._encoded: dict[tuple[bool, Status, tuple[str, ...]], tuple[tuple[CheckResult, ...], bytes]] = {}

    def encoded(self, report: HealthReport, details: bool) -> bytes:
        """The encoded health+json of ``report``."""
        key = (details, report.status, tuple(report.results))
        values = tuple(report.results.values())
        last = self._encoded.get(key)
        if last is None or any(a is not b for a, b in zip(last[0], values, strict=True)):
            last = self._encoded[key] = (values, encode(health_json(report, self._service, self._version, details)))
        return last[1]


def cache_control(results: Iterable[CheckResult], ttl: float, private: bool, now: float | None = None) -> str:
    """``max-age`` for as long as the oldest result stays current in the engine (draft section 9), else ``no-store``.

    The freshness lifetime is what is left of ``ttl`` (HEALTH_CACHE_TTL) for
    the oldest check in the body, rounded down, so an HTTP cache never keeps
    the answer past the moment the service itself would check again: the
    bound on a reported check's age is the same as for the seed's body.
    ``private`` for a body only a token holder gets (reasons, with
    ``STATUS_TOKEN`` set): no shared cache may hand it to anyone else.
    """
    now = time.monotonic() if now is None else now
    ages = [result.age(now) for result in results]
    left = math.floor(ttl - max(ages, default=0.0)) if ttl > 0 else 0
    if left < 1:
        return "no-store"
    return f"private, max-age={left}" if private else f"max-age={left}"
