"""`worker-service check` and `worker-service status` against real running services."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support.runs import jobs_file
from tests.support.servers import BIN, CannedHTTPServer, Gunicorn, base_env, free_port, wait_until
from tests.support.tcp_proxy import TcpProxy

PLUGIN_LINE = re.compile(r"^WORKER-SERVICE (OK|WARNING|CRITICAL|UNKNOWN) - .+$")
TOKEN = "cli-test-token-123"
ADMIN = "cli-test-admin-token-4567"
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

[jobs.hourly]
name = "Hourly (run, paused and resumed by hand here)"
func = "tests.support.sample_jobs:noop"
trigger = "interval"
hours = 1
"""


def run_cli(*args: str, timeout: float = 30, **env: str) -> subprocess.CompletedProcess:
    """Run the installed command with no token in its environment unless given."""
    return subprocess.run([str(BIN / "worker-service"), *args], capture_output=True, text=True, timeout=timeout,
                          env=base_env(Path("/tmp"), **env))


def start(workdir, args=None, **env):
    return Gunicorn(base_env(workdir / "state", HEALTH_CACHE_TTL="0", STATUS_CACHE_TTL="0",
                             SCHEDULER_HEARTBEAT_INTERVAL="1", **env), workdir, args=args).start()


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    """gunicorn on a TCP port and, as on a VM, on a unix socket too (``healthy.socket``)."""
    workdir = tmp_path_factory.mktemp("cli-ok")
    path = jobs_file(workdir / "jobs.toml", JOBS)
    sock = workdir / "gunicorn.sock"
    server = start(workdir, ["-b", f"unix:{sock}"], WORKER_JOBS_FILE=str(path), STATUS_TOKEN=TOKEN,
                   ADMIN_TOKEN=ADMIN, JOB_FAILURE_THRESHOLD="2")
    server.socket = sock

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


# -- check speaks check_http's language: nothing answering is CRITICAL, what it cannot judge UNKNOWN -------------------

def test_check_is_critical_when_refused():
    """check_http's econn_refuse_state: a service that is down is what a monitor is for."""
    done = run_cli("check", "--url", f"http://127.0.0.1:{free_port()}")
    assert done.returncode == 2, done.stdout
    assert done.stdout.startswith("WORKER-SERVICE CRITICAL - cannot reach") and "connection refused" in done.stdout


def test_check_is_critical_on_timeout(hung_listener):
    """check_http's socket_timeout_state."""
    done = run_cli("check", "--url", f"http://127.0.0.1:{hung_listener.port}", "--timeout", "0.5", timeout=10)
    assert done.returncode == 2 and done.stdout.startswith("WORKER-SERVICE CRITICAL") and "within 0.5 s" in done.stdout


def test_check_is_critical_when_a_tcp_proxy_accepts_and_closes_without_an_answer():
    """A TCP balancer in front of a dead server takes the connection, then closes it: no answer is no service."""
    with TcpProxy("127.0.0.1", free_port()) as proxy:
        done = run_cli("check", "--url", f"http://127.0.0.1:{proxy.port}", "--timeout", "5")
    assert done.returncode == 2 and done.stdout.startswith("WORKER-SERVICE CRITICAL - "), done.stdout
    assert f"http://127.0.0.1:{proxy.port}/health" in done.stdout and "Traceback" not in done.stderr


@pytest.fixture
def front():
    """A real HTTP server standing for whatever sits in front of the service: ``front.answers[path] = (status,
    content type, body)``; a path it has no answer for gets a JSON list (no report at all)."""
    answers: dict[str, tuple[int, str, bytes]] = {}
    server = CannedHTTPServer(lambda path: answers.get(path.partition("?")[0], (200, "", b'["a", "list"]')))
    server.answers = answers
    yield server
    server.close()


