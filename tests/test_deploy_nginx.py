"""The shipped deployment files: real nginx with deploy/nginx/worker-service.conf in front of real gunicorn.

nginx runs from a private prefix on 127.0.0.1 and 127.0.0.2 with the shipped site
file, of which only the socket, snippet and log paths and the listen lines are
replaced. A client outside the internal allow list is simulated honestly: its
socket is bound to source address 127.0.0.2, which the shipped snippet does not
allow, so nginx's access module sees a different $remote_addr.
"""

from __future__ import annotations

import gzip
import json
import re
import select
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.support.nginx import (
    INTERNAL_SNIPPET,
    SHIPPED_SOCKET,
    SITE_FILE,
    SOCKET_GROUP,
    EchoUpstream,
    Nginx,
    access_rules,
    can_bind,
    decide,
    nginx_binary,
    require,
    socket_group_args,
)
from tests.support.servers import BIN, ROOT, wait_until
from worker_service.gunicorn.master import SERVER_NUMBERS

TOKEN = "nginx-test-token-5f3a9c"
OUTSIDE = "127.0.0.2"  # not in the shipped allow list; nginx also listens here
INTERNAL_PATHS = ["/status", "/metrics", "/openapi.json"]
UNIT_FILE = ROOT / "deploy" / "systemd" / "worker-service.service"
ENV_EXAMPLE = ROOT / "deploy" / "worker-service.env.example"
REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture
def nginx_bin() -> str:
    binary = nginx_binary()
    require(binary is not None, "nginx is not installed (Debian: apt-get install nginx-light)")
    require(can_bind(OUTSIDE), f"cannot bind {OUTSIDE}; it stands for a client outside the allow list")
    return binary


