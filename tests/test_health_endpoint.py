"""/health's contract: the seed's body, status codes, HEAD, liveness, caching headers, and real gunicorn under load."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import DATABASE_URL, REDIS_URL
from tests.support.servers import http_get, wait_until

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def test_health_body_has_exactly_the_seeds_fields(make_app):
    app = make_app(HEALTH_CRITICAL_COMPONENTS="cache,database")
    response = app.test_client().get("/health")
    body = response.json
    assert list(body) == ["status", "components", "timestamp", "service"]
    assert set(body["components"]) == {"cache", "database", "scheduler"}
    assert TIMESTAMP.match(body["timestamp"])
    assert body["service"] == "worker-service"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.mimetype == "application/json"


def test_health_is_degraded_with_200_when_only_a_non_critical_component_is_down(make_app):
    app = make_app(HEALTH_CRITICAL_COMPONENTS="cache,database", SERVICE_NAME="jobs-eu")
    response = app.test_client().get("/health")
    assert response.status_code == 200
    assert response.json["status"] == "degraded"
    assert response.json["components"]["scheduler"] == "unavailable"
    assert response.json["service"] == "jobs-eu"


def test_head_health_gives_the_same_code_and_no_body(make_app):
    client = make_app().test_client()  # no scheduler here: scheduler is critical by default
    get, head = client.get("/health"), client.head("/health")
    assert get.status_code == head.status_code == 503
    assert head.get_data() == b""


def test_liveness_touches_no_dependency(make_app, hung_listener):
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{hung_listener.port}/0")
    started = time.perf_counter()
    response = app.test_client().get("/health/live")
    assert response.status_code == 200 and response.json["status"] == "alive"
    # A new app's first request on a loaded host, yet under the 0.5 s a check of the hung Redis would wait.
    assert time.perf_counter() - started < 0.4
    assert hung_listener._held == []  # nothing connected to the hung Redis


def test_unknown_paths_and_methods_answer_json_errors(make_app):
    client = make_app().test_client()
    assert client.get("/nope").status_code == 404 and client.get("/nope").json["error"] == "Not Found"
    response = client.post("/health")
    assert response.status_code == 405 and "GET" in response.headers["Allow"]


def test_gunicorn_serves_health_with_every_component_available_through_redis_and_postgresql(gunicorn):
    server = gunicorn(REDIS_URL=REDIS_URL, DATABASE_URL=DATABASE_URL, WEB_CONCURRENCY="2", HEALTH_CACHE_TTL="0")
    # The scheduler's first heartbeat may land a moment after the first worker answers.
    status, _, body = wait_until(lambda: (r := server.get("/health"))[0] == 200 and r, timeout=10, what="200")
    assert body["components"] == {"cache": "available", "database": "available", "scheduler": "available"}


def test_fifty_concurrent_probes_against_a_hung_redis_all_answer_503_within_one_deadline(gunicorn, hung_listener):
    """Each worker's probes answer from its checks, made at boot (one 0.5 s deadline and its retry) and on a timer.

    1 s is left for 50 connections queueing on 3 x 4 gthread slots on a loaded host; probes that each waited a
    deadline of their own, a slot at a time, would take ceil(50 / 12) x 0.5 = 2.5 s at least.
    """
    server = gunicorn(REDIS_URL=f"redis://127.0.0.1:{hung_listener.port}/0", WEB_CONCURRENCY="3")

    def probe(_):
        started = time.perf_counter()
        status, _, body = http_get(server.url + "/health", timeout=5, headers={"Connection": "close"})
        return status, body["components"]["cache"], time.perf_counter() - started

    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(probe, range(50)))
    assert {(status, cache) for status, cache, _ in results} == {(503, "unavailable")}
    worst = max(elapsed for _, _, elapsed in results)
    assert worst < 0.5 + 1.0, f"slowest probe took {worst:.3f} s"
