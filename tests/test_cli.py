"""`worker-service check` and `worker-service status` against real running services."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.support.runs import jobs_file
from tests.support.servers import BIN, CannedHTTPServer, Gunicorn, base_env, free_port, wait_until

PLUGIN_LINE = re.compile(r"^WORKER-SERVICE (OK|WARNING|CRITICAL|UNKNOWN) - .+$")
TOKEN = "cli-test-token-123"
JOBS = """
[jobs.good]
name = "Good"
func = "tests.support.sample_jobs:noop"
trigger = "interval"
seconds = 1

[jobs.bad]
name = "Bad"
func = "tests.support.sample_jobs:always_fail"
trigger = "interval"
seconds = 1
"""


def run_cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    env = base_env(__import__("pathlib").Path("/tmp"))
    return subprocess.run([str(BIN / "worker-service"), *args], capture_output=True, text=True, timeout=timeout, env=env)


def start(workdir, **env):
    return Gunicorn(base_env(workdir / "state", HEALTH_CACHE_TTL="0", STATUS_CACHE_TTL="0",
                             SCHEDULER_HEARTBEAT_INTERVAL="1", **env), workdir).start()


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cli-ok")
    path = jobs_file(workdir / "jobs.toml", JOBS)
    server = start(workdir, WORKER_JOBS_FILE=str(path), STATUS_TOKEN=TOKEN, JOB_FAILURE_THRESHOLD="2")

    def ran():
        status, _, body = server.get("/status", headers={"Authorization": f"Bearer {TOKEN}"})
        health = body["metrics"]["jobs_analysis"]["job_health"]
        return health["good"]["success_count"] >= 1 and health["bad"]["error_count"] >= 2

    wait_until(ran, timeout=10, what="both jobs to run")
    yield server
    server.stop()


def test_check_is_ok_with_perfdata_when_the_service_is_available(healthy):
    done = run_cli("check", "--url", healthy.url)
    assert done.returncode == 0, done.stdout + done.stderr
    line = done.stdout.strip()
    assert PLUGIN_LINE.match(line) and line.startswith("WORKER-SERVICE OK")
    assert "| cache=1;;;0;1 database=1;;;0;1 scheduler=1;;;0;1" in line and len(done.stdout.splitlines()) == 1


@pytest.mark.parametrize(
    ("critical", "code", "label", "expected"),
    [("database,scheduler", 1, "WARNING", "cache=0;;;0;1"), ("cache,database,scheduler", 2, "CRITICAL", "cache unavailable")],
)
def test_check_is_warning_when_degraded_and_critical_when_unavailable(tmp_path, critical, code, label, expected):
    server = start(tmp_path, REDIS_URL="redis://127.0.0.1:1/0", HEALTH_CRITICAL_COMPONENTS=critical)
    try:
        done = run_cli("check", "--url", server.url)
        assert done.returncode == code and done.stdout.startswith(f"WORKER-SERVICE {label}"), done.stdout
        assert expected in done.stdout
    finally:
        server.stop()


def test_check_is_unknown_when_refused():
    done = run_cli("check", "--url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 3 and done.stdout.startswith("WORKER-SERVICE UNKNOWN") and "refused" in done.stdout


def test_check_is_unknown_on_timeout(hung_listener):
    done = run_cli("check", "--url", f"http://127.0.0.1:{hung_listener.port}", "--timeout", "0.5", timeout=10)
    assert done.returncode == 3 and "within 0.5 s" in done.stdout


@pytest.fixture
def not_json_server():
    def respond(path: str) -> tuple[int, str, bytes]:
        if path.startswith("/health"):
            return 502, "", b"<html>502 Bad Gateway</html>"
        return 200, "", b'["a", "list"]'

    server = CannedHTTPServer(respond)
    yield server.url
    server.close()


def test_check_is_unknown_when_the_answer_is_not_json_or_has_the_wrong_shape(not_json_server):
    done = run_cli("check", "--url", not_json_server)
    assert done.returncode == 3 and "not JSON" in done.stdout
    done = run_cli("check", "--url", not_json_server, "--job", "x")
    assert done.returncode == 3 and "unexpected shape" in done.stdout


def test_check_job_reports_each_jobs_health_and_needs_the_token(healthy):
    good = run_cli("check", "--url", healthy.url, "--job", "good", "--token", TOKEN)
    assert good.returncode == 0, good.stdout
    bad = run_cli("check", "--url", healthy.url, "--job", "bad", "--token", TOKEN)
    assert bad.returncode == 2 and "job bad is unhealthy" in bad.stdout and "consecutive_failures=" in bad.stdout
    missing = run_cli("check", "--url", healthy.url, "--job", "nope", "--token", TOKEN)
    assert missing.returncode == 3 and "no job 'nope'" in missing.stdout
    no_token = run_cli("check", "--url", healthy.url, "--job", "good")
    assert no_token.returncode == 3 and "401" in no_token.stdout


def test_check_job_max_age_requires_a_recent_success(healthy):
    fresh = run_cli("check", "--url", healthy.url, "--job", "good", "--token", TOKEN, "--max-age", "60")
    assert fresh.returncode == 0 and "last success" in fresh.stdout, fresh.stdout
    never = run_cli("check", "--url", healthy.url, "--job", "bad", "--token", TOKEN, "--max-age", "60")
    assert never.returncode == 2 and "never succeeded" in never.stdout


def test_status_prints_a_table_without_colour_when_piped_and_json_on_request(healthy):
    table = run_cli("status", "--url", healthy.url, "--token", TOKEN)
    assert table.returncode == 0
    assert "\x1b[" not in table.stdout
    for expected in ("COMPONENT", "cache", "scheduler: running", "JOB", "good", "bad", "unhealthy", "ERRORS/RUNS"):
        assert expected in table.stdout
    raw = run_cli("status", "--url", healthy.url, "--token", TOKEN, "--json")
    assert raw.returncode == 0 and json.loads(raw.stdout)["metrics"]["service_type"] == "worker"


def test_status_uses_colour_on_a_terminal(healthy):
    from worker_service.status_table import render

    _, _, body = healthy.get("/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert "\x1b[" in render(body, colour=True) and "\x1b[" not in render(body, colour=False)


def test_status_exits_3_when_the_service_cannot_be_read():
    done = run_cli("status", "--url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 3 and "cannot reach" in done.stderr


@pytest.mark.parametrize("url", ["http://127.0.0.1:abc", "http//no-scheme"])
def test_check_is_unknown_for_a_malformed_url(url):
    done = run_cli("check", "--url", url)
    assert done.returncode == 3 and done.stdout.startswith("WORKER-SERVICE UNKNOWN") and "Traceback" not in done.stderr


@pytest.fixture
def failing_status_server():
    """A real HTTP server whose /status answers 500 with the service's JSON error body."""
    body = json.dumps({"error": "Internal Server Error", "message": "internal error; see the service log"}).encode()
    server = CannedHTTPServer(lambda path: (500, "application/json", body))
    yield server.url
    server.close()


