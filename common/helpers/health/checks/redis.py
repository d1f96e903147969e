"""Redis: PING through the service's pooled client."""

from __future__ import annotations

from typing import Any

from ..check import ComponentCheck
from ..errors import ServiceUnavailable


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
        import redis.exceptions as errors

        try:
            if not self._client.ping():
                raise ServiceUnavailable("PING got no PONG")
        except errors.AuthenticationError as error:
            raise ServiceUnavailable(f"authentication failed: {error}") from None
        except errors.TimeoutError:
            raise ServiceUnavailable("timed out waiting for PONG") from None
        except errors.ConnectionError as error:
            raise ServiceUnavailable(_connection_reason(error)) from None
        except errors.ResponseError as error:
            raise ServiceUnavailable(f"error reply: {error}") from None


def _connection_reason(error: Exception) -> str:
    text = str(error)
    if "refused" in text.lower():
        return "connection refused"
    return f"connection failed: {text}"
