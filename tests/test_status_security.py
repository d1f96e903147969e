"""STATUS_TOKEN guards /status; no secret from any variable ever reaches a response or a log line."""

from __future__ import annotations

import pytest

from tests.support.servers import free_port, wait_until

TOKEN = "canary-status-token-7f3a"


def test_status_requires_the_bearer_token_when_one_is_set(make_app):
    client = make_app(STATUS_TOKEN=TOKEN).test_client()
    missing = client.get("/status")
    assert missing.status_code == 401 and "Bearer" in missing.headers["WWW-Authenticate"]
    assert client.get("/status", headers={"Authorization": "Bearer wrong-token-123"}).status_code == 401
    assert client.get("/status", headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
    assert client.get("/status", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert TOKEN not in missing.get_data(as_text=True)


def test_health_stays_public_and_shows_statuses_only(make_app):
    client = make_app(STATUS_TOKEN=TOKEN, REDIS_URL="redis://127.0.0.1:1/0").test_client()
    response = client.get("/health")
    assert response.status_code == 503
    assert set(response.json) == {"status", "components", "timestamp", "service"}
    assert "refused" not in response.get_data(as_text=True)


def test_status_is_open_without_a_token(make_app):
    assert make_app().test_client().get("/status").status_code == 200


CANARIES = {
    "redis": "canary-redis-pw-1",
    "db": "canary-db-pw-2",
    "key": "canary-supabase-key-3",
    "token": TOKEN,
}


@pytest.fixture
def secret_server(gunicorn, hung_listener):
    refused = free_port()
    server = gunicorn(
        REDIS_URL=f"redis://default:{CANARIES['redis']}@127.0.0.1:{refused}/0",
        SUPABASE_URL=f"http://127.0.0.1:{hung_listener.port}",
        SUPABASE_KEY=CANARIES["key"],
        DATABASE_URL=f"postgresql://app:{CANARIES['db']}@127.0.0.1:{refused}/app",
        STATUS_TOKEN=TOKEN, HEALTH_CACHE_TTL="0", STATUS_CACHE_TTL="0", LOG_LEVEL="DEBUG",
    )
    return server


def test_canary_secrets_never_appear_in_responses_or_logs(secret_server):
    server = secret_server
    seen = []
    for path, headers in [
        ("/health", {}), ("/health/live", {}), ("/openapi.json", {}), ("/nope", {}),
        ("/status", {}), ("/status", {"Authorization": f"Bearer {TOKEN}"}),
        (f"/status?token={TOKEN}&key={CANARIES['key']}", {}),
    ]:
        status, headers_back, body = server.get(path, headers=headers)
        seen.append(f"{status} {headers_back} {body}")
    _, _, status_body = server.get("/status", headers={"Authorization": f"Bearer {TOKEN}"})
    reasons = {name: dep["reason"] for name, dep in status_body["metrics"]["dependencies"].items()}
    assert status_body["components"]["cache"] == "unavailable" and reasons["cache"]
    assert status_body["components"]["database"] == "unavailable" and reasons["database"]
    wait_until(lambda: "is unavailable" in server.stderr(), timeout=5, what="the failure logged")
    everything = "\n".join(seen) + server.stdout() + server.stderr()
    for name, canary in CANARIES.items():
        assert canary not in everything, f"the {name} secret leaked"


GUARDED_PATHS = {"/status", "/metrics"}
EVERY_METHOD = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "TRACE", "PROPFIND", "BREW"]


def guarded_paths(app) -> set[str]:
    """Every route whose view asks for the token: a guarded endpoint added later is covered too."""
    from worker_service.access import ACCESS_GUARD

    return {rule.rule for rule in app.url_map.iter_rules() if getattr(app.view_functions[rule.endpoint], ACCESS_GUARD, None)}


def test_no_http_method_gets_past_the_token_guard(make_app):
    # Flask answers OPTIONS itself and 405 for a method a route lacks, both without calling the view.
    app = make_app(STATUS_TOKEN=TOKEN)
    client = app.test_client()
    for path in sorted(GUARDED_PATHS):
        for method in EVERY_METHOD:
            response = client.open(path, method=method)
            assert response.status_code == 401, (method, path, response.status_code, response.headers)
            assert "Allow" not in response.headers, (method, path)
    assert guarded_paths(app) >= GUARDED_PATHS
    for path in sorted(guarded_paths(app)):
        for method in EVERY_METHOD:
            assert client.open(path, method=method).status_code == 401, (method, path)

    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert client.open("/status", method="OPTIONS", headers=bearer).status_code == 200
    assert client.open("/status", method="POST", headers=bearer).status_code == 405
    assert client.open("/metrics", method="HEAD", headers=bearer).status_code == 200
    # Unguarded routes keep their ordinary answers.
    assert client.open("/health", method="OPTIONS").status_code == 200
    assert client.open("/health/live", method="POST").status_code == 405
