"""A real HTTP server that receives alert webhooks (and Apprise's json:// posts) and records them."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Callable
from typing import Any

from .servers import wait_until

# (path, payload, how many times this (path, event id) came before) -> status to answer, or None to hang
Decide = Callable[[str, dict[str, Any], int], "int | None"]


class AlertReceiver:
    """Records every POST as ``(path, headers, payload, status answered)``; ``decide`` picks the answer."""

    def __init__(self, decide: Decide | None = None, hang: float = 30.0) -> None:
        self.decide: Decide = decide or (lambda path, payload, tries: 200)
        self.received: list[tuple[str, dict[str, str], dict[str, Any], int | None]] = []
        self._tries: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                arrived = time.time()
                try:
                    payload = json.loads(body or b"{}")
                except ValueError:
                    payload = {"raw": body.decode(errors="replace")}
                headers = {key.lower(): value for key, value in self.headers.items()}
                headers["x-raw-body"] = body.decode(errors="replace")
                headers["x-received-at"] = f"{arrived:.6f}"  # when it arrived (bench/alert_latency.py)
                with receiver._lock:
                    key = (self.path, str(payload.get("id") or payload.get("title")))
                    tries = receiver._tries.get(key, 0)
                    receiver._tries[key] = tries + 1
                status = receiver.decide(self.path, payload, tries)
                with receiver._lock:
                    receiver.received.append((self.path, headers, payload, status))
                if status is None:
                    receiver._closing.wait(hang)
                    return
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def accepted(self, path: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        """The payloads answered with a 2xx, on ``path`` if given, whose fields match ``fields``."""
        with self._lock:
            rows = list(self.received)
        return [payload for p, _, payload, status in rows if status is not None and 200 <= status < 300
                and (path is None or p.startswith(path)) and all(payload.get(k) == v for k, v in fields.items())]

    def requests(self, path: str | None = None, **fields: Any) -> list[tuple[str, dict[str, str], dict[str, Any], int | None]]:
        with self._lock:
            rows = list(self.received)
        return [row for row in rows if (path is None or row[0].startswith(path))
                and all(row[2].get(k) == v for k, v in fields.items())]

    def wait_for(self, count: int, timeout: float, path: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        """Wait until at least ``count`` matching payloads were accepted; return them."""
        return wait_until(lambda: (found := self.accepted(path, **fields)) and len(found) >= count and found,
                          timeout=timeout, what=f"{count} alert(s) {fields} on {path or 'any path'}")

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
