"""GET /health against real dependencies and their faults: refused, hung, stopped, bad credentials, recovery."""

from __future__ import annotations

import time

import pytest

from tests.conftest import DATABASE_URL, REDIS_URL
from tests.support.private_services import PrivatePostgres, PrivateRedis
from tests.support.servers import wait_until

NO_SCHEDULER = {"HEALTH_CRITICAL_COMPONENTS": "cache,database"}  # no scheduler runs in-process here


def timed_get(client, path="/health"):
    started = time.perf_counter()
    response = client.get(path)
    return response, time.perf_counter() - started


def test_health_is_available_through_real_redis_and_postgresql(make_app):
    app = make_app(REDIS_URL=REDIS_URL, DATABASE_URL=DATABASE_URL, **NO_SCHEDULER)
    response = app.test_client().get("/health")
    assert response.status_code == 200
    assert response.json["components"]["cache"] == "available"
    assert response.json["components"]["database"] == "available"
    results = app.extensions["health"].run()
    assert (results["cache"].backend, results["database"].backend) == ("redis", "postgresql")


def test_health_is_503_within_a_second_when_redis_is_refused(make_app):
    app = make_app(REDIS_URL="redis://127.0.0.1:1/0", **NO_SCHEDULER)
    response, elapsed = timed_get(app.test_client())
    assert response.status_code == 503
    assert response.json["status"] == "unavailable"
    assert response.json["components"] == {"cache": "unavailable", "database": "available", "scheduler": "unavailable"}
    assert elapsed < 1.0
    assert app.extensions["health"].run()["cache"].reason == "connection refused"


def test_health_is_503_within_a_second_when_redis_hangs(make_app, hung_listener):
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{hung_listener.port}/0", HEALTH_CACHE_TTL=0, **NO_SCHEDULER)
    response, elapsed = timed_get(app.test_client())
    assert response.status_code == 503
    assert response.json["components"]["cache"] == "unavailable"
    assert elapsed < 1.0
    assert "timed out" in app.extensions["health"].run()["cache"].reason


def test_health_is_503_within_a_second_when_postgresql_hangs(make_app, hung_listener):
    app = make_app(DATABASE_URL=f"postgresql://app:s3cr3t-pw@127.0.0.1:{hung_listener.port}/db", **NO_SCHEDULER)
    response, elapsed = timed_get(app.test_client())
    assert response.status_code == 503
    assert response.json["components"]["database"] == "unavailable"
    assert elapsed < 1.0
    assert "s3cr3t-pw" not in response.get_data(as_text=True)


@pytest.fixture
def private_redis(tmp_path):
    """``private_redis(password=None)`` starts a redis-server; every one is stopped after the test, however it ends
    (a test may stop and start it again: the last process started is the one stopped)."""
    servers: list[PrivateRedis] = []

    def start(password: str | None = None) -> PrivateRedis:
        server = PrivateRedis(tmp_path, password=password)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def test_redis_with_a_wrong_password_is_unavailable_and_the_password_is_never_shown(make_app, private_redis):
    server = private_redis(password="the-right-one")
    app = make_app(REDIS_URL=f"redis://:Wr0ngPassw0rd@127.0.0.1:{server.port}/0", **NO_SCHEDULER)
    response = app.test_client().get("/health")
    assert response.status_code == 503
    reason = app.extensions["health"].run()["cache"].reason
    assert "authentication" in reason.lower() or "auth" in reason.lower()
    assert "Wr0ngPassw0rd" not in reason and "Wr0ngPassw0rd" not in response.get_data(as_text=True)


def test_postgresql_with_an_unknown_role_is_unavailable(make_app):
    app = make_app(DATABASE_URL="postgresql://no_such_role:pw-canary-1@127.0.0.1:5432/test", **NO_SCHEDULER)
    assert app.test_client().get("/health").status_code == 503
    reason = app.extensions["health"].run()["database"].reason
    assert "no_such_role" in reason and "pw-canary-1" not in reason


@pytest.fixture(scope="module")
def private_postgres():
    server = PrivatePostgres().init()
    server.start()
    yield server
    try:
        server.stop()
    except RuntimeError:
        pass  # the test may have left it stopped
    server.remove()


def test_postgresql_stopped_then_started_goes_unavailable_then_available_again(make_app, private_postgres):
    ttl, timeout = 0.3, 0.5
    app = make_app(DATABASE_URL=private_postgres.url, HEALTH_CACHE_TTL=ttl, HEALTH_CHECK_TIMEOUT=timeout, **NO_SCHEDULER)
    client = app.test_client()
    assert client.get("/health").json["components"]["database"] == "available"

    private_postgres.stop()
    response = wait_until(lambda: (r := client.get("/health")).status_code == 503 and r, timeout=ttl + timeout + 2,
                          what="database unavailable after stop")
    assert response.json["components"]["database"] == "unavailable"

    private_postgres.start()
    came_back = time.monotonic()
    wait_until(lambda: client.get("/health").status_code == 200, timeout=ttl + timeout + 3, what="database back")
    assert time.monotonic() - came_back <= ttl + timeout + 3


def test_redis_that_comes_back_is_available_within_ttl_plus_timeout(make_app, private_redis):
    server = private_redis()
    port = server.port
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{port}/0", HEALTH_CACHE_TTL=0.5, **NO_SCHEDULER)
    client = app.test_client()
    assert client.get("/health").status_code == 200
    server.stop()
    wait_until(lambda: client.get("/health").status_code == 503, timeout=3, what="redis down")
    server.start()
    restarted = time.monotonic()
    wait_until(lambda: client.get("/health").status_code == 200, timeout=3, what="redis back")
    assert time.monotonic() - restarted <= 0.5 + 0.5 + 0.5  # TTL + timeout + polling slack


# The proxy holds each reply ``delay`` s. 0.1: a fresh connection's first check (two replies held, about 0.2 s)
# stays well under the 0.5 s deadline on a loaded host; 0.8: even one reply misses it.
@pytest.mark.parametrize(("delay", "expected"), [(0.1, "available"), (0.8, "unavailable")])
def test_slow_redis_is_available_under_the_timeout_and_unavailable_past_it(make_app, delay, expected):
    from tests.support.servers import DelayProxy

    proxy = DelayProxy(6379, delay)
    try:
        app = make_app(REDIS_URL=f"redis://127.0.0.1:{proxy.port}/15", HEALTH_CACHE_TTL=0, **NO_SCHEDULER)
        response, elapsed = timed_get(app.test_client())
        assert response.json["components"]["cache"] == expected
        assert elapsed < 1.0
        result = app.extensions["health"].run()["cache"]
        assert result.latency >= min(delay, 0.5) * 0.9
    finally:
        proxy.close()
