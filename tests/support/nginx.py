"""A real nginx in front of the service, running the shipped site file from a private prefix.

Only the deployment-specific lines of deploy/nginx/worker-service.conf are replaced
(socket, snippet path, access log, listen addresses); each must be found exactly
where expected, so a test never runs a site file that differs from the shipped one
in anything else. Every wait has a deadline.
"""

from __future__ import annotations

import grp
import http.client
import ipaddress
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import threading
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.leftovers import track
from tests.support.servers import ROOT, wait_until

SITE_FILE = ROOT / "deploy" / "nginx" / "worker-service.conf"
INTERNAL_SNIPPET = ROOT / "deploy" / "nginx" / "worker-service-internal.conf"

SHIPPED_SOCKET = "unix:/run/worker-service/gunicorn.sock"
SHIPPED_SNIPPET = "/etc/nginx/snippets/worker-service-internal.conf"
SHIPPED_ACCESS_LOG = "/var/log/nginx/worker-service.access.log"
SHIPPED_LISTEN = "    listen 80 default_server;\n    listen [::]:80 default_server;\n"

# The shipped unit runs the service with Group=www-data and gunicorn.conf.py's umask makes its socket
# srwxrwx---: nginx's workers (group www-data) connect through the group, nobody else at all. As root the
# tests do the same: nginx's workers run as nobody:www-data, gunicorn gives its socket that group.
SOCKET_GROUP = "www-data"


def socket_group_args() -> list[str]:
    """gunicorn options that give its unix socket nginx's group (only root may choose a group)."""
    return ["--group", SOCKET_GROUP] if os.geteuid() == 0 else []


def require(condition: bool, message: str) -> None:
    """Skip when something the test needs is missing here, but fail on CI, where it must be present."""
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def can_bind(host: str) -> bool:
    try:
        with socket.socket() as sock:
            sock.bind((host, 0))
        return True
    except OSError:
        return False


def free_port_on(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def render_site(socket_path: Path, snippet: Path, access_log: Path, listens: Iterable[str]) -> str:
    """The shipped site file with only its deployment-specific lines replaced."""
    text = SITE_FILE.read_text()
    replacements = [
        (f"server {SHIPPED_SOCKET};", f"server unix:{socket_path};", True),
        (f"access_log {SHIPPED_ACCESS_LOG} ", f"access_log {access_log} ", True),
        (SHIPPED_LISTEN, "".join(f"    listen {address};\n" for address in listens), True),
        (f"include {SHIPPED_SNIPPET};", f"include {snippet};", False),  # once per internal location
    ]
    for old, new, exactly_once in replacements:
        found = text.count(old)
        if found == 0 or (exactly_once and found != 1):
            raise AssertionError(f"{SITE_FILE.name}: expected {'exactly one' if exactly_once else 'some'} {old!r}, found {found}")
        text = text.replace(old, new)
    return text


def access_rules(text: str) -> list[tuple[str, str]]:
    """The ``allow``/``deny`` rules of an nginx snippet, in order; anything else is an error."""
    rules = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        directive, _, value = line.rstrip(";").partition(" ")
        if not line.endswith(";") or directive not in ("allow", "deny") or not value.strip():
            raise AssertionError(f"line {number}: not an allow/deny rule: {raw!r}")
        rules.append((directive, value.strip()))
    return rules


def decide(rules: list[tuple[str, str]], address: str) -> str:
    """What nginx's access module does for a client address: the first matching rule wins; none: allow."""
    client = ipaddress.ip_address(address)
    for action, target in rules:
        if target == "all" or client in ipaddress.ip_network(target, strict=False):
            return action
    return "allow"


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, raw: bytes) -> None:
        self.status, self.headers, self.raw = status, headers, raw

    def json(self) -> Any:
        return json.loads(self.raw)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.raw[:300]!r}>"


