"""Supabase: the database check and the account job against a real PostgREST 12 behind a ``/rest/v1`` proxy.

The proxy (``postgrest`` fixture) records every request and can answer 503 or
never answer, so these tests see what supabase-py really sends and really gets.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from common.helpers.health import Status
from tests.support.postgrest import make_jwt
from tests.support.servers import wait_until

CHECK_TIMEOUT = 0.5
SETTINGS = {
    "HEALTH_CACHE_TTL": 0,
    "HEALTH_CHECK_TIMEOUT": CHECK_TIMEOUT,
    # No scheduler runs in-process, so its component is left out of the aggregate.
    "HEALTH_CRITICAL_COMPONENTS": "cache,database",
    "SERVICE_NAME": "worker-service",
}


@pytest.fixture(autouse=True)
def _no_inherited_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing from the environment may pick another cache or database, or change the check's settings."""
    for name in list(os.environ):
        if name.startswith(("SUPABASE_", "REDIS_", "DATABASE_", "HEALTH_", "ACCOUNTS_", "SERVICE_NAME")):
            monkeypatch.delenv(name)


@pytest.fixture
def supabase_app(make_app, postgrest):
    """Build an app whose database is the proxied PostgREST: ``supabase_app(key=..., **settings)``."""

    def build(key: str | None = None, **overrides):
        return make_app(SUPABASE_URL=postgrest.url, SUPABASE_KEY=key or postgrest.key, **{**SETTINGS, **overrides})

    return build


def get_health(app) -> tuple[int, dict, str]:
    response = app.test_client().get("/health")
    return response.status_code, response.get_json(), response.get_data(as_text=True)


def database_result(app):
    """The database CheckResult, with its reason (which /health does not show)."""
    return app.extensions["health"].run(["database"])["database"]


def rest_requests(postgrest) -> list:
    return [request for request in postgrest.requests if request.path.startswith("/rest/v1/")]


def assert_stays(predicate, duration: float, what: str, interval: float = 0.05) -> None:
    """Fail as soon as ``predicate`` turns false within ``duration`` seconds (an observation window, not a wait)."""
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        assert predicate(), f"{what} stopped holding"
        time.sleep(interval)
    assert predicate(), f"{what} stopped holding"


def test_supabase_check_client_keeps_the_sub_second_health_check_timeout(supabase_app):
    # postgrest-py truncates a float timeout with int(abs(timeout)): 0.5 s becomes 0, i.e. a non-blocking
    # connect that fails at once with "[Errno 115] Operation now in progress". An httpx.Timeout is kept as is.
    app = supabase_app()
    timeout = app.extensions["database"].client(CHECK_TIMEOUT).postgrest.session.timeout
    assert (timeout.connect, timeout.read) == (CHECK_TIMEOUT, CHECK_TIMEOUT), (
        f"the health check's HTTP client has timeouts {timeout}, not {CHECK_TIMEOUT} s: pass "
        "postgrest_client_timeout=httpx.Timeout(seconds) in SupabaseDatabase.client()"
    )


def test_health_database_is_available_via_one_head_limit_1_request_without_exact_count_when_key_and_table_are_good(
        supabase_app, postgrest):
    app = supabase_app()

    status, body, _ = get_health(app)
    assert body["components"]["database"] == "available", database_result(app)
    assert status == 200, body

    result = database_result(app)
    assert (result.status, result.backend, result.reason) == (Status.AVAILABLE, "supabase", None)

    requests = rest_requests(postgrest)
    assert len(requests) == 2, requests  # one per check run: /health, then run()
    for request in requests:
        assert (request.method, request.path) == ("HEAD", "/rest/v1/accounts"), request
        assert request.query.get("limit") == ["1"], request
        assert "count=" not in request.headers.get("prefer", ""), request
        assert request.headers.get("apikey") == postgrest.key
        assert request.headers.get("authorization") == f"Bearer {postgrest.key}"


