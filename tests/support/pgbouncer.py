"""A real PgBouncer (Debian package ``pgbouncer``) in a temp dir, in front of the tests' PostgreSQL.

``PgBouncer(workdir, pool_mode="transaction")`` listens on a free 127.0.0.1
port and sends every client of database ``test`` to 127.0.0.1:5432 as user
``postgres`` (trust there). ``auth_type="plain"`` with ``users={"app": "s3cret"}``
makes PgBouncer itself check passwords: a real "password authentication
failed" while the server trusts everyone. Start and stop are bounded.

What a client may send is PgBouncer's default: no ``ignore_startup_parameters``,
so a startup parameter it does not track (``options``, ``extra_float_digits``)
is refused as a stock install refuses it ("unsupported startup parameter").
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from tests.support.leftovers import track
from tests.support.servers import free_port, wait_until

BINARY = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def available() -> bool:
    return os.access(BINARY, os.X_OK)


class PgBouncer:
    """One pgbouncer process; use as a context manager or call :meth:`start` and :meth:`stop`."""

    def __init__(self, workdir: Path, *, pool_mode: str = "transaction", auth_type: str = "trust",
                 users: Mapping[str, str] | None = None, pool_size: int = 3, target_port: int = 5432) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.pool_mode, self.auth_type = pool_mode, auth_type
        self.users = dict(users or {"postgres": ""})
        self.pool_size, self.target_port = pool_size, target_port
        self.process: subprocess.Popen | None = None
        self.log_path = workdir / "pgbouncer.log"

    def url(self, user: str = "postgres", password: str | None = None, database: str = "test") -> str:
        secret = f":{quote(password, safe='')}" if password is not None else ""
        return f"postgresql://{user}{secret}@127.0.0.1:{self.port}/{database}"

    def _write_config(self) -> Path:
        userlist = self.workdir / "userlist.txt"
        userlist.write_text("".join(f'"{user}" "{password}"\n' for user, password in self.users.items()))
        config = self.workdir / "pgbouncer.ini"
        lines = [
            "[databases]",
            f"test = host=127.0.0.1 port={self.target_port} dbname=test user=postgres",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            f"auth_type = {self.auth_type}",
            f"auth_file = {userlist}",
            f"pool_mode = {self.pool_mode}",
            f"default_pool_size = {self.pool_size}",
            "max_client_conn = 200",
            "server_reset_query =",
            "server_connect_timeout = 5",
        ]
        if os.geteuid() == 0:  # pgbouncer refuses to run as root
            lines.append("user = postgres")
        config.write_text("\n".join(lines) + "\n")
        for path in (self.workdir, userlist, config):
            path.chmod(0o755 if path.is_dir() else 0o644)
        return config

    def start(self) -> PgBouncer:
        config = self._write_config()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([BINARY, str(config)], stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.workdir, start_new_session=True)
        track(self.process, f"pgbouncer on 127.0.0.1:{self.port}")
        wait_until(self._listening, timeout=10, what=f"pgbouncer on port {self.port}")
        return self

    def _listening(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"pgbouncer exited with {self.process.returncode}: {self.log()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # immediate shutdown
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def __enter__(self) -> PgBouncer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
