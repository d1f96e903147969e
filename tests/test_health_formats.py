"""/health's other formats: application/health+json, ?verbose and ?exclude, and /health/<component>.

The health+json answers are checked by a validator written from the field list
of draft-inadarei-api-health-check-06 (sections 3 and 4), not by our own
schema, so a drift of ours from the draft shows here.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess

import pytest

from tests.conftest import DATABASE_URL, REDIS_URL
from tests.support.servers import free_port, wait_until

HEALTH_JSON = {"Accept": "application/health+json"}
TOKEN = "s3cret-token-for-tests"

# -- a validator from the draft's field list -----------------------------------------------------------------------
DRAFT_WORDS = {"pass", "warn", "fail"}
TOP_LEVEL = {"status", "version", "releaseId", "notes", "output", "checks", "links", "serviceId", "description"}
STRING_FIELDS = {"version", "releaseId", "output", "serviceId", "description"}


def _is_iso8601(value: object) -> bool:
    try:
        return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


def draft_problems(code: int, content_type: str, document: dict) -> list[str]:
    """Every way an answer breaks draft-06's rules; empty when it follows them."""
    problems = []
    if content_type.split(";")[0].strip() != "application/health+json":
        problems.append(f"media type {content_type!r} (section 3)")
    status = str(document.get("status", "")).lower()
    if status not in DRAFT_WORDS:
        problems.append(f"status {document.get('status')!r} is not pass/warn/fail (3.1)")
    if status in ("pass", "warn") and not 200 <= code < 400:
        problems.append(f"{status} with HTTP {code}: must be 2xx-3xx (3.1)")
    if status == "fail" and not 400 <= code < 600:
        problems.append(f"fail with HTTP {code}: must be 4xx-5xx (3.1)")
    problems += [f"unknown top-level field {key!r}" for key in set(document) - TOP_LEVEL]
    problems += [f"{key} is not a string" for key in STRING_FIELDS & set(document) if not isinstance(document[key], str)]
    if status == "pass" and "output" in document:
        problems.append("output on a pass (3.5)")
    for key, details in (document.get("checks") or {}).items():
        if key.count(":") > 1:
            problems.append(f"check key {key!r}: names must hold no colon (4)")
        if not isinstance(details, list) or not details:
            problems.append(f"check {key!r} is not a non-empty array (4)")
            continue
        for entry in details:
            problems += [f"{key}: {problem}" for problem in _check_problems(entry)]
    return problems


def _check_problems(entry: dict) -> list[str]:
    problems = []
    if not entry:
        problems.append("an empty details object (4: SHOULD have at least one key)")
    if "status" in entry and str(entry["status"]).lower() not in DRAFT_WORDS:
        problems.append(f"status {entry['status']!r} (4.5)")
    if "observedValue" in entry and "observedUnit" not in entry:
        problems.append("observedValue without observedUnit (4.4)")
    if "time" in entry and not _is_iso8601(entry["time"]):
        problems.append(f"time {entry['time']!r} is not ISO 8601 (4.7)")
    if str(entry.get("status", "")).lower() == "pass" and "output" in entry:
        problems.append("output on a pass (4.8)")
    for key in ("componentId", "componentType", "observedUnit", "output"):
        if key in entry and not isinstance(entry[key], str):
            problems.append(f"{key} is not a string")
    return problems


def assert_follows_the_draft(response) -> dict:
    document = json.loads(response.get_data())
    assert draft_problems(response.status_code, response.headers["Content-Type"], document) == []
    return document


def test_the_validator_catches_what_the_draft_forbids():
    broken = {"status": "ok?", "extra": 1, "checks": {"a:b:c": [{"status": "pass", "output": "x", "observedValue": 3,
                                                                    "time": "yesterday"}], "d": []}}
    problems = draft_problems(200, "application/json", broken)
    assert len(problems) == 8, problems
    assert draft_problems(200, "application/health+json", {"status": "fail"}) == ["fail with HTTP 200: must be 4xx-5xx (3.1)"]