def test_health_database_is_unavailable_with_401_authentication_reason_and_no_key_echoed_when_key_is_bad(
        supabase_app, postgrest):
    app = supabase_app(key=postgrest.bad_key)

    status, body, text = get_health(app)
    assert (status, body["components"]["database"]) == (503, "unavailable"), body

    result = database_result(app)
    assert result.status is Status.UNAVAILABLE
    assert "authentication" in result.reason, result.reason
    assert "401" in result.reason or "PGRST301" in result.reason, result.reason
    # The answer really came from PostgREST rejecting the bad key.
    assert [r.headers.get("apikey") for r in rest_requests(postgrest)] == [postgrest.bad_key] * 2

    signature = postgrest.bad_key.rsplit(".", 1)[1]
    for secret in (postgrest.bad_key, signature):
        assert secret not in result.reason
        assert secret not in text


def test_health_database_is_unavailable_with_table_not_found_reason_when_health_table_is_missing(
        supabase_app, postgrest):
    app = supabase_app(SUPABASE_HEALTH_TABLE="no_such_table")

    status, body, _ = get_health(app)
    assert (status, body["components"]["database"]) == (503, "unavailable"), body

    result = database_result(app)
    assert result.status is Status.UNAVAILABLE
    assert "no_such_table" in result.reason and "not found" in result.reason, result.reason
    # A HEAD answer has no body: one GET (limit=0) reads PostgREST's error code (42P01 / PGRST205).
    assert "42P01" in result.reason or "PGRST205" in result.reason, result.reason
    assert [(r.method, r.path) for r in rest_requests(postgrest)] == [
        ("HEAD", "/rest/v1/no_such_table"), ("GET", "/rest/v1/no_such_table")] * 2
    assert [r.query.get("limit") for r in rest_requests(postgrest)] == [["1"], ["0"]] * 2


def test_health_database_is_unavailable_within_the_check_timeout_and_without_retries_when_supabase_answers_503(
        supabase_app, postgrest):
    # A 1 s deadline: room for a new app's first request on a loaded host (past the deadline its reason would be
    # the engine's "timed out", not the 503), and still no room for supabase-py's first retry, 1 s after.
    app = supabase_app(HEALTH_CHECK_TIMEOUT=1.0)
    postgrest.set_mode("503")

    started = time.monotonic()
    result = database_result(app)
    elapsed = time.monotonic() - started

    assert elapsed < 1.0, f"the check took {elapsed:.2f} s (supabase-py retries 503 after 1, 2, 4 s)"
    assert result.status is Status.UNAVAILABLE
    # Not the engine's deadline ("no answer ... timed out"): the check itself returned on the first 503.
    assert "unavailable" in result.reason and "503" in result.reason, result.reason
    assert len(rest_requests(postgrest)) == 1, rest_requests(postgrest)
    # A retry would come 1 s after the first attempt: make sure none does.
    assert_stays(lambda: len(rest_requests(postgrest)) == 1, duration=1.3, what="exactly one request (no retry)")

    started = time.monotonic()
    status, body, _ = get_health(app)
    assert time.monotonic() - started < 1.0
    assert (status, body["components"]["database"]) == (503, "unavailable"), body


def test_health_answers_within_1_second_with_database_unavailable_when_supabase_hangs(supabase_app, postgrest):
    app = supabase_app()
    postgrest.set_mode("hang")

    started = time.monotonic()
    status, body, _ = get_health(app)
    elapsed = time.monotonic() - started

    assert elapsed < 1.0, f"/health took {elapsed:.2f} s"
    assert (status, body["components"]["database"]) == (503, "unavailable"), body
    # The request did reach the hung proxy: this was a hang, not a refused or failed connection.
    wait_until(lambda: rest_requests(postgrest), timeout=1.0, what="the check's request at the hung proxy")

    result = database_result(app)
    assert result.status is Status.UNAVAILABLE
    assert "timed out" in result.reason, result.reason


