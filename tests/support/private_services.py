"""Private Redis and PostgreSQL servers that a test may stop, start or lock down without touching the shared ones."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.leftovers import track
from tests.support.servers import free_port, wait_until


class PrivateRedis:
    """redis-server on a free port, optionally with a password and any further server options.

    ``options`` are redis-server command-line options, e.g. ``("--replicaof", "127.0.0.1", "1")`` for a
    read-only replica of a master that is not there, or ``("--maxmemory", "1")`` for a full cache.
    """

    def __init__(self, workdir: Path, password: str | None = None, options: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.password = password
        self.workdir = workdir
        self.options = tuple(options)
        self.process: subprocess.Popen | None = None

    def start(self) -> PrivateRedis:
        command = [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--dir", str(self.workdir)]
        if self.password:
            command += ["--requirepass", self.password]
        command += list(self.options)
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        track(self.process, f"redis-server on 127.0.0.1:{self.port}")
        wait_until(self._answers, timeout=10, what=f"redis on {self.port}")
        return self

    def _answers(self) -> bool:
        import socket

        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64) != b""

    @property
    def url(self) -> str:
        return f"redis://{':' + self.password + '@' if self.password else ''}127.0.0.1:{self.port}/0"

    def client(self):
        """A plain redis-py client on this server, to arrange or inspect its data."""
        import redis

        return redis.Redis.from_url(self.url, decode_responses=True, socket_timeout=5)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class PrivatePostgres:
    """A throw-away PostgreSQL cluster (initdb as user postgres) on a free port."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: that is private to root, and the server runs as postgres.
        self.root = Path(tempfile.mkdtemp(prefix="worker-service-pg-"))
        self.root.chmod(0o755)
        self.port = free_port()
        self.datadir = self.root / "pgdata"
        self.bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1])
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run(prefix + list(command), capture_output=True, text=True, timeout=60)
        if done.returncode:
            raise RuntimeError(f"{command[0]} failed: {done.stderr.strip() or done.stdout.strip()}")

    def init(self) -> PrivatePostgres:
        self.datadir.mkdir(parents=True)
        if os.geteuid() == 0:
            shutil.chown(self.datadir, "postgres")
        self._as_postgres(str(self.bindir / "initdb"), "-D", str(self.datadir), "-A", "trust", "-U", "postgres")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.datadir}"
        self._as_postgres(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-l", str(self.datadir / "server.log"), "-o", options,
                         "-w", "-t", "30", "start")
        # pg_ctl leaves the postmaster running on its own: its pid is the first line of postmaster.pid.
        track(int((self.datadir / "postmaster.pid").read_text().split()[0]), f"PostgreSQL on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        self._as_postgres(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
