"""The cost of one access line: gunicorn's own Logger against ours (logfmt.py: ISO ``ts``, every value escaped).

Both write the shipped ``access_log_format`` to /dev/null for a /health request with a
dozen headers, in interleaved rounds so that the machine's load hits both alike.

Usage: .venv/bin/python bench/access_log_cost.py [--rounds 15] [--lines 5000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import timeit
from pathlib import Path

from gunicorn.config import Config
from gunicorn.glogging import Logger

ROOT = Path(__file__).resolve().parent.parent
FORMAT = ('ts=%(t)s level=INFO logger=gunicorn.access remote=%(h)s method=%(m)s path="%(U)s" '
          'status=%(s)s bytes=%(B)s duration_ms=%(M)s agent="%(a)s"')


class Response:
    status = "200 OK"
    sent = 87
    headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store"), ("Content-Length", "87")]


class Request:
    headers = [("Host", "127.0.0.1:8000"), ("User-Agent", "curl/7.88.1"), ("Accept", "*/*")]


ENVIRON = {"REQUEST_METHOD": "GET", "RAW_URI": "/health", "SERVER_PROTOCOL": "HTTP/1.1", "PATH_INFO": "/health",
           "REMOTE_ADDR": "127.0.0.1", "HTTP_USER_AGENT": "curl/7.88.1", "QUERY_STRING": "",
           **{f"HTTP_X_HEADER_{n}": "v" * 20 for n in range(10)}, **{f"wsgi.key{n}": "x" for n in range(15)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--lines", type=int, default=5000)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("_logfmt", ROOT / "worker_service" / "logfmt.py")
    assert spec is not None and spec.loader is not None
    logfmt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(logfmt)
    loggers = {}
    for name, cls in (("gunicorn", Logger), ("worker-service", logfmt.gunicorn_logger_class())):
        cfg = Config()
        cfg.set("accesslog", "/dev/null")
        cfg.set("access_log_format", FORMAT)
        loggers[name] = cls(cfg)
    took = dt.timedelta(microseconds=1234)
    times: dict[str, list[float]] = {name: [] for name in loggers}
    for _ in range(args.rounds):
        for name, log in loggers.items():
            seconds = timeit.timeit(lambda log=log: log.access(Response(), Request(), ENVIRON, took), number=args.lines)
            times[name].append(seconds / args.lines * 1e6)
    for name, values in times.items():
        values.sort()
        print(f"{name:15} min {values[0]:6.1f} µs  median {values[len(values) // 2]:6.1f} µs per access line")


if __name__ == "__main__":
    main()
