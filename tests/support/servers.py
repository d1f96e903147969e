"""Real processes and sockets for tests: gunicorn, hung listeners, free ports. Every wait has a deadline."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import psutil

from tests.support.leftovers import track

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], T], timeout: float, interval: float = 0.05, what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as error:  # the thing may not be up yet
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f" (last error: {last_error})" if last_error else ""))


def http_get(url: str, timeout: float = 5.0, headers: Mapping[str, str] | None = None, method: str = "GET") -> tuple[int, dict, Any]:
    """Return (status, headers, parsed JSON body or text or None)."""
    request = urllib.request.Request(url, headers=dict(headers or {}), method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, head, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        status, head, raw = error.code, dict(error.headers), error.read()
    if not raw:
        return status, head, None
    try:
        return status, head, json.loads(raw)
    except ValueError:
        return status, head, raw.decode("utf-8", "replace")


class HungListener:
    """A TCP listener that accepts connections and never answers (a hung dependency)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                connection, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self._held.append(connection)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for connection in self._held:
            connection.close()
        self.sock.close()


def base_env(state_dir: Path, **extra: str) -> dict[str, str]:
    """An environment for the service with nothing inherited that could change its config."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("WORKER_", "REDIS_", "SUPABASE_", "DATABASE_", "HEALTH_", "SCHEDULER_", "STATUS_", "JOB_", "GUNICORN_", "WEB_CONCURRENCY", "ADMIN_", "STATE_DATABASE_"))}
    env.update({"WORKER_STATE_DIR": str(state_dir), "PYTHONUNBUFFERED": "1"})
    env.update({key: str(value) for key, value in extra.items()})
    return env


class Gunicorn:
    """A real gunicorn master with our gunicorn.conf.py, on a free port."""

    def __init__(self, env: Mapping[str, str], workdir: Path, args: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(env)
        self.workdir = workdir
        self.args = args or []
        self.stdout_path = workdir / f"gunicorn-{self.port}.out"
        self.stderr_path = workdir / f"gunicorn-{self.port}.err"
        self.process: subprocess.Popen | None = None

    def start(self, wait: bool = True) -> Gunicorn:
        command = [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "-b", f"127.0.0.1:{self.port}",
                   "--chdir", str(ROOT), *self.args, "wsgi:app"]
        self.process = subprocess.Popen(
            command, env=self.env, cwd=self.workdir,
            stdout=open(self.stdout_path, "wb"), stderr=open(self.stderr_path, "wb"),
        )
        track(self.process, f"gunicorn on {self.url}")
        if wait:
            wait_until(self._live, timeout=20, what=f"gunicorn on {self.url}")
        return self

    def _live(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"gunicorn exited with {self.process.returncode}: {self.stderr()[-2000:]}")
        return http_get(self.url + "/health/live", timeout=1)[0] == 200

    def get(self, path: str, **kwargs: Any) -> tuple[int, dict, Any]:
        return http_get(self.url + path, **kwargs)

    @property
    def master(self) -> psutil.Process:
        return psutil.Process(self.process.pid)

    def worker_pids(self) -> list[int]:
        return sorted(child.pid for child in self.master.children())

    def signal(self, signum: int) -> None:
        os.kill(self.process.pid, signum)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            for child in self.master.children(recursive=True):
                child.kill()
            self.process.kill()
            return self.process.wait(timeout=5)


def run_gunicorn_expecting_exit(env: Mapping[str, str], workdir: Path, timeout: float = 20) -> subprocess.CompletedProcess:
    """Start gunicorn and wait for it to exit (a start-up failure)."""
    command = [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "-b", f"127.0.0.1:{free_port()}",
               "--chdir", str(ROOT), "wsgi:app"]
    return subprocess.run(command, env=dict(env), cwd=workdir, capture_output=True, text=True, timeout=timeout)


class DelayProxy:
    """A TCP proxy to a real server that holds every reply for ``delay`` seconds (a slow dependency)."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream, 0.0), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, self.delay), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, delay: float) -> None:
        try:
            while data := source.recv(65536):
                if delay:
                    self._stop.wait(delay)
                sink.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self._stop.set()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass
        self.sock.close()


class CannedHTTPServer:
    """A real HTTP server on 127.0.0.1 whose GET answers come from ``respond(path) -> (status, content type, body)``."""

    def __init__(self, respond: Callable[[str], tuple[int, str, bytes]]) -> None:
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                status, content_type, body = respond(self.path)
                self.send_response(status)
                if content_type:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
