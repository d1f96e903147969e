"""The cache and database checks the leader's alert monitor looks at (components unavailable and back)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.helpers.health import HealthEngine

from ..cache import Cache
from ..database import Database
from .settings import AlertSettings


def alert_component_checks(settings: Mapping[str, Any], cache: Cache, database: Database) -> HealthEngine | None:
    """An engine of the cache's and the database's checks; ``None`` when no alert channel is configured."""
    if not AlertSettings.from_settings(settings).enabled:
        return None
    engine = HealthEngine(timeout=settings["HEALTH_CHECK_TIMEOUT"], cache_ttl=settings["HEALTH_CACHE_TTL"])
    engine.register("cache", cache.health_check())
    engine.register("database", database.health_check())
    return engine
