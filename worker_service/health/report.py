"""Build the health report the /health and /status views serialize."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from common.helpers.health import CheckResult, HealthEngine, Status, aggregate, format_timestamp, utc_now


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


def build_health_report(engine: HealthEngine, critical: list[str]) -> HealthReport:
    """Run (or reuse) every check and aggregate the statuses."""
    results = engine.run()
    status = aggregate({name: result.status for name, result in results.items()}, critical)
    return HealthReport(status=status, results=results, timestamp=utc_now())