# -- application/health+json ---------------------------------------------------------------------------------------
def test_health_json_is_warn_with_200_and_keys_each_check_component_colon_measurement(make_app):
    app = make_app(HEALTH_CRITICAL_COMPONENTS="cache,database", SERVICE_NAME="jobs-eu")
    response = app.test_client().get("/health", headers=HEALTH_JSON)
    document = assert_follows_the_draft(response)
    assert response.status_code == 200 and document["status"] == "warn"  # the scheduler is down, not critical
    assert document["serviceId"] == "jobs-eu" and document["version"] and document["description"]
    assert list(document["checks"]) == ["cache:responseTime", "database:responseTime", "scheduler:responseTime"]
    cache = document["checks"]["cache:responseTime"][0]
    assert cache["componentId"] == "cache" and cache["componentType"] == "datastore" and cache["status"] == "pass"
    assert cache["observedUnit"] == "ms" and 0 < cache["observedValue"] < 500
    assert "output" not in cache
    assert document["checks"]["scheduler:responseTime"][0]["componentType"] == "component"
    assert document["checks"]["scheduler:responseTime"][0]["status"] == "fail"


def test_health_json_is_fail_with_503_when_a_critical_component_is_unavailable(make_app):
    response = make_app().test_client().get("/health", headers=HEALTH_JSON)  # no scheduler runs in-process
    document = assert_follows_the_draft(response)
    assert (response.status_code, document["status"]) == (503, "fail")


def test_health_json_time_is_when_the_check_ran_not_when_it_was_asked(make_app):
    client = make_app(HEALTH_CACHE_TTL="30").test_client()
    first = client.get("/health", headers=HEALTH_JSON).json
    plain_timestamp = client.get("/health").json["timestamp"]
    second = client.get("/health", headers=HEALTH_JSON).json
    times = [entry[0]["time"] for entry in second["checks"].values()]
    assert times == [entry[0]["time"] for entry in first["checks"].values()]  # the reused result keeps its time
    assert all(time < plain_timestamp for time in times)


def test_health_json_is_never_a_body_encoded_from_older_results(make_app):
    client = make_app(HEALTH_CACHE_TTL="0").test_client()  # every request checks afresh
    first, second = (client.get("/health", headers=HEALTH_JSON).json for _ in range(2))
    assert first["checks"]["cache:responseTime"][0]["time"] < second["checks"]["cache:responseTime"][0]["time"]


def test_health_json_may_be_cached_no_longer_than_the_services_own_ttl(make_app):
    response = make_app(HEALTH_CACHE_TTL="30").test_client().get("/health", headers=HEALTH_JSON)
    max_age = int(response.headers["Cache-Control"].removeprefix("max-age="))
    assert 1 <= max_age <= 30
    assert response.headers["Vary"] == "Accept"
    uncached = make_app(HEALTH_CACHE_TTL="0").test_client().get("/health", headers=HEALTH_JSON)
    assert uncached.headers["Cache-Control"] == "no-store"


def test_health_json_output_needs_the_status_token_when_one_is_set(make_app):
    client = make_app(STATUS_TOKEN=TOKEN).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong"}):
        response = client.get("/health", headers={**HEALTH_JSON, **headers})
        assert response.status_code == 503 and "output" not in response.get_data(as_text=True)
    granted = client.get("/health", headers={**HEALTH_JSON, "Authorization": f"Bearer {TOKEN}"})
    document = assert_follows_the_draft(granted)
    assert document["checks"]["scheduler:responseTime"][0]["output"] == "no scheduler has run on this host"
    assert granted.headers["Cache-Control"].startswith("private") or granted.headers["Cache-Control"] == "no-store"
    assert granted.headers["Vary"] == "Accept, Authorization"


def test_health_json_output_is_there_for_everyone_without_a_status_token(make_app):
    document = make_app().test_client().get("/health", headers=HEALTH_JSON).json
    assert document["checks"]["scheduler:responseTime"][0]["output"] == "no scheduler has run on this host"


@pytest.mark.parametrize("accept", ["*/*", "application/json", "application/json, application/health+json;q=0.5",
                                    "application/health+json;q=0", "text/html"])
def test_health_keeps_the_seeds_body_unless_accept_prefers_health_json(make_app, accept):
    response = make_app().test_client().get("/health", headers={"Accept": accept})
    assert response.mimetype == "application/json" and response.headers["Cache-Control"] == "no-store"
    assert list(response.json) == ["status", "components", "timestamp", "service"]


