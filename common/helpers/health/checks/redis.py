"""Redis: PING, or a write, read and delete of an expiring probe key, through the service's pooled client.

A PING only proves that Redis answers. A read-only replica, a full cache under
``noeviction`` or an ACL user without write rights all answer PING and refuse
every write, so a service that writes to its cache should use
:class:`RedisWriteCheck`.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from typing import Any

from ..check import ComponentCheck
from ..errors import ServiceUnavailable

PROBE_TTL_MS = 30_000  # a probe key left behind (its DEL failed) disappears by itself


class RedisPingCheck(ComponentCheck):
    """PING a redis-py client.

    Give the client's pool a ``socket_connect_timeout`` and ``socket_timeout``
    no longer than the engine's timeout, and no retries, so a hung server
    frees the checking thread quickly.
    """

    backend = "redis"

    def __init__(self, client: Any) -> None:
        self._client = client

    def check(self) -> None:
        with _reasons():
            if not self._client.ping():
                raise ServiceUnavailable("PING got no PONG")


class RedisWriteCheck(ComponentCheck):
    """``SET <prefix>health-probe:<random> <token> PX 30000``, ``GET`` it, ``DEL`` it: one round trip.

    The key is new on every run, so concurrent checks (other workers, an
    abandoned run still in flight) never read each other's token, and it
    lives in the service's own key namespace, where an ACL that lets the
    service write lets the probe write. Client settings as for
    :class:`RedisPingCheck`.

    :param client: a redis-py client with ``decode_responses=True``.
    :param key_prefix: the service's namespace, e.g. ``"worker-service:"``.
    :raises ServiceUnavailable: with a short reason: "read-only replica: writes
        refused", "out of memory (maxmemory reached): writes refused",
        "permission denied: ...", "connection refused", "timed out ...".
    """

    backend = "redis"

    def __init__(self, client: Any, key_prefix: str) -> None:
        self._client = client
        self._key_prefix = key_prefix

    def check(self) -> None:
        key, token = f"{self._key_prefix}health-probe:{uuid.uuid4().hex}", uuid.uuid4().hex
        with _reasons():
            pipeline = self._client.pipeline(transaction=False)
            pipeline.set(key, token, px=PROBE_TTL_MS)
            pipeline.get(key)
            pipeline.delete(key)
            _, read_back, _ = pipeline.execute()
        if read_back != token:
            raise ServiceUnavailable("read back a different value than written")


@contextlib.contextmanager
def _reasons() -> Iterator[None]:
    """Turn redis-py's errors into ServiceUnavailable with a short reason."""
    import redis.exceptions as errors

    try:
        yield
    except errors.RedisError as error:
        raise ServiceUnavailable(_reason(error, errors)) from None


def _reason(error: Exception, errors: Any) -> str:
    # Subclasses before their bases: ReadOnlyError, OutOfMemoryError and NoPermissionError are
    # ResponseErrors; AuthenticationError is a ConnectionError.
    if isinstance(error, errors.ReadOnlyError):
        return "read-only replica: writes refused"
    if isinstance(error, errors.OutOfMemoryError):
        return "out of memory (maxmemory reached): writes refused"
    if isinstance(error, errors.NoPermissionError):
        return f"permission denied: {_message(error)}"
    if isinstance(error, errors.AuthenticationError):
        return f"authentication failed: {error}"
    if isinstance(error, errors.TimeoutError):
        return "timed out waiting for the reply"
    if isinstance(error, errors.ConnectionError):
        return _connection_reason(error)
    if isinstance(error, errors.ResponseError):
        return f"error reply: {_message(error)}"
    return f"{type(error).__name__}: {_message(error)}"


def _message(error: Exception) -> str:
    """The server's reply without redis-py's pipeline annotation ("Command # 3 (DEL key) of pipeline caused error: ")."""
    return str(error).rpartition(" of pipeline caused error: ")[2]


def _connection_reason(error: BaseException) -> str:
    text = str(error)
    if "refused" in text.lower():
        return "connection refused"
    return f"connection failed: {text}"
