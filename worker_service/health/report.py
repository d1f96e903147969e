"""Build the health report the /health and /status views serialize."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from common.helpers.health import CheckResult, HealthEngine, Status, aggregate, format_timestamp, utc_now

from .schemas import HealthSchema


@dataclasses.dataclass(frozen=True)
class HealthReport:
    status: Status
    results: dict[str, CheckResult]
    timestamp: dt.datetime

    def components(self) -> dict[str, str]:
        """Each component's status word."""
        return {name: result.status.value for name, result in self.results.items()}

    def body(self, service: str) -> dict[str, Any]:
        """The seed's /health body, in the seed's key order."""
        return {
            "status": self.status.value,
            "components": self.components(),
            "timestamp": format_timestamp(self.timestamp),
            "service": service,
        }


def build_health_report(engine: HealthEngine, critical: list[str],
                        judged: dict[str, CheckResult] | None = None,
                        exclude: frozenset[str] = frozenset()) -> HealthReport:
    """Run (or reuse) every check and aggregate the statuses.

    ``judged`` holds components the caller has judged itself, just now (the
    scheduler, from the snapshot /status reports on): their checks are not
    run, and they keep their place in the engine's order. Components named in
    ``exclude`` are neither run nor reported, and do not count in the status.
    """
    judged = judged or {}
    names = [name for name in engine.names if name not in exclude]
    ran = engine.run([name for name in names if name not in judged])
    return report_of({name: judged[name] if name in judged else ran[name] for name in names}, critical)


def report_of(results: dict[str, CheckResult], critical: list[str]) -> HealthReport:
    """``results`` with their overall status (the ``critical`` components decide unavailable), stamped now."""
    status = aggregate({name: result.status for name, result in results.items()}, critical)
    return HealthReport(status=status, results=results, timestamp=utc_now())


class HealthBodies:
    """The /health body, dumped through :class:`HealthSchema` and encoded once per change of results.

    /health is probed often and must cost next to nothing: while the engine
    hands back the same (cached) results, the encoded body is reused and only
    its timestamp, spliced in between two pre-encoded halves, is new.
    """

    _MARK = "\x00timestamp\x00"

    def __init__(self, engine: HealthEngine, critical: list[str], service: str) -> None:
        self._engine = engine
        self._critical = critical
        self._service = service
        self._schema = HealthSchema()
        self._last: tuple[tuple[CheckResult, ...], Status, bytes, bytes] | None = None

    def current(self) -> tuple[Status, bytes]:
        """The overall status and the encoded body to send now.

        While the engine hands back the very same result objects (its cache),
        nothing is aggregated or dumped again: one identity check per component.
        """
        results = self._engine.run()
        last = self._last
        if (last is None or len(last[0]) != len(results)
                or any(a is not b for a, b in zip(last[0], results.values(), strict=True))):
            report = report_of(results, self._critical)
            body = {**self._schema.dump(report.body(self._service)), "timestamp": self._MARK}
            head, _, tail = json.dumps(body, separators=(",", ":")).partition(json.dumps(self._MARK))
            last = self._last = (tuple(results.values()), report.status, head.encode() + b'"', b'"' + tail.encode())
        return last[1], last[2] + format_timestamp(utc_now()).encode() + last[3]