NGINX_502_PAGE = (b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
                  b"</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
HAPROXY_503_PAGE = (b"<html><body><h1>503 Service Unavailable</h1>\nNo server is available to handle this request.\n"
                    b"</body></html>\n")
SHIPPED_504 = b'{"error":"Gateway Timeout","message":"worker-service did not answer in time"}'


@pytest.mark.parametrize(("answer", "needle"), [
    ((502, "text/html", NGINX_502_PAGE), "/health answered HTTP 502 Bad Gateway: nginx"),
    ((503, "text/html", HAPROXY_503_PAGE), "answered HTTP 503 Service Unavailable: No server is available to handle"),
    ((504, "application/json", SHIPPED_504), "answered HTTP 504 Gateway Timeout: worker-service did not answer in time"),
    ((503, "application/json", b'{"error": "Service Unavailable"}'), "answered HTTP 503 Service Unavailable: Service"),
    ((500, "text/plain", b"upstream \x1b[31mdown\r\nsecond line"), "answered HTTP 500 Internal Server Error: upstream ?[31mdown"),
])
def test_check_is_critical_with_the_proxys_message_when_a_proxy_answers_5xx(front, answer, needle):
    front.answers["/health"] = answer
    done = run_cli("check", "--url", front.url)
    assert done.returncode == 2 and done.stdout.startswith("WORKER-SERVICE CRITICAL - "), done.stdout
    assert needle in done.stdout and len(done.stdout.splitlines()) == 1, done.stdout
    assert "second line" not in done.stdout and "\x1b" not in done.stdout


def test_check_is_critical_with_the_proxys_message_for_a_job_too(front):
    front.answers["/status"] = (502, "text/html", NGINX_502_PAGE)
    done = run_cli("check", "--url", front.url, "--job", "x", "--token", TOKEN)
    assert done.returncode == 2 and "/status answered HTTP 502 Bad Gateway: nginx" in done.stdout, done.stdout


@pytest.mark.parametrize(("args", "answer", "needle"), [
    ([], (404, "application/json", b'{"error":"Not Found","message":"no such endpoint"}'),
     "answered HTTP 404 Not Found (no such endpoint): is --url the service's base URL?"),
    ([], (401, "text/html", b"<h1>401 Authorization Required</h1>"), "/health needs no token"),
    ([], (403, "application/json", b'{"error":"Forbidden","message":"internal networks only"}'),
     "(internal networks only): /health needs no token"),
    ([], (200, "text/html", b"<html>a welcome page</html>"), "with a body that is not JSON: is --url the service's"),
    ([], (200, "application/json", b'{"a": 1}'), "/health answered JSON without status and components"),
    (["--job", "x"], (401, "application/json", b'{"error":"Unauthorized"}'),
     "a valid --token (STATUS_TOKEN or ADMIN_TOKEN) is required"),
    (["--job", "x"], (403, "application/json", b'{"message":"internal networks only"}'),
     "(internal networks only): reading it takes --token with STATUS_TOKEN or ADMIN_TOKEN"),
    (["--job", "x"], (200, "application/json", b'["a", "list"]'), "/status answered JSON of an unexpected shape"),
])
def test_check_is_unknown_for_what_it_cannot_judge_and_says_why(front, args, answer, needle):
    front.answers["/status" if args else "/health"] = answer
    done = run_cli("check", "--url", front.url, *args)
    assert done.returncode == 3 and done.stdout.startswith("WORKER-SERVICE UNKNOWN - "), done.stdout
    assert needle in done.stdout, done.stdout


@pytest.mark.parametrize("args", [["--timeout", "abc"], ["--max-age", "-1", "--job", "x"], ["--nope"],
                                  ["--url", "unix:"], ["--url", "ftp://host/"]])
def test_a_bad_argument_is_unknown_in_the_plugins_one_line_never_clicks_exit_2(args):
    done = run_cli("check", *args)
    assert done.returncode == 3, done.stdout + done.stderr
    assert PLUGIN_LINE.match(done.stdout.strip()) and done.stdout.startswith("WORKER-SERVICE UNKNOWN - bad ")
    assert len(done.stdout.splitlines()) == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("suffix", ["/health", "/health/", "/"])
def test_check_takes_the_health_url_itself_as_well_as_the_base_url(healthy, suffix):
    done = run_cli("check", "--url", healthy.url + suffix)
    assert done.returncode == 0 and done.stdout.startswith("WORKER-SERVICE OK"), done.stdout


def test_check_job_and_status_read_with_the_admin_token_like_jobs_and_history(healthy):
    job = run_cli("check", "--url", healthy.url, "--job", "good", ADMIN_TOKEN=ADMIN)
    assert job.returncode == 0 and job.stdout.startswith("WORKER-SERVICE OK - job good is "), job.stdout
    table = run_cli("status", "--url", healthy.url, ADMIN_TOKEN=ADMIN)
    assert table.returncode == 0 and "good" in table.stdout, table.stderr
    assert ADMIN not in job.stdout + table.stdout + table.stderr


# -- --url unix:/path/to/gunicorn.sock: the VM layout, past nginx ----------------------------------------------------

def test_every_command_talks_to_gunicorns_unix_socket(healthy):
    url = f"unix:{healthy.socket}"
    check = run_cli("check", "--url", url)
    assert check.returncode == 0 and check.stdout.startswith("WORKER-SERVICE OK - worker-service is "), check.stdout
    job = run_cli("check", "--url", url, "--job", "good", "--max-age", "60", STATUS_TOKEN=TOKEN)
    assert job.returncode == 0 and "last success" in job.stdout, job.stdout
    status = run_cli("status", "--url", f"unix://{healthy.socket}", "--json", STATUS_TOKEN=TOKEN)  # gunicorn's unix://
    assert status.returncode == 0 and "good" in json.loads(status.stdout)["metrics"]["jobs_analysis"]["job_health"]
    jobs = run_cli("jobs", "--url", url, "--json", STATUS_TOKEN=TOKEN)
    assert jobs.returncode == 0 and {job["id"] for job in json.loads(jobs.stdout)["jobs"]} == {"good", "bad", "hourly"}
    ran = run_cli("run", "hourly", "--wait", "--url", url, "--as", "alice", ADMIN_TOKEN=ADMIN)
    assert ran.returncode == 0 and ran.stdout.startswith("hourly: run succeeded in "), ran.stdout + ran.stderr
    history = run_cli("history", "hourly", "--url", url, "--json", STATUS_TOKEN=TOKEN)
    assert history.returncode == 0 and json.loads(history.stdout)["history"][0]["requested_by"] == "alice"
    paused = run_cli("pause", "hourly", "--url", url, ADMIN_TOKEN=ADMIN)
    assert paused.returncode == 0 and "pause: paused" in paused.stdout, paused.stdout + paused.stderr
    resumed = run_cli("resume", "hourly", "--url", url, ADMIN_TOKEN=ADMIN)
    assert resumed.returncode == 0 and "resume: resumed" in resumed.stdout, resumed.stdout + resumed.stderr
    refused = run_cli("jobs", "--url", url)
    assert refused.returncode == 3 and f"/jobs via unix:{healthy.socket} answered 401" in refused.stderr


@pytest.fixture
def stale_socket(tmp_path):
    """A socket file nothing listens on, as a killed gunicorn leaves it."""
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
    return path


def test_a_missing_or_dead_socket_is_critical_for_check_and_a_clear_line_for_the_rest(tmp_path, stale_socket):
    missing = tmp_path / "gone.sock"
    done = run_cli("check", "--url", f"unix:{missing}")
    assert done.returncode == 2, done.stdout
    assert done.stdout.strip() == f"WORKER-SERVICE CRITICAL - cannot reach /health via unix:{missing}: no such " \
                                  "socket; is the service running?"
    dead = run_cli("check", "--url", f"unix:{stale_socket}", "--job", "x")
    assert dead.returncode == 2 and f"/status via unix:{stale_socket}: connection refused" in dead.stdout, dead.stdout
    jobs = run_cli("jobs", "--url", f"unix:{missing}")
    assert jobs.returncode == 3 and "no such socket; is the service running?" in jobs.stderr, jobs.stderr
    assert "Traceback" not in done.stderr + dead.stderr + jobs.stderr


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
    # Under the jobs: this host (one host: from the leader's heartbeat), its state, runs held of its threads.
    body = json.loads(raw.stdout)
    [host] = body["hosts"]
    assert (host["host"], host["state"], host["threads"]) == (socket.gethostname(), "active", 10)
    lines = table.stdout.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("HOST ")))
    assert lines[header].split() == ["HOST", "PID", "STATE", "CLAIMED/THREADS", "HEARTBEAT"]
    assert header > lines.index(next(line for line in lines if line.startswith("JOB ")))  # printed under the jobs
    assert re.fullmatch(rf"{re.escape(socket.gethostname())} +{host['pid']} +active +\d+/10 +\d+\.\ds ago",
                        lines[header + 1]), lines[header + 1]
    assert isinstance(body["running"], list)  # the --json output carries the runs in flight too


