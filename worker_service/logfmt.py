"""The ``key=value`` log line format. Standard library only.

worker_service/gunicorn_master.py loads this file by path for the master's log lines, so the
master never imports the ``worker_service`` package (new workers then import
new code on reload).
"""

from __future__ import annotations

import logging

LOG_FORMAT = 'ts=%(asctime)s level=%(levelname)s pid=%(process)d logger=%(name)s msg="%(message)s"'
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


class LogfmtFormatter(logging.Formatter):
    """Quote the message so that one record is one parseable line."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT, DATE_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        record.message = _quote(record.getMessage())
        record.asctime = self.formatTime(record, self.datefmt)
        text = self._style.format(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            text += f' exc="{_quote(record.exc_text)}"'
        return text


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
