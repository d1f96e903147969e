"""The shipped HAProxy config in front of two real gunicorn masters: graceful stops, a reload (SIGHUP) and a
rolling restart lose no client request. HAProxy checks GET /health/ready; every request is counted."""

from __future__ import annotations

import http.client
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.support.haproxy import CONFIG_FILE, HAProxy, haproxy_binary
from tests.support.nginx import Nginx, nginx_binary, socket_group_args
from tests.support.servers import Gunicorn, base_env, wait_until

MIN_REQUESTS = 300  # the client sends at least these, and keeps going until the restarts are over
PACE = 0.02  # seconds between two requests
CLIENT_BOUND = 90.0  # seconds: a safety net only; the end of the restarts stops the client (well over 20 s when loaded)
PATHS = ("/health/live", "/openapi.json")


class ClientLoop(threading.Thread):
    """Sends GETs through HAProxy, one new connection each, until stopped (and at least MIN_REQUESTS); bounded in time.

    ``stopped_by`` says why it ended: ``"done"``, or ``"deadline"`` (then the restarts after it ran with no traffic).
    """

    def __init__(self, port: int, deadline: float) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.deadline = deadline
        self.sent = 0
        self.failures: list[str] = []
        self.done = threading.Event()
        self.stopped_by: str | None = None

    def run(self) -> None:
        self.stopped_by = "deadline"
        while time.monotonic() < self.deadline:
            if self.done.is_set() and self.sent >= MIN_REQUESTS:
                self.stopped_by = "done"
                break
            path = PATHS[self.sent % len(PATHS)]
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    self.failures.append(f"#{self.sent} {path}: HTTP {response.status}")
            except (OSError, http.client.HTTPException) as error:
                self.failures.append(f"#{self.sent} {path}: {error!r}")
            finally:
                connection.close()
            self.sent += 1
            time.sleep(PACE)  # pacing, not synchronisation


class Host:
    """One "host": a gunicorn master on a fixed loopback port, with its own state directory."""

    def __init__(self, name: str, base: Path) -> None:
        self.name = name
        self.base = base
        (base / "state").mkdir(parents=True)
        self.env = base_env(base / "state", GUNICORN_GRACEFUL_TIMEOUT="5", SCHEDULER_HEARTBEAT_INTERVAL="1")
        self.server = Gunicorn(self.env, base, args=["-w", "2"])
        self.port = self.server.port
        self.starts = 0

    def start(self) -> None:
        """Start (again) on the same port; a fresh log per start."""
        self.starts += 1
        self.server = Gunicorn(self.env, self.base / f"run{self.starts}", args=["-w", "2"])
        self.server.workdir.mkdir()
        self.server.stdout_path = self.server.workdir / "gunicorn.out"
        self.server.stderr_path = self.server.workdir / "gunicorn.err"
        self.server.port, self.server.url = self.port, f"http://127.0.0.1:{self.port}"
        self.server.start()

    def graceful_stop(self) -> None:
        """SIGTERM to the master (systemctl stop); wait for it to exit."""
        assert self.server.stop(timeout=15) == 0, self.server.stderr()[-2000:]


@pytest.fixture
def hosts(tmp_path):
    started = [Host("host1", tmp_path / "host1"), Host("host2", tmp_path / "host2")]
    for host in started:
        host.start()
    yield started
    for host in started:
        host.server.stop()


@pytest.fixture
def haproxy(tmp_path, hosts):
    binary = haproxy_binary()
    if binary is None:
        pytest.skip("haproxy (Debian package haproxy) is not installed")
    proxy = HAProxy(binary, tmp_path / "haproxy", {host.name: host.port for host in hosts}).start()
    yield proxy
    proxy.stop()


