"""GET /health/ready under real gunicorn: 503 starting, then 200 ready, then 503 draining on SIGTERM, at once."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time

from tests.support.servers import wait_until
from worker_service import readiness
from worker_service.readiness import DRAINING, READY, STARTING, Readiness


def test_readiness_goes_starting_ready_draining_and_draining_is_final():
    state = Readiness()
    assert state.state == STARTING
    state.warm_up(lambda: None)
    wait_until(lambda: state.state == READY, timeout=2, what="warm-up")
    state.begin_draining()
    state.mark_ready()  # a late first check must not undo a SIGTERM
    assert state.state == DRAINING


def test_a_failing_first_check_still_ends_starting():
    state = Readiness()

    def broken() -> None:
        raise RuntimeError("the engine never raises; a broken check must still not pin `starting`")

    state.warm_up(broken)
    wait_until(lambda: state.state == READY, timeout=2, what="warm-up after a failure")


def test_ready_is_503_starting_until_the_first_checks_complete(gunicorn, hung_listener):
    """With Redis hung the first checks take their whole timeout: until then the worker is not ready."""
    server = gunicorn(args=["-w", "1"], REDIS_URL=f"redis://127.0.0.1:{hung_listener.port}/0",
                      HEALTH_CHECK_TIMEOUT="3")
    status, _, body = server.get("/health/ready")
    assert (status, body["status"]) == (503, "starting")  # /health/live answered, but no check has completed
    status, _, body = wait_until(lambda: (r := server.get("/health/ready"))[2]["status"] != "starting" and r,
                                 timeout=15, what="the first checks done")
    assert (status, body["status"], body["components"]["cache"]) == (503, "unavailable", "unavailable")


def test_a_new_worker_is_ready_at_its_first_probe_without_any_probe_having_started_its_checks(gunicorn):
    """The first checks run when the worker boots, before it accepts connections: its first probe is no 503."""
    server = gunicorn(args=["-w", "2"], HEALTH_CACHE_TTL="0.5")
    wait_until(lambda: server.stderr().count("is ready: its first checks are done") == 2, timeout=15,
               what="both workers ready without any probe of /health/ready")
    status, head, body = server.get("/health/ready")  # the very first probe of /health/ready
    assert (status, body["status"]) == (200, "ready"), body
    assert set(body["components"]) == {"cache", "database", "scheduler"}
    assert head["Cache-Control"] == "no-store"
    status, _, body = server.get("/health")
    assert status == 200 and list(body) == ["status", "components", "timestamp", "service"]  # /health unchanged


def test_without_gunicorn_the_first_probe_starts_the_checks_503_starting_then_200_ready(make_app, monkeypatch):
    """No worker hook ran (tests, flask run): the first probe starts the checks, as before."""
    monkeypatch.setattr(readiness, "_process", Readiness())
    client = make_app(HEALTH_CRITICAL_COMPONENTS="cache,database").test_client()  # no heartbeat in-process
    first = client.get("/health/ready")
    assert (first.status_code, first.json["status"]) == (503, "starting")
    ready = wait_until(lambda: (r := client.get("/health/ready")).status_code == 200 and r, timeout=5, what="ready")
    assert ready.json["status"] == "ready"


def test_sigterm_turns_ready_to_503_draining_at_once_while_the_worker_still_answers(gunicorn):
    server = gunicorn(args=["-w", "1"], GUNICORN_GRACEFUL_TIMEOUT="5")
    wait_until(lambda: server.get("/health/ready")[0] == 200, timeout=5, what="ready")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)  # kept alive across the signal
    connection.request("GET", "/health/ready")
    response = connection.getresponse()
    assert (response.status, json.loads(response.read())["status"]) == (200, "ready")
    (worker,) = server.worker_pids()
    os.kill(worker, signal.SIGTERM)
    signalled = time.monotonic()

    def answer() -> tuple[int, str]:
        connection.request("GET", "/health/ready")
        response = connection.getresponse()
        return response.status, json.loads(response.read())["status"]

    seen = wait_until(lambda: (a := answer()) != (200, "ready") and a, timeout=1.5, what="draining")
    assert seen == (503, "draining") and time.monotonic() - signalled < 1.0  # same connection: the worker still serves
    connection.close()


def test_plain_health_keeps_its_body_and_code_while_the_worker_drains(make_app, monkeypatch):
    monkeypatch.setattr(readiness, "_process", Readiness())  # a real state of its own: draining is final
    client = make_app().test_client()
    before = client.get("/health")
    readiness.current().begin_draining()
    assert client.get("/health/ready").json["status"] == "draining"
    after = client.get("/health")
    assert after.status_code == before.status_code  # documented: /health answers about the dependencies only
    assert list(after.json) == list(before.json) == ["status", "components", "timestamp", "service"]
    assert (after.json["status"], after.json["components"]) == (before.json["status"], before.json["components"])


def test_ready_is_503_unavailable_when_a_critical_dependency_hangs(make_app, hung_listener):
    client = make_app(REDIS_URL=f"redis://127.0.0.1:{hung_listener.port}/0", HEALTH_CHECK_TIMEOUT=0.2).test_client()
    answer = wait_until(lambda: (r := client.get("/health/ready")).json["status"] != "starting" and r, timeout=3,
                        what="the first checks")
    assert answer.status_code == 503 and answer.json["status"] == "unavailable"
    assert answer.json["components"]["cache"] == "unavailable"