def test_health_database_becomes_available_again_within_cache_ttl_plus_check_timeout_after_supabase_recovers(
        supabase_app, postgrest):
    cache_ttl = 0.5
    app = supabase_app(HEALTH_CACHE_TTL=cache_ttl)
    postgrest.set_mode("503")

    status, body, _ = get_health(app)
    assert (status, body["components"]["database"]) == (503, "unavailable"), body

    postgrest.set_mode("pass")
    wait_until(lambda: get_health(app)[0] == 200, timeout=cache_ttl + CHECK_TIMEOUT,
               what="/health to answer 200 after Supabase recovered")
    status, body, _ = get_health(app)
    assert (status, body["components"]["database"]) == (200, "available"), body


def test_sync_accounts_job_copies_account_rows_from_supabase_into_the_cache(supabase_app, postgrest):
    rows = [(f"test-{uuid.uuid4()}", f"{uuid.uuid4().hex[:12]}@example.test") for _ in range(2)]
    with postgrest.connect() as connection:
        connection.execute("INSERT INTO public.accounts (id, email) VALUES (%s, %s), (%s, %s)",
                           [value for row in rows for value in row])
    try:
        app = supabase_app()
        assert app.extensions["cache"].backend == "in-process"

        from worker_service.jobs.accounts import sync_accounts

        count = sync_accounts()

        assert count >= 2
        for account_id, email in rows:
            cached = app.extensions["cache"].get(f"worker-service:account:{account_id}")
            assert cached is not None, f"account {account_id} was not cached"
            row = json.loads(cached)
            assert (row["id"], row["email"]) == (account_id, email)
            assert row["updated_at"]
        # It went through Supabase's REST API, not straight to PostgreSQL.
        assert any((r.method, r.path) == ("GET", "/rest/v1/accounts") for r in rest_requests(postgrest))
    finally:
        with postgrest.connect() as connection:
            connection.execute("DELETE FROM public.accounts WHERE id = ANY(%s)", ([row[0] for row in rows],))


# --- a URL that is not Supabase at all ------------------------------------------------------------


class _PlainServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class _Anything200(BaseHTTPRequestHandler):
    """A catch-all web app: 200 and an HTML page for every path (a single-page app's fallback route)."""

    def _page(self) -> None:
        body = b"<!doctype html><title>app</title>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = _page

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


class _StaticFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass


@pytest.fixture
def plain_http(tmp_path) -> Iterator:
    """``plain_http("static" | "catch-all")``: a web server that is not PostgREST; its URL."""
    servers: list[_PlainServer] = []

    def start(kind: str) -> str:
        if kind == "static":  # python -m http.server: 404 text/html for /rest/v1/<table>
            handler = lambda *args: _StaticFiles(*args, directory=str(tmp_path))  # noqa: E731
        else:
            handler = _Anything200
        server = _PlainServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("kind", "status"), [("static", "404"), ("catch-all", "200")])
def test_a_url_that_is_not_supabase_is_reported_as_such_and_not_as_a_missing_table(make_app, plain_http, kind, status):
    app = make_app(SUPABASE_URL=plain_http(kind), SUPABASE_KEY=make_jwt({"role": "anon"}, "some-secret"), **SETTINGS)

    result = database_result(app)

    assert result.status is Status.UNAVAILABLE, result
    assert "not a Supabase/PostgREST endpoint" in result.reason, result.reason
    assert status in result.reason and "not found" not in result.reason, result.reason


def test_the_first_probe_of_a_new_worker_finds_supabase_available(gunicorn, postgrest):
    # Importing supabase and building its client takes about 0.7 s here: inside the first probe's
    # 0.5 s deadline, the first /health of every new worker said the database was unavailable.
    server = gunicorn(SUPABASE_URL=postgrest.url, SUPABASE_KEY=postgrest.key, WEB_CONCURRENCY="1",
                      HEALTH_CHECK_TIMEOUT=str(CHECK_TIMEOUT), HEALTH_CACHE_TTL="0")
    status, _, body = server.get("/health")
    assert body["components"]["database"] == "available", (status, body)