def test_the_shipped_haproxy_config_is_valid():
    binary = haproxy_binary()
    if binary is None:
        pytest.skip("haproxy (Debian package haproxy) is not installed")
    done = subprocess.run([binary, "-c", "-f", str(CONFIG_FILE)], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stdout + done.stderr


def test_graceful_stops_a_reload_and_a_rolling_restart_behind_haproxy_lose_no_request(hosts, haproxy):
    host1, host2 = hosts
    for host in hosts:
        haproxy.wait_for(host.name, "UP")
    client = ClientLoop(haproxy.port, deadline=time.monotonic() + CLIENT_BOUND)
    client.start()
    wait_until(lambda: client.sent >= 30, timeout=5, what="traffic through haproxy")

    # Rolling restart: host1 stops gracefully (SIGTERM), comes back, and only once HAProxy sees it ready...
    host1.graceful_stop()
    haproxy.wait_for("host1", "DOWN")
    host1.start()
    haproxy.wait_for("host1", "UP")
    # ...host2 reloads (SIGHUP: new workers, the old ones drain), then stops and comes back the same way.
    old_workers = set(host2.server.worker_pids())
    host2.server.signal(signal.SIGHUP)
    wait_until(lambda: len(set(host2.server.worker_pids()) - old_workers) == 2
               and not old_workers & set(host2.server.worker_pids()), timeout=15, what="host2's reload")
    host2.graceful_stop()
    haproxy.wait_for("host2", "DOWN")
    host2.start()
    haproxy.wait_for("host2", "UP")

    client.done.set()
    client.join(timeout=25)
    assert not client.is_alive()
    print(f"\nrequests through haproxy: {client.sent}, failed: {len(client.failures)}")
    assert client.failures == [], client.failures
    assert client.sent >= MIN_REQUESTS
    # Not a pass by default: every stop, reload and restart above happened while the client was still sending.
    assert client.stopped_by == "done", f"the client stopped at its {CLIENT_BOUND:g} s bound before the restarts ended"
    # The host that came back was checked on /health/ready and taken back in: its workers ran their first checks
    # before accepting a connection, so HAProxy's first probes were answered 200, not 503 starting.
    restarted = host1.server.stdout()
    assert 'path="/health/ready" status=200' in restarted


class StatusWatch(threading.Thread):
    """Polls HAProxy's view of one server every 20 ms until stopped; ``seen`` holds every status it reported."""

    def __init__(self, proxy: HAProxy, server: str) -> None:
        super().__init__(daemon=True)
        self.proxy, self.server = proxy, server
        self.seen: set[str] = set()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            self.seen.add(self.proxy.server_status().get(self.server, "missing"))


def test_reloads_never_take_a_single_host_out_of_haproxy(tmp_path):
    """One host behind the shipped config (fall 2): each reload's new workers answer their first probe 200.

    A new worker used to answer `starting` until a probe had started its first checks; two new workers probed
    one after the other after a reload were two failed checks in a row, and HAProxy took the only host out.
    """
    binary = haproxy_binary()
    if binary is None:
        pytest.skip("haproxy (Debian package haproxy) is not installed")
    host = Host("host1", tmp_path / "host1")
    host.start()
    # A check may wait out the reload itself (gunicorn stops the old workers before the new ones accept; seconds on
    # a loaded machine), so only an answer can fail it: with the shipped `inter 2s` a check may take 2 s.
    proxy = HAProxy(binary, tmp_path / "haproxy", {"host1": host.port}, check_timeout="10s").start()
    watch = StatusWatch(proxy, "host1")
    try:
        proxy.wait_for("host1", "UP")
        watch.start()
        for _ in range(3):
            old_workers = set(host.server.worker_pids())
            probes_before = host.server.stdout().count('path="/health/ready"')
            host.server.signal(signal.SIGHUP)
            wait_until(lambda old=old_workers: len(set(host.server.worker_pids()) - old) == 2
                       and not old & set(host.server.worker_pids()), timeout=15, what="the reload")
            # HAProxy probes every 200 ms: several probes reach the new workers before the next reload.
            wait_until(lambda before=probes_before: host.server.stdout().count('path="/health/ready"') >= before + 6,
                       timeout=10, what="HAProxy's probes of the new workers")
        watch.done.set()
        watch.join(timeout=5)
        assert "DOWN" not in watch.seen and "missing" not in watch.seen, watch.seen
        answers = host.server.stdout()
        # At most one 503: a probe accepted by an old worker the moment its SIGTERM came is answered `draining`.
        assert answers.count('path="/health/ready" status=503') <= 1, [
            line for line in answers.splitlines() if 'status=503' in line]
    finally:
        watch.done.set()
        proxy.stop()
        host.server.stop()


def test_nginx_passes_health_ready_and_its_503_starting_through_unchanged(gunicorn, hung_listener):
    """The shipped nginx site (HAProxy's target on each host) proxies /health/ready, 503 bodies included.

    Redis hangs and the check timeout is 3 s, so the worker's first checks (started at boot) are still running
    when the first probe comes: 503 ``starting``, then 503 ``unavailable``.
    """
    binary = nginx_binary()
    if binary is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx-light)")
    run_dir = Path(tempfile.mkdtemp(prefix="ws-ready-"))  # short: a socket path has at most 107 bytes
    run_dir.chmod(0o755)
    nginx = None
    try:
        socket_path = run_dir / "gunicorn.sock"
        gunicorn(args=["-b", f"unix:{socket_path}", *socket_group_args()], WEB_CONCURRENCY="1",
                 REDIS_URL=f"redis://127.0.0.1:{hung_listener.port}/0", HEALTH_CHECK_TIMEOUT="3")
        nginx = Nginx(binary, run_dir / "nginx", socket_path).start()
        first = nginx.request("/health/ready")
        assert (first.status, first.json()["status"]) == (503, "starting"), first
        assert first.headers["Content-Type"] == "application/json"
        done = wait_until(lambda: (r := nginx.request("/health/ready")).json()["status"] != "starting" and r,
                          timeout=15, what="the first checks done")
        assert (done.status, done.json()["status"], done.json()["components"]["cache"]) == (
            503, "unavailable", "unavailable")
    finally:
        if nginx is not None:
            nginx.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
