"""Reusable health-check helpers: checks, the engine that runs them, and formats.

Typical use::

    from common.helpers.health import HealthEngine, aggregate
    from common.helpers.health.checks.redis import RedisPingCheck

    engine = HealthEngine(timeout=0.5, cache_ttl=2.0)
    engine.register("cache", RedisPingCheck(client))
    results = engine.run()
    overall = aggregate({n: r.status for n, r in results.items()}, critical=["cache"])

    # In the process that serves probes (after any fork): check on a timer of one TTL, answer from memory.
    Refresher(engine).start()
"""

from .check import CallableCheck, CheckResult, ComponentCheck
from .engine import HealthEngine
from .errors import CheckError, ServiceDegraded, ServiceUnavailable
from .redaction import RedactingFilter, redact, register_secret, register_url_secrets
from .refresher import Refresher
from .status import Status, aggregate, worst
from .timefmt import format_timestamp, format_uptime, utc_now

__all__ = [
    "CallableCheck",
    "CheckError",
    "CheckResult",
    "ComponentCheck",
    "HealthEngine",
    "RedactingFilter",
    "Refresher",
    "ServiceDegraded",
    "ServiceUnavailable",
    "Status",
    "aggregate",
    "format_timestamp",
    "format_uptime",
    "redact",
    "register_secret",
    "register_url_secrets",
    "utc_now",
    "worst",
]
