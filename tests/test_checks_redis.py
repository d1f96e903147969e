"""The cache check proves what the service uses the cache for: a write, a read and a delete, not just PING.

Each test runs its own redis-server (tests/support/private_services.py) set up the way a real one goes wrong:
a read-only replica, a full cache under ``noeviction``, a server where the probe cannot clean up.
"""

from __future__ import annotations

import pytest

from tests.support.private_services import PrivateRedis
from tests.support.servers import free_port

NO_SCHEDULER = {"HEALTH_CRITICAL_COMPONENTS": "cache,database", "HEALTH_CACHE_TTL": 0}
PROBE_PREFIX = "worker-service:health-probe:"


@pytest.fixture
def private_redis(tmp_path):
    """``private_redis(*options)`` starts a redis-server with those options; all are stopped after the test."""
    servers: list[PrivateRedis] = []

    def start(*options: str) -> PrivateRedis:
        server = PrivateRedis(tmp_path, options=options)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def cache_result(app):
    return app.extensions["health"].run(["cache"])["cache"]


def test_a_read_only_replica_is_unavailable_because_writes_are_refused(make_app, private_redis):
    replica = private_redis("--replicaof", "127.0.0.1", str(free_port()))  # its master is not there
    assert replica.client().ping()  # what the old check looked at

    app = make_app(REDIS_URL=replica.url, **NO_SCHEDULER)
    response = app.test_client().get("/health")

    assert (response.status_code, response.json["components"]["cache"]) == (503, "unavailable"), response.json
    assert cache_result(app).reason == "read-only replica: writes refused"


def test_a_full_cache_under_noeviction_is_unavailable_because_writes_are_refused(make_app, private_redis):
    full = private_redis("--maxmemory", "1", "--maxmemory-policy", "noeviction")
    app = make_app(REDIS_URL=full.url, **NO_SCHEDULER)
    result = cache_result(app)
    assert result.reason == "out of memory (maxmemory reached): writes refused", result


def test_the_probe_writes_reads_and_deletes_one_key_and_leaves_nothing_behind(make_app, private_redis):
    server = private_redis()
    inspector = server.client()
    app = make_app(REDIS_URL=server.url, **NO_SCHEDULER)
    inspector.config_resetstat()

    result = cache_result(app)

    assert result.reason is None and result.status.value == "available", result
    stats = inspector.info("commandstats")
    assert {name: stats[f"cmdstat_{name}"]["calls"] for name in ("set", "get", "del")} == {"set": 1, "get": 1, "del": 1}
    assert inspector.dbsize() == 0


def test_a_probe_key_that_could_not_be_deleted_is_namespaced_and_expires(make_app, private_redis):
    server = private_redis("--rename-command", "DEL", "")  # the probe's clean-up fails
    inspector = server.client()
    app = make_app(REDIS_URL=server.url, **NO_SCHEDULER)

    result = cache_result(app)

    assert result.status.value == "unavailable" and "del" in result.reason.lower(), result
    left = inspector.keys("*")
    assert len(left) == 1 and left[0].startswith(PROBE_PREFIX), left
    assert 0 < inspector.pttl(left[0]) <= 30_000
