"""A real HAProxy running the shipped deploy/haproxy/worker-service.cfg, in the foreground, on loopback.

Only the deployment-specific lines are replaced (bind, stats socket, the two
server lines, the check timing, and the chroot/user a test run as any user
cannot use); each must be found exactly once, so the test never runs a config
that differs from the shipped one in anything else. Every wait has a deadline.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path

from tests.support.leftovers import track
from tests.support.servers import ROOT, free_port, wait_until

CONFIG_FILE = ROOT / "deploy" / "haproxy" / "worker-service.cfg"

SHIPPED_BIND = "    bind :80\n"
SHIPPED_SOCKET = "    stats socket /run/haproxy/admin.sock mode 660 level admin\n"
SHIPPED_SERVERS = "    server host1 10.0.0.11:80\n    server host2 10.0.0.12:80\n"
SHIPPED_TIMING = "inter 2s fastinter 500ms downinter 1s"
TEST_TIMING = "inter 200ms fastinter 100ms downinter 200ms"
SHIPPED_SERVER_TIMEOUT = "    timeout server 35s\n"
DROPPED = ("    log /dev/log local0\n", "    chroot /var/lib/haproxy\n", "    user haproxy\n", "    group haproxy\n")


def haproxy_binary() -> str | None:
    """The haproxy binary on PATH (Debian package haproxy), or None."""
    return shutil.which("haproxy") or (shutil.which("haproxy", path="/usr/sbin:/sbin"))


def render_config(port: int, stats_socket: Path, servers: Mapping[str, int], check_timeout: str | None = None) -> str:
    """The shipped config with only its deployment-specific lines replaced.

    ``check_timeout`` adds ``timeout check`` (the shipped file has none: a check
    may take ``inter``, 2 s, which TEST_TIMING shortens to 200 ms, less than a
    worker takes to boot on a loaded machine).
    """
    text = CONFIG_FILE.read_text()
    lines = "".join(f"    server {name} 127.0.0.1:{server_port}\n" for name, server_port in servers.items())
    replacements = [(SHIPPED_BIND, f"    bind 127.0.0.1:{port}\n"),
                    (SHIPPED_SOCKET, f"    stats socket {stats_socket} mode 600 level admin\n"),
                    (SHIPPED_SERVERS, lines), (SHIPPED_TIMING, TEST_TIMING)]
    if check_timeout is not None:
        replacements.append((SHIPPED_SERVER_TIMEOUT, f"{SHIPPED_SERVER_TIMEOUT}    timeout check {check_timeout}\n"))
    replacements += [(line, "") for line in DROPPED]
    for old, new in replacements:
        found = text.count(old)
        if found != 1:
            raise AssertionError(f"{CONFIG_FILE.name}: expected exactly one {old!r}, found {found}")
        text = text.replace(old, new)
    return text


class HAProxy:
    """haproxy -db -f <dir>/haproxy.cfg with the shipped config, in front of loopback servers."""

    def __init__(self, binary: str, base: Path, servers: Mapping[str, int], check_timeout: str | None = None) -> None:
        self.binary = binary
        base.mkdir(parents=True)
        self.base = base
        self.port = free_port()
        self.stats_socket = base / "admin.sock"
        self.config = base / "haproxy.cfg"
        self.config.write_text(render_config(self.port, self.stats_socket, servers, check_timeout))
        self.process: subprocess.Popen | None = None

    def check_config(self) -> subprocess.CompletedProcess:
        return subprocess.run([self.binary, "-c", "-f", str(self.config)], capture_output=True, text=True, timeout=20)

    def start(self) -> HAProxy:
        checked = self.check_config()
        assert checked.returncode == 0, checked.stdout + checked.stderr
        self.process = subprocess.Popen([self.binary, "-db", "-f", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=open(self.base / "stderr", "wb"))
        track(self.process, f"haproxy on 127.0.0.1:{self.port}")
        wait_until(self._listening, timeout=10, what="haproxy to listen")
        return self

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"haproxy exited with {self.process.returncode}: {self.errors()[-2000:]}")
        socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        return self.stats_socket.exists()

    def command(self, line: str) -> str:
        """One command on the stats socket (``show stat``, ``show servers state``, ...); its answer."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.stats_socket))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def server_status(self) -> dict[str, str]:
        """Each server of the worker_service backend: ``UP``, ``DOWN``, ``UP 1/2``, ..."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return {row["svname"]: row["status"] for row in rows
                if row["pxname"] == "worker_service" and row["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_for(self, server: str, status: str, timeout: float = 10) -> None:
        """Until HAProxy's health check reports ``server`` as ``status`` (``UP`` or ``DOWN``)."""
        wait_until(lambda: self.server_status().get(server) == status, timeout=timeout, interval=0.05,
                   what=f"haproxy to see {server} {status}")

    def errors(self) -> str:
        path = self.base / "stderr"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, timeout: float = 10) -> None:
        """SIGUSR1 (soft stop), then SIGKILL after the deadline."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGUSR1)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