@pytest.mark.parametrize("flags", [[], ["--json"]])
def test_status_exits_3_with_one_line_when_status_answers_500(failing_status_server, flags):
    done = run_cli("status", "--url", failing_status_server, *flags)
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout == "" and len(done.stderr.splitlines()) == 1
    assert "answered HTTP 500" in done.stderr and "internal error" in done.stderr


@pytest.fixture
def status_server():
    """A real HTTP server answering /status with the body the test puts in ``bodies['status']``."""
    bodies: dict = {}
    server = CannedHTTPServer(lambda path: (200, "application/json", json.dumps(bodies["status"]).encode()))
    yield server.url, bodies
    server.close()


def test_check_job_max_age_says_a_success_in_the_future_is_of_unknown_age(status_server):
    """After the wall clock went back, a last success lies ahead: that is no 'last success 0 s ago'."""
    url, bodies = status_server
    health = {"status": "healthy", "reason": None, "error_count": 0, "success_count": 9, "consecutive_failures": 0,
              "last_success": {"timestamp": "2026-11-29T11:00:00.000000Z", "time_ago_seconds": -3599.5}}
    bodies["status"] = {"metrics": {"jobs_analysis": {"job_health": {"tick": health}}}}
    done = run_cli("check", "--url", url, "--job", "tick", "--max-age", "60")
    assert done.returncode == 1, done.stdout
    assert "3600 s in the future" in done.stdout and "0 s ago" not in done.stdout


# -- nothing printed carries the URL's credentials or the service's control characters --------------------------------
SECRET = "s3cretpw-in-the-url"


@pytest.mark.parametrize("command", [["check"], ["status"], ["jobs"], ["history", "x"], ["run", "x", "--wait"],
                                     ["pause", "x"]])
def test_a_password_in_the_url_is_never_printed_nor_the_query(command):
    port = free_port()
    done = run_cli(*command, "--url", f"http://operator-x:{SECRET}@127.0.0.1:{port}", "--timeout", "2")
    output = done.stdout + done.stderr
    assert done.returncode == 3 and f"cannot reach http://127.0.0.1:{port}/" in output, output
    assert SECRET not in output and "operator-x" not in output and "wait=" not in output, output


def test_a_password_in_the_url_is_masked_in_every_answer_and_sent_as_basic(not_json_server, healthy):
    url = not_json_server.replace("http://", f"http://operator-x:{SECRET}@")
    done = run_cli("check", "--url", url)
    assert done.returncode == 3 and f"{not_json_server}/health answered HTTP 502" in done.stdout, done.stdout
    assert SECRET not in done.stdout + done.stderr
    # user:password@ is HTTP Basic, the password the token: what a browser would send
    job = run_cli("check", "--url", healthy.url.replace("http://", f"http://ops:{TOKEN}@"), "--job", "good")
    assert job.returncode == 0 and TOKEN not in job.stdout + job.stderr, job.stdout


def test_text_from_the_service_reaches_the_terminal_without_control_characters(status_server):
    url, bodies = status_server
    reason = "rm\x1b[2J\x1b]0;owned\x07 \x9b31mred\nsecond line\u202etxt"
    health = {"status": "unhealthy", "reason": reason, "error_count": 3, "success_count": 0,
              "consecutive_failures": 3, "last_success": None}
    bodies["status"] = {"metrics": {"jobs_analysis": {"job_health": {"tick": health}}}}
    done = run_cli("check", "--url", url, "--job", "tick")
    assert done.returncode == 2 and len(done.stdout.splitlines()) == 1, done.stdout
    assert "job tick is unhealthy (rm?[2J?]0;owned? ?31mred second line?txt)" in done.stdout
    assert not re.search("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202e]", done.stdout)


def test_shown_urls_have_no_credentials_and_no_query():
    from worker_service.cli import shown_url

    assert shown_url("http://admin:s3cret@127.0.0.1/jobs") == "http://127.0.0.1/jobs"
    assert shown_url("https://u:p@ss:w@host:8443/a/b?wait=5#x") == "https://host:8443/a/b"
    assert shown_url("http://admin:pa?ss@host/") == "http://host/"  # a stray '?' in the password: still hidden
    assert shown_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000"
    assert shown_url("http//no-scheme?token=x") == "http//no-scheme"