def test_status_uses_colour_on_a_terminal(healthy):
    from worker_service.cli.status_table import render

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


def test_a_socket_the_check_may_not_open_is_unknown_not_critical(tmp_path):
    """Permission denied is the plugin's own limit (run as the wrong user), not the service's state."""
    directory = tmp_path / "run"
    directory.mkdir()
    path = directory / "gunicorn.sock"
    command = [str(BIN / "worker-service"), "check", "--url", f"unix:{path}"]
    if os.geteuid() == 0:  # root passes any permission: drop the capabilities that let it
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("setpriv (util-linux) is needed to run the check as root without CAP_DAC_OVERRIDE")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", *command]
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()
        directory.chmod(0)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=30, env=base_env(Path("/tmp")))
        finally:
            directory.chmod(0o700)
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.startswith(f"WORKER-SERVICE UNKNOWN - cannot reach /health via unix:{path}: permission denied")


# -- nothing printed carries the URL's credentials or the service's control characters --------------------------------
SECRET = "s3cretpw-in-the-url"


@pytest.mark.parametrize("command", [["check"], ["status"], ["jobs"], ["history", "x"], ["run", "x", "--wait"],
                                     ["pause", "x"]])
def test_a_password_in_the_url_is_never_printed_nor_the_query(command):
    port = free_port()
    done = run_cli(*command, "--url", f"http://operator-x:{SECRET}@127.0.0.1:{port}", "--timeout", "2")
    output = done.stdout + done.stderr
    assert done.returncode == (2 if command == ["check"] else 3), output  # check: refused is CRITICAL
    assert f"cannot reach http://127.0.0.1:{port}/" in output, output
    assert SECRET not in output and "operator-x" not in output and "wait=" not in output, output


def test_a_password_in_the_url_is_masked_in_every_answer_and_sent_as_basic(front, healthy):
    front.answers["/health"] = (502, "text/plain", f"no upstream for operator-x:{SECRET}".encode())
    done = run_cli("check", "--url", front.url.replace("http://", f"http://operator-x:{SECRET}@"))
    assert done.returncode == 2 and f"{front.url}/health answered HTTP 502 Bad Gateway" in done.stdout, done.stdout
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
