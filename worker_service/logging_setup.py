"""Log lines as ``key=value`` pairs on stderr, with every secret redacted.

The same format is used by gunicorn's error log (see ``gunicorn.conf.py``) so
a log shipper parses one format.
"""

from __future__ import annotations

import logging
import os

from common.helpers.health import RedactingFilter

LOG_FORMAT = 'ts=%(asctime)s level=%(levelname)s pid=%(process)d logger=%(name)s msg="%(message)s"'
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


class LogfmtFormatter(logging.Formatter):
    """Quote the message so that one record is one parseable line."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT, DATE_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage().replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        record.asctime = self.formatTime(record, self.datefmt)
        text = self.formatMessage(record)
        if record.exc_text:
            text += ' exc="' + record.exc_text.replace('"', '\\"').replace("\n", "\\n") + '"'
        return text

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return self._style.format(record)


def configure_logging(level: str) -> None:
    """Send the ``worker_service`` and ``common`` loggers to stderr once per process."""
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
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