@pytest.fixture
def run_dir():
    """Like /run/worker-service: short (a socket path has at most 107 bytes) and reachable by nginx's workers."""
    path = Path(tempfile.mkdtemp(prefix="ws-deploy-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def front(nginx_bin, run_dir):
    """Start nginx with the shipped site in front of a unix socket: ``front(socket_path)``."""
    servers: list[Nginx] = []

    def start(socket_path: Path, **kwargs) -> Nginx:
        server = Nginx(nginx_bin, run_dir / f"nginx-{len(servers)}", socket_path, **kwargs)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


def serve_on_socket(gunicorn, socket_path: Path, **env: str):
    # The fixture's `-b 127.0.0.1:<port>` overrides GUNICORN_BIND; a second -b adds the socket (gunicorn
    # appends binds), and the fixture's readiness check on the TCP port means the socket is bound too.
    return gunicorn(args=["-b", f"unix:{socket_path}", *socket_group_args()], WEB_CONCURRENCY="1", **env)


@pytest.fixture
def stack(run_dir, gunicorn, front):
    """gunicorn with STATUS_TOKEN on a unix socket, behind nginx. (run_dir first: it is removed last.)"""
    socket_path = run_dir / "gunicorn.sock"
    app = serve_on_socket(gunicorn, socket_path, STATUS_TOKEN=TOKEN)
    nginx = front(socket_path)
    wait_until(lambda: nginx.request("/health/live").status == 200, timeout=10, what="/health/live through nginx")
    return app, nginx


@pytest.fixture
def echo(run_dir):
    upstream = EchoUpstream(run_dir / "echo.sock")
    yield upstream
    upstream.close()


def app_saw(app, path: str) -> bool:
    return f'path="{path}"' in app.stdout()


# --- nginx itself ------------------------------------------------------------------------------


def test_the_shipped_site_passes_nginx_t_without_warnings(run_dir, nginx_bin):
    nginx = Nginx(nginx_bin, run_dir / "nginx-t", run_dir / "gunicorn.sock")
    checked = nginx.check_config()
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr
    assert "[warn]" not in checked.stderr and "[emerg]" not in checked.stderr, checked.stderr


def test_health_answers_through_nginx_with_the_apps_json(stack):
    app, nginx = stack
    response = nginx.request("/health")
    assert response.status == 200, response
    body = response.json()
    _, _, direct = app.get("/health")
    assert list(body) == list(direct) == ["status", "components", "timestamp", "service"]
    assert body["status"] in ("available", "degraded") and body["service"] == "worker-service"
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert REQUEST_ID.match(response.headers["X-Request-ID"])

    head = nginx.request("/health", method="HEAD")
    assert head.status == 200 and head.raw == b""
    assert head.headers["Content-Type"] == "application/json"

    live = nginx.request("/health/live")
    assert live.status == 200 and live.json()["status"] == "alive"


def test_each_component_answers_through_nginx_as_the_readme_offers(stack):
    app, nginx = stack
    for component in ("cache", "database", "scheduler"):
        response = nginx.request(f"/health/{component}")
        assert response.status in (200, 503), (component, response)  # the app's own answer, not nginx's 404
        body = response.json()
        assert list(body) == ["status", "component", "timestamp", "service"] and body["component"] == component, body
        assert response.headers["Cache-Control"] == "no-store"
        assert REQUEST_ID.match(response.headers["X-Request-ID"])
    assert nginx.request("/health/database").status == 200  # SQLite: nothing here can make it unavailable

    unknown = nginx.request("/health/queue")  # the app's 404, which names the components it knows
    assert unknown.status == 404 and "known components: cache, database, scheduler" in unknown.json()["message"], unknown
    wait_until(lambda: app_saw(app, "/health/queue"), timeout=5, what="the app's access line for /health/queue")
    assert nginx.request("/health/cache", via=OUTSIDE, source=OUTSIDE).status in (200, 503)  # public, as /health is


def test_a_503_from_the_app_passes_through_with_its_own_body(run_dir, gunicorn, front):
    socket_path = run_dir / "broken.sock"
    app = serve_on_socket(gunicorn, socket_path, REDIS_URL="redis://127.0.0.1:1/0")  # refused
    status, _, direct = wait_until(lambda: (got := app.get("/health"))[0] == 503 and got, timeout=10,
                                   what="the app to report the refused Redis")
    nginx = front(socket_path)

    response = nginx.request("/health")
    assert response.status == 503, response
    body = response.json()  # the app's JSON, not an nginx error page
    assert list(body) == list(direct)
    assert body["status"] == "unavailable" and body["components"]["cache"] == "unavailable"
    assert body["service"] == "worker-service"
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert b"nginx" not in response.raw

    head = nginx.request("/health", method="HEAD")
    assert head.status == 503 and head.raw == b""


# --- who may read the internal endpoints ----------------------------------------------------------


def test_internal_paths_are_refused_to_a_client_outside_the_allow_list(stack):
    app, nginx = stack
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for path in INTERNAL_PATHS:
        refused = nginx.request(path, headers=bearer, via=OUTSIDE, source=OUTSIDE)
        assert refused.status == 403, (path, refused)
        assert refused.json()["error"] == "Forbidden"
        assert refused.headers["Content-Type"] == "application/json"
    for disguised in ["/health/../status", "//status", "/./status", "/%73tatus", "/status?x=/health"]:
        assert nginx.request(disguised, headers=bearer, via=OUTSIDE, source=OUTSIDE).status == 403, disguised

    # The same listener, the same request, from an allowed address: only the client address differs.
    allowed = nginx.request("/status", headers=bearer, via=OUTSIDE, source="127.0.0.1")
    assert allowed.status == 200, allowed
    assert "status" in allowed.json()
    assert nginx.request("/openapi.json", via=OUTSIDE, source="127.0.0.1").status == 200
    metrics = nginx.request("/metrics", headers=bearer, via=OUTSIDE, source="127.0.0.1")
    assert metrics.status != 403, metrics  # being written now: 200 or the app's own 404

    # The refused requests never reached the app; the allowed ones did.
    wait_until(lambda: all(app_saw(app, path) for path in INTERNAL_PATHS), timeout=5, what="the app's access log")
    assert app.stdout().count('path="/status"') == 1


def test_the_status_page_job_control_and_gzip_pass_through_nginx_to_internal_clients_only(stack):
    app, nginx = stack
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for path in ("/jobs", "/jobs/cleanup_temporary_files", "/static/status.css", "/static/status.js",
                 "/status/overview", "/status/runs", "/jobs?limit=25&runs=20"):
        assert nginx.request(path, headers=bearer, via=OUTSIDE, source=OUTSIDE).status == 403, path
        passed = nginx.request(path, headers=bearer)
        assert passed.status == 200, (path, passed)
    assert nginx.request("/static/status.css").headers["Content-Type"].startswith("text/css")
    # The control endpoints reach the app (its own 403 says job control is off), not nginx's 404.
    control = nginx.request("/jobs/cleanup_temporary_files/run", method="POST", headers=bearer)
    assert control.status == 403 and "ADMIN_TOKEN" in control.json()["message"], control

    report = nginx.request("/status", headers={**bearer, "Accept-Encoding": "gzip"})
    assert report.status == 200 and report.headers["Content-Encoding"] == "gzip", report.headers
    assert json.loads(gzip.decompress(report.raw))["status"] in ("available", "degraded", "unavailable")
    page = nginx.request("/status", headers={**bearer, "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html"), page.headers


def test_the_shipped_internal_snippet_denies_public_clients():
    rules = access_rules(INTERNAL_SNIPPET.read_text())
    assert rules[-1] == ("deny", "all")
    assert ("allow", "all") not in rules
    # Documentation and shared address ranges: never contacted, only matched against the rules.
    for public in ["192.0.2.10", "198.51.100.7", "203.0.113.200", "100.64.0.1", "2001:db8::1"]:
        assert decide(rules, public) == "deny", public
    for internal in ["127.0.0.1", "::1", "10.1.2.3", "172.16.0.5", "192.168.1.20"]:
        assert decide(rules, internal) == "allow", internal
    assert decide(rules, OUTSIDE) == "deny"  # what the live test above relies on


def test_status_needs_the_token_and_nginx_passes_authorization_through(stack):
    app, nginx = stack
    missing = nginx.request("/status")
    assert missing.status == 401, missing
    assert missing.json()["error"] == "Unauthorized"
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")

    wrong = nginx.request("/status", headers={"Authorization": "Bearer not-the-token"})
    assert wrong.status == 401
    for method in ("OPTIONS", "HEAD", "POST"):  # no method gets around the token, through nginx either
        for path in ("/status", "/metrics"):
            assert nginx.request(path, method=method).status == 401, (method, path)

    right = nginx.request("/status?probe=query-secret-77", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status == 200, right
    assert right.json()["status"] in ("available", "degraded", "unavailable")

    # nginx writes the line after answering: wait for it rather than for a count of lines.
    wait_until(lambda: '"GET /status HTTP/1.1" 200' in "\n".join(nginx.access_lines()), timeout=5,
               what="the 200 line in nginx's access log")
    logged = "\n".join(nginx.access_lines())
    assert TOKEN not in logged and "not-the-token" not in logged and "query-secret-77" not in logged


# --- slow clients ------------------------------------------------------------------------------------

SLOW_CLIENTS = 48  # loopback only, well under the test nginx's worker_connections (128)
# Seconds a probe may take through nginx while they are held. Slow clients that reached gunicorn would hold its
# worker threads until nginx's header timeout (seconds): a probe would wait that long or time out (5 s). 2 s leaves
# room for one slow probe on a loaded machine among ~50.
PROBE_BOUND = 2.0


def shipped_seconds(directive: str) -> int:
    match = re.search(rf"^\s*{directive}\s+(\d+)s;", SITE_FILE.read_text(), flags=re.MULTILINE)
    assert match, f"the shipped site does not set {directive} (nginx's default is 60 s)"
    return int(match[1])


def test_slow_clients_are_held_by_nginx_dropped_in_time_and_never_reach_the_app(stack):
    # gthread reads requests in its worker threads: 16 slowloris connections straight to gunicorn time out
    # a probe. nginx reads the whole request first, and drops a client that trickles its headers.
    app, nginx = stack
    header_timeout = shipped_seconds("client_header_timeout")
    assert header_timeout <= 10
    slow = [socket.create_connection(("127.0.0.1", nginx.ports["127.0.0.1"]), timeout=2) for _ in range(SLOW_CLIENTS)]
    connected = time.monotonic()
    deadline = connected + header_timeout + 3
    still_open, latencies = set(slow), []
    try:
        for sock in slow:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: slow.example\r\n")  # never the blank line
        while still_open and time.monotonic() < deadline:
            started = time.perf_counter()
            probe = nginx.request("/health/live", timeout=5)
            latencies.append(time.perf_counter() - started)
            assert probe.status == 200, probe
            for sock in list(still_open):  # one more header line each: a per-read timeout would never fire
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    still_open.discard(sock)
            readable, _, _ = select.select(list(still_open), [], [], 0.2)
            for sock in readable:  # nginx closed it (it may say 408 first)
                still_open.discard(sock)
        held_for = time.monotonic() - connected
    finally:
        for sock in slow:
            sock.close()

    print(f"{SLOW_CLIENTS} slow clients dropped after {held_for:.1f} s; {len(latencies)} probes, "
          f"slowest {max(latencies) * 1000:.1f} ms")  # shown with pytest -s
    assert not still_open, f"{len(still_open)} slow clients still connected after {held_for:.1f} s"
    assert held_for >= header_timeout - 1, f"dropped after {held_for:.1f} s, before client_header_timeout"
    assert len(latencies) >= 10 and max(latencies) < PROBE_BOUND, latencies
    # nginx passes a request on only once it has all of it: the app never saw one of them.
    assert 'path="/health"' not in app.stdout()


# --- what nginx adds and refuses, seen by a stand-in upstream ------------------------------------


def test_proxy_headers_and_upstream_keepalive(echo, front, run_dir):
    nginx = front(run_dir / "echo.sock")
    first = nginx.request("/health", headers={
        "Host": "worker.example", "X-Forwarded-For": "203.0.113.9", "X-Request-ID": "req-42.a",
        "Authorization": "Bearer abc12345",
    })
    assert first.status == 200 and first.headers["X-Request-ID"] == "req-42.a"
    second = nginx.request("/health/live", headers={"X-Request-ID": "not a valid id"})
    assert second.status == 200

    seen = [{name.lower(): value for name, value in request["headers"].items()} for request in echo.requests]
    assert len(seen) == 2
    assert seen[0]["host"] == "worker.example"
    assert seen[0]["x-forwarded-for"] == "127.0.0.1"  # the client's own claim is dropped
    assert seen[0]["x-forwarded-proto"] == "http"
    assert seen[0]["x-request-id"] == "req-42.a"
    assert seen[0]["authorization"] == "Bearer abc12345"
    assert REQUEST_ID.match(seen[1]["x-request-id"]) and second.headers["X-Request-ID"] == seen[1]["x-request-id"]
    assert all(headers.get("connection", "").lower() != "close" for headers in seen)
    connections = [request["connection"] for request in echo.requests]
    assert connections[0] == connections[1], "nginx opened a new upstream connection: keepalive is not working"


def test_everything_else_is_a_json_404_that_never_reaches_the_app(echo, front, run_dir):
    nginx = front(run_dir / "echo.sock")
    for path in ["/", "/admin", "/index.html", "/health/", "/healthz", "/health/live/x", "/health/cache/x",
                 "/health/cache.json", "/status/x", "/STATUS", "/metrics.json"]:
        response = nginx.request(path)
        assert response.status == 404, (path, response)
        assert response.json()["error"] == "Not Found"
        assert response.headers["Content-Type"] == "application/json"
    assert echo.requests == []


def test_nginx_answers_json_502_when_the_app_is_not_running(front, run_dir):
    nginx = front(run_dir / "absent.sock")
    response = nginx.request("/health")
    assert response.status == 502, response
    assert response.json()["error"] == "Bad Gateway"
    assert response.headers["Cache-Control"] == "no-store"
    assert REQUEST_ID.match(response.headers["X-Request-ID"])


# --- the deployment files agree with each other and with the code ---------------------------------


def env_lines(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """(active NAME=value lines, commented-out ``# NAME=value`` lines) of an EnvironmentFile."""
    active, commented = {}, {}
    for line in text.splitlines():
        if match := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            active[match[1]] = match[2]
        elif match := re.fullmatch(r"# ([A-Z][A-Z0-9_]*)=(.*)", line):
            commented[match[1]] = match[2]
    return active, commented


def unit_values(key: str) -> list[str]:
    return re.findall(rf"^{key}=(.*)$", UNIT_FILE.read_text(), flags=re.MULTILINE)


GUNICORN_DEFAULTS = {name: str(default) for name, (_, default) in SERVER_NUMBERS.items()}
EXAMPLES_NOT_DEFAULTS = {"REDIS_URL", "SUPABASE_URL", "DATABASE_URL", "STATE_DATABASE_URL", "WORKER_JOBS_FILE"}


def test_the_env_example_documents_every_setting_with_its_default():
    from worker_service.config import SettingsSchema, load_settings

    active, commented = env_lines(ENV_EXAMPLE.read_text())
    documented = set(active) | set(commented)
    missing = (set(SettingsSchema().fields) | set(GUNICORN_DEFAULTS) | {"GUNICORN_BIND"}) - documented
    assert not missing, f"not in {ENV_EXAMPLE.name}: {sorted(missing)}"

    baseline = load_settings(environ=active)  # the file as shipped is a valid configuration
    for name, value in commented.items():
        if name in GUNICORN_DEFAULTS:
            assert value == GUNICORN_DEFAULTS[name], name
        elif name not in EXAMPLES_NOT_DEFAULTS:
            assert load_settings(environ={**active, name: value}) == baseline, f"# {name}={value} is not the default"


def test_socket_state_dir_and_stop_timeout_agree_across_the_files():
    active, commented = env_lines(ENV_EXAMPLE.read_text())
    assert active["GUNICORN_BIND"] == SHIPPED_SOCKET and SHIPPED_SOCKET in SITE_FILE.read_text()
    assert SHIPPED_SOCKET.startswith(f"unix:/run/{unit_values('RuntimeDirectory')[0]}/")
    assert active["WORKER_STATE_DIR"] == f"/var/lib/{unit_values('StateDirectory')[0]}"
    assert int(unit_values("TimeoutStopSec")[0]) > int(commented["GUNICORN_GRACEFUL_TIMEOUT"])
    assert "78" in unit_values("RestartPreventExitStatus")[0].split()
    assert unit_values("KillMode") == ["mixed"] and unit_values("MemoryDenyWriteExecute") == []
    # RestartPreventExitStatus= only covers the main process: a config check in ExecStartPre= would restart-loop.
    assert unit_values("ExecStartPre") == []


def test_only_nginx_can_reach_the_socket_and_only_the_service_its_state():
    # The gunicorn configuration's umask makes the socket srwxrwx--- (tests/test_edge_socket.py); its group is the
    # service's primary group, which the unit makes nginx's. The service keeps its own group as a
    # supplementary one, for /etc/worker-service.
    assert unit_values("User") == ["worker-service"]
    assert unit_values("Group") == [SOCKET_GROUP]
    assert "worker-service" in unit_values("SupplementaryGroups")[0].split()
    assert unit_values("RuntimeDirectoryMode") == ["0750"]  # only the owner and nginx's group get in
    # nginx's group must not read the job history, the embedded database or the lock: the state is private.
    assert unit_values("StateDirectoryMode") == ["0700"]
    assert unit_values("UMask") == ["0077"]
    assert re.search(r"^umask = 0o007$", (ROOT / "worker_service" / "gunicorn" / "conf.py").read_text(),
                     flags=re.MULTILINE)


def local_unit(tmp_path: Path) -> tuple[str, Path]:
    """systemd-analyze and the shipped unit, its executables this checkout's (the installed package's are not here)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = tmp_path / UNIT_FILE.name
    unit.write_text(UNIT_FILE.read_text().replace("/opt/worker-service/bin/", f"{BIN}/"))
    return analyze, unit


def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    analyze, unit = local_unit(tmp_path)
    done = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=30)
    complaints = [line for line in done.stderr.splitlines() if unit.name in line]
    assert done.returncode == 0 and not complaints, done.stderr


def test_the_unit_runs_the_installed_package_with_a_state_directory_from_systemd():
    assert unit_values("ExecStart") == ["/opt/worker-service/bin/worker-service serve"]
    assert unit_values("ExecReload")[0] == "/opt/worker-service/bin/worker-service check-config"
    assert unit_values("StateDirectory") == ["worker-service"]  # $STATE_DIRECTORY: WORKER_STATE_DIR's default
    assert unit_values("WorkingDirectory") == []  # nothing of the service lives in a source tree any more


def test_the_unit_keeps_its_systemd_analyze_security_exposure_at_most_2(tmp_path):
    """1.9 ("OK") when the unit ran gunicorn from the source tree; the packaged unit must not weaken it."""
    analyze, unit = local_unit(tmp_path)
    done = subprocess.run([analyze, "security", "--offline=true", "--threshold=20", str(unit)],
                          capture_output=True, text=True, timeout=60)
    found = re.search(rf"Overall exposure level for {re.escape(unit.name)}: (\d+\.\d)", done.stdout)
    assert found, done.stdout[-1000:] + done.stderr
    assert float(found.group(1)) <= 2.0 and done.returncode == 0, done.stdout[-1500:]
