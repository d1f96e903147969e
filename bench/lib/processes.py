"""The benchmark's processes: gunicorn servers on loopback, each stopped by its PID, and where the service's code is.

The real-process helpers (free ports, readiness waits, the hung listener, the
service's base environment) are the tests' own (tests/support/servers.py),
imported here and nowhere else in bench/lib.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
BIN = Path(sys.executable).parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from tests.support.servers import HungListener, base_env, free_port, http_get, wait_until  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/15"
DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
WORKERS, THREADS = 2, 4


@dataclass
class Source:
    """The service's source tree and how servers log; set once by run.py before any server starts."""

    root: Path = ROOT  # a `git archive` snapshot with --ref
    access_log_format: str = ""  # gunicorn.conf.py's, given to floor and peer too
    keep_access_logs: bool = False


SOURCE = Source()


def log(message: str) -> None:
    """Print ``message`` with the time of day, at once."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Registry:
    """Everything started here, stopped by PID in reverse order."""

    def __init__(self) -> None:
        self.items: list[Any] = []

    def add(self, item: Any) -> Any:
        self.items.append(item)
        return item

    def remove(self, item: Any) -> None:
        if item in self.items:
            self.items.remove(item)

    def cleanup(self) -> None:
        for item in reversed(self.items):
            try:
                if isinstance(item, Server):
                    item.stop()
                elif isinstance(item, HungListener):
                    item.close()
                elif isinstance(item, subprocess.Popen):
                    if item.poll() is None:
                        item.kill()
                        item.wait(timeout=10)
            except Exception as error:  # keep cleaning up the rest
                print(f"cleanup of {item!r} failed: {error}", file=sys.stderr)
        self.items.clear()


REGISTRY = Registry()


def access_log_format() -> str:
    """The access-log format of the gunicorn configuration (read, not run), so floor and peer log the same line.

    The packaged configuration, worker_service/gunicorn/conf.py; gunicorn.conf.py itself in a source tree from
    before it (an older --ref), where the top-level file was the configuration rather than a shim over it.
    """
    for path in (SOURCE.root / "worker_service" / "gunicorn" / "conf.py", SOURCE.root / "gunicorn.conf.py"):
        if not path.is_file():
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "access_log_format" for t in node.targets):
                return ast.literal_eval(node.value)
    raise RuntimeError("the gunicorn configuration has no access_log_format")


class Server:
    """One gunicorn master on a free loopback port."""

    def __init__(self, name: str, kind: str, env: dict[str, str], logdir: Path, app: str | None = None) -> None:
        self.name, self.kind, self.env = name, kind, env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logdir = logdir
        gunicorn = str(BIN / "gunicorn")
        bind = f"127.0.0.1:{self.port}"
        if kind == "ours":
            self.command = [gunicorn, "-c", str(SOURCE.root / "gunicorn.conf.py"), "-b", bind,
                            "--chdir", str(SOURCE.root), "wsgi:app"]
            self.env.update({"WEB_CONCURRENCY": str(WORKERS), "GUNICORN_THREADS": str(THREADS)})
        else:
            self.command = [gunicorn, "-k", "gthread", "-w", str(WORKERS), "--threads", str(THREADS), "--keep-alive", "5",
                            "-b", bind, "--chdir", str(BENCH), "--access-logfile", "-",
                            "--access-logformat", SOURCE.access_log_format, app]
        self.process: subprocess.Popen | None = None

    def describe(self) -> str:
        shown = {k: v for k, v in self.env.items() if k.startswith(
            ("WEB_", "GUNICORN_", "REDIS_", "DATABASE_", "WORKER_", "STATUS_", "HEALTH_", "SCHEDULER_", "FLOOR_",
             "PYTHONPATH"))}
        env = " ".join(f"{k}={v}" for k, v in sorted(shown.items()))
        return f"{env} {' '.join(quote(a) for a in self.command)}".strip()

    def start(self, ready_path: str | None = "/health/live") -> Server:
        out = open(self.logdir / f"{self.name}.out", "ab")
        err = open(self.logdir / f"{self.name}.err", "ab")
        self.process = subprocess.Popen(self.command, env=self.env,
                                        cwd=str(SOURCE.root if self.kind == "ours" else BENCH), stdout=out, stderr=err)
        out.close()
        err.close()
        REGISTRY.add(self)
        wait_until(self._up, timeout=40, what=f"{self.name} listening with {WORKERS} workers")
        if ready_path:
            wait_until(lambda: http_get(self.url + ready_path, timeout=2)[0] in (200, 503), timeout=30,
                       what=f"{self.name} {ready_path}")
        return self

    def _up(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.logdir}/{self.name}.err")
        if len(self.workers()) < WORKERS:
            return False
        with socket.create_connection(("127.0.0.1", self.port), timeout=1):
            return True

    @property
    def pid(self) -> int:
        return self.process.pid

    def workers(self) -> list[int]:
        try:
            return sorted(child.pid for child in psutil.Process(self.process.pid).children())
        except psutil.Error:
            return []

    def stop(self) -> None:
        if self.process is None:
            return
        REGISTRY.remove(self)
        if self.process.poll() is None:
            children = []
            try:
                children = psutil.Process(self.process.pid).children(recursive=True)
            except psutil.Error:
                pass
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            for child in children:  # workers are stopped by the master; make sure, by PID
                try:
                    child.kill()
                except psutil.Error:
                    pass
        if not SOURCE.keep_access_logs:  # stdout is the access log: ~170 bytes a request, gigabytes over a full run
            (self.logdir / f"{self.name}.out").unlink(missing_ok=True)


def quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"



def ours_env(state_dir: Path, **extra: str) -> dict[str, str]:
    state_dir.mkdir(parents=True, exist_ok=True)
    values = {"REDIS_URL": REDIS_URL, "DATABASE_URL": DATABASE_URL}
    values.update(extra)
    return base_env(state_dir, **values)


def plain_env(**extra: str) -> dict[str, str]:
    return base_env(Path(tempfile.gettempdir()), **extra)



def snapshot(ref: str, into: Path) -> str:
    """Extract commit ``ref`` of the repository into ``into``; return the commit's short hash."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "--short", f"{ref}^{{commit}}"],
                            capture_output=True, text=True, check=True).stdout.strip()
    into.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", commit], stdout=subprocess.PIPE)
    subprocess.run(["tar", "-x", "-C", str(into)], stdin=archive.stdout, check=True)
    archive.stdout.close()
    if archive.wait() != 0:
        raise SystemExit(f"git archive {commit} failed")
    return commit



def ensure_peer(install: bool) -> None:
    if importlib.util.find_spec("healthcheck") is not None:
        return
    if not install:
        raise SystemExit("py-healthcheck is not installed: .venv/bin/pip install py-healthcheck (or drop --no-install)")
    log("installing py-healthcheck into the venv (bench only)")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "py-healthcheck"], check=True, timeout=300)


def preflight() -> None:
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    for host, port, what in (("127.0.0.1", 6379, "Redis"), ("127.0.0.1", 5432, "PostgreSQL")):
        try:
            socket.create_connection((host, port), timeout=2).close()
        except OSError as error:
            raise SystemExit(f"{what} is not reachable on {host}:{port} ({error}); try `make services`") from None

