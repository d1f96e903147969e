"""GET /jobs?state=&q=&offset=&limit=&runs=: the status page's paged listing, in-process on a seeded state store.

No scheduler runs: the jobs are published and their runs recorded straight into
the SQLite store the app reads, so every verdict is known in advance.
"""

from __future__ import annotations

import time

import pytest

from worker_service import create_app, resources
from worker_service.state import SqliteStateStore
from worker_service.state.records import JobDefinition
from worker_service.state.setup import STATE_FILE

READER = "listing-reader-token-4d1"
BEARER = {"Authorization": f"Bearer {READER}"}


def definition(job_id: str, name: str, critical: bool = False) -> JobDefinition:
    return JobDefinition(id=job_id, name=name, trigger="interval[1:00:00]", next_run_time=time.time() + 3600,
                         misfire_grace_time=None, max_instances=1, executor="default", paused=False, critical=critical)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    state = tmp_path_factory.mktemp("listing")
    store = SqliteStateStore(str(state / STATE_FILE))
    # Published order: healthy ones first, the problems last (only the listing's order brings them up).
    store.publish_jobs([definition("alpha", "Sync accounts"), definition("beta", "Send e-mails"),
                        definition("gamma", "Nightly report"), definition("warn", "Export metrics"),
                        definition("broken", "Purge sessions"), definition("broken_critical", "Charge invoices", True),
                        definition("warn_critical", "Rotate keys", True)])
    now = time.time()
    for job_id in ("alpha", "beta"):
        for k in range(25):
            store.record_run(job_id, "success", now - 600 + k, 0.5)
    for job_id in ("broken", "broken_critical"):
        for k in range(4):
            store.record_run(job_id, "error", now - 60 + k, 0.1, "RuntimeError", "upstream refused password=hunter2")
    for job_id in ("warn", "warn_critical"):
        store.record_run(job_id, "success", now - 30, 0.2)
        store.record_run(job_id, "error", now - 20, 0.2, "ValueError", "bad row")
    resources.reset()
    app = create_app({"WORKER_STATE_DIR": str(state), "STATUS_TOKEN": READER, "STATUS_CACHE_TTL": "0"})
    return app.test_client()


def page(client, query: str) -> dict:
    response = client.get("/jobs?" + query, headers=BEARER)
    assert response.status_code == 200, response.json
    return response.json


def test_a_page_lists_problems_first_critical_first_then_the_published_order(client):
    body = page(client, "limit=50")
    assert [job["id"] for job in body["jobs"]] == ["broken_critical", "broken", "warn_critical", "warn",
                                                   "alpha", "beta", "gamma"]
    assert (body["total"], body["matched"], body["offset"], body["limit"]) == (7, 7, 0, 50)
    broken = body["jobs"][1]
    assert broken["health"] == "unhealthy" and broken["figures"]["consecutive_failures"] == 4
    assert broken["figures"]["error_rate"] == 100.0 and "recent_runs" not in broken
    assert client.get("/jobs", headers=BEARER).json["jobs"][0]["id"] == "alpha"  # unpaged: as published, as always


def test_filters_by_state_and_by_every_word_of_q_and_pages_through_the_rest(client):
    assert [j["id"] for j in page(client, "state=warning")["jobs"]] == ["warn_critical", "warn"]
    assert [j["id"] for j in page(client, "state=pending,unhealthy")["jobs"]] == ["broken_critical", "broken", "gamma"]
    assert [j["id"] for j in page(client, "q=CHARGE")["jobs"]] == ["broken_critical"]  # the name, any case
    assert [j["id"] for j in page(client, "q=critical unhealthy")["jobs"]] == ["broken_critical"]  # every word
    assert [j["id"] for j in page(client, "q=consecutive")["jobs"]] == ["broken_critical", "broken"]  # the reason
    second = page(client, "limit=3&offset=3")
    assert [j["id"] for j in second["jobs"]] == ["warn", "alpha", "beta"] and second["matched"] == 7
    assert page(client, "offset=7")["jobs"] == []


def test_runs_gives_each_job_its_newest_runs_redacted(client):
    body = page(client, "q=broken&runs=3")
    runs = body["jobs"][0]["recent_runs"]
    assert len(runs) == 3 and [r["outcome"] for r in runs] == ["error"] * 3
    assert runs[0]["finished_at"] > runs[1]["finished_at"]  # newest first
    assert runs[0]["error"].startswith("RuntimeError: upstream refused") and "hunter2" not in runs[0]["error"]
    assert len(page(client, "q=alpha&runs=20")["jobs"][0]["recent_runs"]) == 20


@pytest.mark.parametrize("query", ["state=broken", "state=Healthy", "state=healthy,", "limit=0", "limit=201",
                                   "offset=-1", "offset=", "runs=21", "limit=ten", "q=" + "x" * 201])
def test_a_bad_parameter_is_400_naming_it(client, query):
    response = client.get("/jobs?" + query, headers=BEARER)
    assert response.status_code == 400 and query.split("=")[0] in response.json["message"], response.json


def test_an_unchanged_page_is_a_304_by_its_etag_and_needs_the_token(client):
    first = client.get("/jobs?limit=5&runs=20", headers=BEARER)
    tag = first.headers["ETag"]
    assert tag.startswith('W/"') and first.headers["Cache-Control"] == "private, no-cache"
    again = client.get("/jobs?limit=5&runs=20", headers={**BEARER, "If-None-Match": tag})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == tag
    other = client.get("/jobs?limit=4&runs=20", headers={**BEARER, "If-None-Match": tag})
    assert other.status_code == 200 and other.headers["ETag"] != tag
    assert client.get("/jobs?limit=5").status_code == 401
    chart = client.get("/status/runs", headers=BEARER)
    assert chart.status_code == 200 and client.get(
        "/status/runs", headers={**BEARER, "If-None-Match": chart.headers["ETag"]}).status_code == 304
    assert client.get("/status/overview").status_code == 401 and client.get("/status/runs").status_code == 401


def test_the_overview_is_the_report_without_any_job_and_the_chart_counts_the_history(client):
    overview = client.get("/status/overview", headers=BEARER).json
    analysis = overview["metrics"]["jobs_analysis"]
    assert "scheduled_jobs" not in overview["metrics"] and "job_health" not in analysis
    assert analysis["total_jobs"] == 7 and analysis["states"] == {"healthy": 2, "pending": 1, "unhealthy": 2,
                                                                   "warning": 2}
    chart = client.get("/status/runs", headers=BEARER).json
    assert chart["minutes"] == 60 and all(len(values) == 60 for values in chart["counts"].values())
    assert sum(chart["counts"]["success"]) == 52 and sum(chart["counts"]["error"]) == 10