class Nginx:
    """nginx -p <dir> -c <dir>/nginx.conf, in the foreground, with the shipped site file."""

    def __init__(self, binary: str, base: Path, socket_path: Path, snippet: Path = INTERNAL_SNIPPET,
                 hosts: tuple[str, ...] = ("127.0.0.1", "127.0.0.2")) -> None:
        self.binary = binary
        self.base = base
        base.mkdir(parents=True)
        self.ports = {host: free_port_on(host) for host in hosts}
        self.access_log = base / "access.log"
        self.error_log = base / "error.log"
        self.pid_file = base / "nginx.pid"
        self.conf = base / "nginx.conf"
        self.site = base / "worker-service.conf"
        self.site.write_text(render_site(socket_path, snippet, self.access_log,
                                         [f"{host}:{port}" for host, port in self.ports.items()]))
        temp = base / "temp"
        temp.mkdir()
        # The master runs as the current user; as root its workers drop to nobody, like www-data in
        # production, so the socket and these directories must be reachable by an unprivileged user.
        user = f"user nobody {SOCKET_GROUP};" if os.geteuid() == 0 else ""
        self.conf.write_text(f"""
{user}
daemon off;
master_process on;
worker_processes 1;
pid {self.pid_file};
error_log {self.error_log} info;
events {{ worker_connections 128; }}
http {{
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    access_log off;
    include {self.site};
}}
""")
        self.process: subprocess.Popen | None = None

    def command(self, *extra: str) -> list[str]:
        return [self.binary, "-p", f"{self.base}/", "-c", str(self.conf), *extra]

    def check_config(self) -> subprocess.CompletedProcess:
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=20)

    def start(self) -> Nginx:
        checked = self.check_config()
        assert checked.returncode == 0, checked.stderr
        self.process = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL, stderr=open(self.base / "stderr", "wb"))
        track(self.process, f"nginx in {self.base}")
        wait_until(self._listening, timeout=10, what="nginx to listen")
        return self

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"nginx exited with {self.process.returncode}: {self.errors()[-2000:]}")
        for host, port in self.ports.items():
            socket.create_connection((host, port), timeout=1).close()
        return self.pid_file.exists()

    def request(self, path: str, method: str = "GET", headers: Mapping[str, str] | None = None,
                via: str = "127.0.0.1", source: str = "127.0.0.1", timeout: float = 10) -> Response:
        """One request on a new connection to nginx's ``via`` listener, from the client address ``source``."""
        connection = http.client.HTTPConnection(via, self.ports[via], timeout=timeout, source_address=(source, 0))
        try:
            connection.request(method, path, headers=dict(headers or {}))
            response = connection.getresponse()
            return Response(response.status, response.headers, response.read())
        finally:
            connection.close()

    def errors(self) -> str:
        parts = [path.read_text(errors="replace") for path in (self.error_log, self.base / "stderr") if path.exists()]
        return "\n".join(parts)

    def access_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []

    def stop(self, timeout: float = 10) -> None:
        """SIGQUIT (graceful), then SIGKILL for the master and its workers after the deadline."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            workers = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            workers = []
        self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        for worker in workers:
            try:
                worker.kill()
            except psutil.NoSuchProcess:
                pass


class _EchoHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like gunicorn

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections += 1
            self.connection_number = self.server.connections

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        with self.server.lock:
            self.server.requests.append({"path": self.path, "headers": dict(self.headers.items()),
                                         "connection": self.connection_number})
        body = json.dumps({"connection": self.connection_number}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # a unix socket has no client address to log
        pass


class EchoUpstream(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A stand-in for gunicorn on a unix socket that records each request's headers and connection."""

    daemon_threads = True

    def __init__(self, path: Path) -> None:
        self.lock = threading.Lock()
        self.connections = 0
        self.requests: list[dict[str, Any]] = []
        super().__init__(str(path), _EchoHandler)
        os.chmod(path, 0o770)  # what gunicorn.conf.py's umask gives gunicorn's socket
        if os.geteuid() == 0:
            os.chown(path, -1, grp.getgrnam(SOCKET_GROUP).gr_gid)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
