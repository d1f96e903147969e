"""The cache resource: Redis when ``REDIS_URL`` is set, else an in-process dictionary."""

from __future__ import annotations

import inspect
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from common.helpers.health import CallableCheck, ComponentCheck, ServiceUnavailable
from common.helpers.health.checks.redis import PROBE_TTL_MS, RedisWriteCheck


class Cache(Protocol):
    """What jobs may do with the cache."""

    backend: str

    def get(self, key: str) -> str | None: ...
    def set(self, key: str, value: str, ttl: float | None = None) -> None: ...
    def delete(self, *keys: str) -> int: ...
    def keys(self, prefix: str) -> list[str]: ...
    def health_check(self) -> ComponentCheck: ...


class RedisCache:
    """A redis-py client on a pool with connect/read timeouts and no retries.

    Retries are off because redis-py 6+ retries three times by default, which
    multiplies a hung server's delay. Health checks use their own client on
    the same URL whose timeouts match ``HEALTH_CHECK_TIMEOUT``.
    """

    backend = "redis"

    def __init__(self, url: str, socket_timeout: float, check_timeout: float, key_prefix: str) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # A new connection costs one round trip per handshake command, and on a
        # slow link a fresh connection's first PING must still fit the deadline:
        # RESP2 (no HELLO, no maintenance-notification opt-in) and no CLIENT SETINFO.
        handshake: dict[str, Any] = {"protocol": 2}
        if "driver_info" in inspect.signature(redis.Redis.__init__).parameters:
            handshake["driver_info"] = None
        else:
            handshake.update(lib_name=None, lib_version=None)

        def client(timeout: float) -> Any:
            return redis.Redis.from_url(
                url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=Retry(NoBackoff(), 0),
                decode_responses=True, **handshake,
            )

        self.client = client(socket_timeout)
        self._check_client = client(check_timeout)
        self._key_prefix = key_prefix

    def get(self, key: str) -> str | None:
        return self.client.get(key)

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        self.client.set(key, value, px=int(ttl * 1000) if ttl else None)

    def delete(self, *keys: str) -> int:
        return self.client.delete(*keys) if keys else 0

    def keys(self, prefix: str) -> list[str]:
        return list(self.client.scan_iter(match=f"{_escape_glob(prefix)}*", count=500))

    def health_check(self) -> ComponentCheck:
        return RedisWriteCheck(self._check_client, self._key_prefix)


class InProcessCache:
    """A thread-safe dictionary with expiry, private to one process.

    It lets a first ``make run`` work with nothing installed; each gunicorn
    worker has its own copy, so it is no shared cache.
    """

    backend = "in-process"

    def __init__(self, key_prefix: str) -> None:
        self._items: dict[str, tuple[str, float | None]] = {}
        self._lock = threading.Lock()
        self._key_prefix = key_prefix

    def get(self, key: str) -> str | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            value, expires = item
            if expires is not None and expires <= time.monotonic():
                del self._items[key]
                return None
            return value

    def set(self, key: str, value: str, ttl: float | None = None) -> None:
        with self._lock:
            self._items[key] = (value, time.monotonic() + ttl if ttl else None)

    def delete(self, *keys: str) -> int:
        with self._lock:
            return sum(self._items.pop(key, None) is not None for key in keys)

    def keys(self, prefix: str) -> list[str]:
        with self._lock:
            return [key for key in self._items if key.startswith(prefix)]

    def health_check(self) -> ComponentCheck:
        def probe() -> None:
            key, token = f"{self._key_prefix}health-probe:{uuid.uuid4().hex}", uuid.uuid4().hex
            self.set(key, token, ttl=PROBE_TTL_MS / 1000)
            read_back = self.get(key)
            self.delete(key)
            if read_back != token:
                raise ServiceUnavailable("read back a different value than written")

        return CallableCheck(probe, backend=self.backend)


def _escape_glob(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def build_cache(settings: Mapping[str, Any]) -> Cache:
    """Return the cache the settings ask for."""
    key_prefix = f"{settings['SERVICE_NAME']}:"  # the namespace of the service's own keys
    if settings["REDIS_URL"]:
        return RedisCache(settings["REDIS_URL"], settings["CACHE_SOCKET_TIMEOUT"], settings["HEALTH_CHECK_TIMEOUT"],
                          key_prefix)
    return InProcessCache(key_prefix)