# -- ?verbose and ?exclude -----------------------------------------------------------------------------------------
def test_verbose_lists_each_check_and_withholds_reasons_without_the_token(make_app):
    client = make_app(STATUS_TOKEN=TOKEN).test_client()
    response = client.get("/health?verbose")
    assert response.status_code == 503 and response.mimetype == "text/plain"
    assert response.get_data(as_text=True) == (
        "[+]cache ok\n[+]database ok\n[-]scheduler failed: reason withheld\nhealth check failed\n")
    granted = client.get("/health?verbose", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(as_text=True)
    assert "[-]scheduler failed: no scheduler has run on this host\n" in granted


def test_exclude_drops_a_check_from_the_answer_and_from_the_overall_status(make_app):
    client = make_app().test_client()
    assert client.get("/health").status_code == 503
    response = client.get("/health?exclude=scheduler")
    assert response.status_code == 200
    assert response.json["status"] == "available" and set(response.json["components"]) == {"cache", "database"}
    document = assert_follows_the_draft(client.get("/health?exclude=scheduler&exclude=cache", headers=HEALTH_JSON))
    assert (document["status"], list(document["checks"])) == ("pass", ["database:responseTime"])


def test_exclude_ignores_unknown_names_as_kubernetes_does_and_verbose_warns_of_them(make_app):
    client = make_app().test_client()
    assert client.get("/health?exclude=nope").status_code == 503
    text = client.get("/health?verbose&exclude=scheduler&exclude=nope").get_data(as_text=True)
    assert text == ("[+]cache ok\n[+]database ok\n[+]scheduler excluded: ok\n"
                    'warn: some health checks cannot be excluded: no matches for "nope"\nhealth check passed\n')


# -- /health/<component> -------------------------------------------------------------------------------------------
def test_each_component_answers_for_itself_so_a_refused_redis_fails_only_the_cache(make_app):
    client = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0").test_client()
    cache, database = client.get("/health/cache"), client.get("/health/database")
    assert (cache.status_code, cache.json["status"]) == (503, "unavailable")
    assert (database.status_code, database.json["status"]) == (200, "available")
    assert list(database.json) == ["status", "component", "timestamp", "service"]
    assert database.json["component"] == "database"
    document = assert_follows_the_draft(client.get("/health/cache", headers=HEALTH_JSON))
    assert list(document["checks"]) == ["cache:responseTime"] and document["status"] == "fail"
    assert client.get("/health/cache?verbose").get_data(as_text=True).startswith("[-]cache failed: ")


def test_an_unknown_component_is_404_naming_the_known_ones(make_app):
    response = make_app().test_client().get("/health/nope")
    assert response.status_code == 404
    assert response.json == {"error": "Not Found",
                             "message": "unknown component 'nope'; known components: cache, database, scheduler"}


def test_liveness_is_not_taken_for_a_component(make_app):
    response = make_app().test_client().get("/health/live")
    assert response.status_code == 200 and response.json["status"] == "alive"


# -- curl against real gunicorn ------------------------------------------------------------------------------------
def _curl(url: str, *args: str) -> tuple[int, str, str]:
    """(HTTP code, Content-Type, body) as curl sees them."""
    marker = "\n--curl--"
    out = subprocess.run(["curl", "-s", "--max-time", "5", *args, "-w", marker + "%{http_code} %{content_type}", url],
                         capture_output=True, text=True, check=True).stdout
    body, _, tail = out.rpartition(marker)
    code, _, content_type = tail.partition(" ")
    return int(code), content_type, body


def test_curl_reads_health_json_per_component_checks_and_verbose_from_gunicorn(gunicorn):
    server = gunicorn(REDIS_URL=REDIS_URL, DATABASE_URL=DATABASE_URL, WEB_CONCURRENCY="1", HEALTH_CACHE_TTL="0")
    # The scheduler's first heartbeat may land a moment after the worker answers.
    code, content_type, body = wait_until(
        lambda: (answer := _curl(server.url + "/health", "-H", "Accept: application/health+json"))[0] == 200 and answer,
        timeout=10, what="pass")
    document = json.loads(body)
    assert draft_problems(code, content_type, document) == []
    assert document["status"] == "pass" and {entry[0]["status"] for entry in document["checks"].values()} == {"pass"}
    assert [entry[0]["componentId"] for entry in document["checks"].values()] == ["cache", "database", "scheduler"]
    assert _curl(server.url + "/health")[1] == "application/json"  # curl's default Accept: */*
    for name in ("cache", "database", "scheduler"):
        assert _curl(server.url + f"/health/{name}", "-o", "/dev/null")[0] == 200
    assert _curl(server.url + "/health/nope", "-o", "/dev/null")[0] == 404
    code, content_type, text = _curl(server.url + "/health?verbose&exclude=cache")
    assert (code, content_type) == (200, "text/plain; charset=utf-8")
    assert text == "[+]cache excluded: ok\n[+]database ok\n[+]scheduler ok\nhealth check passed\n"
