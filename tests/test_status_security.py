"""STATUS_TOKEN guards /status; no secret from any variable ever reaches a response or a log line."""

from __future__ import annotations

import pytest

from tests.support.servers import free_port, wait_until
from worker_service import control_token

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


# -- HTTP Basic (browsers) and the admin token (job control) ------------------------

ADMIN = "canary-admin-token-9d2e41"


def basic(user: str, password: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_with_the_token_as_password_reads_what_the_bearer_reads(make_app):
    client = make_app(STATUS_TOKEN=TOKEN, ADMIN_TOKEN=ADMIN).test_client()
    for path in ("/status", "/metrics", "/jobs"):
        assert client.get(path, headers=basic("anyone", TOKEN)).status_code == 200, path
        assert client.get(path, headers=basic("", TOKEN)).status_code == 200, path
        assert client.get(path, headers=basic("ops", ADMIN)).status_code == 200, path  # the admin token reads too
        assert client.get(path, headers={"Authorization": f"Bearer {ADMIN}"}).status_code == 200, path
        for wrong in (basic(TOKEN, "not-the-token"), basic("ops", ""), {"Authorization": "Basic %%%"},
                      {"Authorization": "Basic " + "x" * 10}):
            assert client.get(path, headers=wrong).status_code == 401, (path, wrong)


def test_a_401_offers_bearer_and_basic_on_separate_header_lines_so_browsers_prompt(make_app):
    client = make_app(STATUS_TOKEN=TOKEN, ADMIN_TOKEN=ADMIN).test_client()
    for method, path in (("GET", "/status"), ("GET", "/jobs"), ("POST", "/jobs/x/run")):
        response = client.open(path, method=method)
        assert response.status_code == 401
        assert response.headers.getlist("WWW-Authenticate") == [
            'Bearer realm="worker-service"', 'Basic realm="worker-service", charset="UTF-8"']
        assert TOKEN not in response.get_data(as_text=True) and ADMIN not in response.get_data(as_text=True)


# (STATUS_TOKEN, ADMIN_TOKEN, credential) -> the status of POST /jobs/<unknown>/run: 404 means the guard let it through.
CONTROL_ACCESS = [
    (None, None, None, 403), (None, None, "bearer-admin", 403),
    (TOKEN, None, None, 401), (TOKEN, None, "bearer-status", 403), (TOKEN, None, "bearer-wrong", 401),
    (None, ADMIN, None, 401), (None, ADMIN, "bearer-wrong", 401), (None, ADMIN, "bearer-admin", 404),
    (None, ADMIN, "basic-admin", 404),
    (TOKEN, ADMIN, None, 401), (TOKEN, ADMIN, "bearer-status", 403), (TOKEN, ADMIN, "basic-status", 403),
    (TOKEN, ADMIN, "bearer-admin", 404), (TOKEN, ADMIN, "basic-admin", 404),
]


@pytest.mark.parametrize(("status_token", "admin_token", "credential", "expected"), CONTROL_ACCESS)
def test_job_control_needs_the_admin_token(make_app, status_token, admin_token, credential, expected):
    settings = {key: value for key, value in (("STATUS_TOKEN", status_token), ("ADMIN_TOKEN", admin_token)) if value}
    client = make_app(**settings).test_client()
    headers = {
        None: {}, "bearer-admin": {"Authorization": f"Bearer {ADMIN}"},
        "bearer-status": {"Authorization": f"Bearer {TOKEN}"}, "bearer-wrong": {"Authorization": "Bearer nope-nope-nope"},
        "basic-admin": basic("ops", ADMIN), "basic-status": basic("ops", TOKEN),
    }[credential]
    response = client.post("/jobs/nope/run", headers=headers)
    assert response.status_code == expected, response.get_data(as_text=True)
    if expected == 403 and not admin_token:
        assert "ADMIN_TOKEN" in response.json["message"]  # control is off, and the answer says how to turn it on
    if expected == 403 and admin_token:
        assert "status token only reads" in response.json["message"]
    if expected == 404:
        assert response.json["message"] == "unknown job: 'nope'"


def test_no_http_method_gets_past_the_admin_guard(make_app):
    app = make_app(STATUS_TOKEN=TOKEN, ADMIN_TOKEN=ADMIN)
    client = app.test_client()
    for path in ("/jobs/x/run", "/jobs/x/pause", "/jobs/x/resume"):
        for method in EVERY_METHOD:
            missing = client.open(path, method=method)
            assert missing.status_code == 401 and "Allow" not in missing.headers, (method, path)
            reader = client.open(path, method=method, headers={"Authorization": f"Bearer {TOKEN}"})
            assert reader.status_code == 403 and "Allow" not in reader.headers, (method, path)
        admin = {"Authorization": f"Bearer {ADMIN}"}
        assert client.open(path, method="GET", headers=admin).status_code == 405
        assert client.open(path, method="OPTIONS", headers=admin).status_code == 200


def test_a_browsers_cross_site_request_cannot_control_jobs(make_app):
    client = make_app(ADMIN_TOKEN=ADMIN).test_client()
    credentials = basic("ops", ADMIN)
    for foreign in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        response = client.post("/jobs/nope/run", headers={**credentials, **foreign})
        assert response.status_code == 403 and "another site" in response.json["message"], foreign
    page = {control_token.HEADER: control_token.issue(ADMIN)}  # the status page's buttons send it
    for own in ({"Origin": "http://localhost"}, {"Origin": "http://localhost:8080", "Sec-Fetch-Site": "same-origin"},
                {}):
        assert client.post("/jobs/nope/run", headers={**credentials, **page, **own}).status_code == 404, own


def test_a_browsers_own_origin_request_also_needs_the_pages_control_token(make_app):
    client = make_app(ADMIN_TOKEN=ADMIN).test_client()
    own = {**basic("ops", ADMIN), "Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}
    for token in (None, "", "forged.token", control_token.issue("another-admin-token-0000"),
                  control_token.issue(ADMIN) + "x"):
        headers = {**own, **({control_token.HEADER: token} if token is not None else {})}
        response = client.post("/jobs/nope/run", headers=headers)
        assert response.status_code == 403 and control_token.HEADER in response.json["message"], token
    valid = {**own, control_token.HEADER: control_token.issue(ADMIN)}
    assert client.post("/jobs/nope/run", headers=valid).status_code == 404  # through the guard: the job is unknown
    # No browser header (curl, the CLI), or typed in (Sec-Fetch-Site: none): no page, no token needed.
    for plain in ({}, {"Sec-Fetch-Site": "none"}):
        assert client.post("/jobs/nope/run", headers={**basic("ops", ADMIN), **plain}).status_code == 404, plain


LOOPBACK, REMOTE = "127.0.0.1", "10.0.0.7"


@pytest.mark.parametrize(("base", "peer", "headers", "allowed"), [
    # Sec-Fetch-Site, when a browser sends it, decides: another port of this host is the same site, not the same origin
    ("http://localhost", LOOPBACK, {"Sec-Fetch-Site": "same-site"}, False),
    ("http://localhost", LOOPBACK, {"Sec-Fetch-Site": "same-site", "Origin": "http://localhost"}, False),
    ("http://localhost", LOOPBACK, {"Sec-Fetch-Site": "none"}, True),  # typed in, a bookmark
    ("http://localhost", LOOPBACK, {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost:9000"}, True),
    # else Origin must be this service's own: scheme, host and port
    ("http://localhost", LOOPBACK, {"Origin": "http://localhost:8081"}, False),  # another app on this host
    ("http://localhost", LOOPBACK, {"Origin": "https://localhost"}, False),
    ("http://localhost", LOOPBACK, {"Origin": "http://localhost.evil.example"}, False),
    ("http://localhost", LOOPBACK, {"Origin": "http://localhost:80"}, True),  # the default port, spelt out
    ("http://worker.example:8443", REMOTE, {"Origin": "http://worker.example:8443"}, True),
    ("http://worker.example:8443", REMOTE, {"Origin": "http://worker.example"}, False),
    ("http://worker.example:8443", REMOTE, {"Origin": "http://WORKER.example:8443"}, True),
    # behind nginx on this host: its X-Forwarded-Proto gives the scheme; another peer's is not believed
    ("http://worker.example", LOOPBACK, {"X-Forwarded-Proto": "https", "Origin": "https://worker.example"}, True),
    ("http://worker.example", LOOPBACK, {"X-Forwarded-Proto": "https", "Origin": "http://worker.example"}, False),
    ("http://worker.example", REMOTE, {"X-Forwarded-Proto": "https", "Origin": "https://worker.example"}, False),
    ("http://worker.example", REMOTE, {"X-Forwarded-Proto": "https", "Origin": "http://worker.example"}, True),
    # neither header: no browser (curl, the CLI)
    ("http://worker.example:8443", REMOTE, {}, True),
])
def test_a_control_post_passes_only_from_the_services_own_origin(make_app, base, peer, headers, allowed):
    client = make_app(ADMIN_TOKEN=ADMIN).test_client()
    page = {control_token.HEADER: control_token.issue(ADMIN)}  # as the status page's buttons send it
    response = client.post("/jobs/nope/run", base_url=base, headers={**basic("ops", ADMIN), **page, **headers},
                           environ_base={"REMOTE_ADDR": peer})
    if allowed:
        assert response.status_code == 404, response.json  # through the guard: the job is unknown
    else:
        assert response.status_code == 403 and "another site" in response.json["message"]


@pytest.mark.parametrize(("headers", "peer", "expected"), [
    ({"X-Requested-By": "alice"}, "10.0.0.7", "alice"),
    ({"X-Requested-By": "al<script>ice\t; rm -rf \x1b[31m"}, "10.0.0.7", "alscriptice rm -rf 31m"),
    ({"X-Requested-By": "x" * 300}, "10.0.0.7", "x" * 64),
    ({"X-Requested-By": f"ops {ADMIN}"}, "10.0.0.7", "ops"),  # a token typed as a name is masked, never kept
    ({**basic("bob", ADMIN)}, "10.0.0.7", "bob"),
    ({**basic(ADMIN, ADMIN)}, "10.0.0.7", "token@10.0.0.7"),
    ({}, "10.0.0.7", "token@10.0.0.7"),
    ({"X-Forwarded-For": "203.0.113.9"}, "10.0.0.7", "token@10.0.0.7"),  # only a proxy on this host is believed
    ({"X-Forwarded-For": "198.51.100.1, 203.0.113.9"}, "127.0.0.1", "token@203.0.113.9"),
    ({"X-Forwarded-For": "not an address"}, "127.0.0.1", "token@127.0.0.1"),
])
def test_who_asked_is_a_short_plain_name_or_the_token_and_the_clients_address(make_app, headers, peer, expected):
    from worker_service.control.requester import requested_by

    app = make_app(ADMIN_TOKEN=ADMIN)
    with app.test_request_context("/jobs/x/run", method="POST", headers=headers,
                                  environ_base={"REMOTE_ADDR": peer}):
        assert requested_by() == expected
