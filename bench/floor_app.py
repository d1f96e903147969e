"""The floor: a bare Flask endpoint returning a constant JSON body, for ratio comparisons.

Served exactly like the service (gunicorn -k gthread -w 2 --threads 4, same keep-alive and
access-log format), it measures what gunicorn + Flask cost with no work in the view.

FLOOR_BODY_BYTES (default 173, the size of worker-service's healthy /health body) sets the
body size; the body is built once and padded to exactly that many bytes. The response carries
the same headers as the service's JSON responses (Content-Type, Cache-Control: no-store).

    gunicorn -k gthread -w 2 --threads 4 --chdir bench floor_app:app
"""

from __future__ import annotations

import json
import os

from flask import Flask, Response

SIZE = int(os.environ.get("FLOOR_BODY_BYTES", "173"))


def _body(size: int) -> bytes:
    shape = {
        "status": "available",
        "components": {"cache": "available", "database": "available", "scheduler": "available"},
        "timestamp": "2026-01-01T00:00:00.000000Z",
        "service": "",
    }
    bare = len(json.dumps(shape, separators=(",", ":")).encode())
    shape["service"] = "x" * max(size - bare, 0)
    return json.dumps(shape, separators=(",", ":")).encode()


BODY = _body(SIZE)
app = Flask(__name__)


@app.get("/health")
@app.get("/status")
def constant():
    response = Response(BODY, status=200, mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response
