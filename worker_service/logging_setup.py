"""Log lines as ``key=value`` pairs on stderr, with every secret redacted.

The same format is used by gunicorn's error log (see ``worker_service/gunicorn/conf.py``) so
a log shipper parses one format.
"""

from __future__ import annotations

import logging

from common.helpers.health import RedactingFilter

from .logfmt import LogfmtFormatter

# Not gunicorn.access: its lines hold the path without the query string (%(U)s),
# status, sizes and timings only, and redacting each one cost ~13 µs a request.
GUNICORN_LOGGERS = ("gunicorn.error",)


def configure_logging(level: str) -> None:
    """Send our loggers to stderr once per process, and redact gunicorn's error log."""
    for name in ("worker_service", "common", "apscheduler"):
        logger = logging.getLogger(name)
        logger.setLevel(level if name != "apscheduler" else max(logging.getLevelName(level), logging.WARNING))
        if any(getattr(h, "_worker_service", False) for h in logger.handlers):
            continue
        handler = logging.StreamHandler()
        handler.setFormatter(LogfmtFormatter())
        handler.addFilter(RedactingFilter())
        handler._worker_service = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    for name in GUNICORN_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
