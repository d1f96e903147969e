"""Log lines: one logfmt line each, one ISO timestamp format, no raw control character.

Real gunicorn for the access and error logs (a job failing with terminal escapes in its error, a request whose
path decodes to control characters).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support.runs import jobs_file
from tests.support.servers import Gunicorn, base_env, wait_until
from worker_service.logfmt import LogfmtFormatter

# One logfmt pair: key=bare or key="quoted with \-escapes"; a line is nothing but such pairs.
_PAIR = r'[a-z_]+=(?:"(?:[^"\\\x00-\x1f\x7f]|\\.)*"|[^\s"=\x00-\x1f\x7f]+)'
LOGFMT_LINE = re.compile(rf"{_PAIR}(?: {_PAIR})*")
_FIELD = re.compile(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|\S+)')
# What the issue saw: ESC, BEL, CR, NUL, U+202E; and every other character that must never reach a terminal raw.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

JOBS = """
[jobs.hostile]
func = "tests.support.sample_jobs:raise_control_characters"
trigger = "interval"
seconds = 1

[jobs.long]
func = "tests.support.sample_jobs:slow"
trigger = "interval"
seconds = 1
max_instances = 1
kwargs = { seconds = 30 }
"""


def fields(line: str) -> dict[str, str]:
    return {key: value for key, value in _FIELD.findall(line)}


def record_line(message: str) -> str:
    record = logging.LogRecord("worker_service.scheduler.tracking", logging.WARNING, __file__, 1, "%s", (message,),
                               None)
    return LogfmtFormatter().format(record)


@pytest.mark.parametrize("char", ["\x1b", "\x07", "\r", "\x00", "\u202e", "\x9b", "\u2028", "\x7f", "\t", "\n"])
def test_a_control_character_in_a_message_is_escaped_and_the_line_stays_one_logfmt_line(char):
    line = record_line(f"job x failed: before{char}after\" level=CRITICAL msg=\"forged")
    assert not RAW_CONTROL.search(line) and "\n" not in line
    assert LOGFMT_LINE.fullmatch(line), line
    assert fields(line)["level"] == "WARNING"
    assert f"before{char.encode('unicode_escape').decode()}after" in line


def test_a_backslash_before_a_quote_cannot_close_the_value():
    line = record_line('ends with a backslash \\" level=ERROR')
    assert LOGFMT_LINE.fullmatch(line), line
    assert [key for key, _ in _FIELD.findall(line)] == ["ts", "level", "pid", "logger", "msg"]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Gunicorn]:
    workdir = tmp_path_factory.mktemp("logs")
    path = jobs_file(workdir / "jobs.toml", JOBS)
    gunicorn = Gunicorn(base_env(workdir / "state", WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="1"), workdir).start()
    # A path that decodes to ESC, CR and LF, and a user agent ending in a backslash (it escaped the closing quote).
    request = urllib.request.Request(gunicorn.url + "/health%1b%5b31m%0d%0aforged%07%00%E2%80%AE",
                                     headers={"User-Agent": 'probe\\'})
    with contextlib.suppress(urllib.error.HTTPError):
        urllib.request.urlopen(request, timeout=5)
    gunicorn.get("/health/live")
    wait_until(lambda: gunicorn.stderr().count("job hostile failed") >= 3
               and gunicorn.stderr().count("job long skipped a run") >= 2, timeout=20,
               what="three failures of one job and two skips of the other")
    yield gunicorn
    gunicorn.stop()


def test_every_line_on_stdout_and_stderr_is_one_logfmt_line_without_a_raw_control_character(server):
    for name, text in (("stdout", server.stdout()), ("stderr", server.stderr())):
        for line in text.splitlines():
            assert not RAW_CONTROL.search(line), f"{name}: {line!r}"
            assert LOGFMT_LINE.fullmatch(line), f"{name}: {line!r}"
    access = [fields(line) for line in server.stdout().splitlines()]
    hostile = next(line for line in access if line["path"].startswith('"/health\\x1b'))
    # gunicorn's PATH_INFO is WSGI's latin-1 text of the bytes: U+202E arrives as three characters, one a C1 control.
    assert hostile["path"] == '"/health\\x1b[31m\\r\\nforged\\x07\\x00\u00e2\\x80\u00ae"'
    assert hostile["agent"] == '"probe\\\\"' and hostile["status"] == "404"
    failure = next(fields(line) for line in server.stderr().splitlines() if "job hostile failed" in line)
    assert failure["level"] == "WARNING"
    assert "\\x1b[31mALERT\\x07 back\\rover nul\\x00 rtl\\u202eevil\\nts=forged" in failure["msg"]


def test_access_and_application_lines_carry_the_same_iso_timestamp(server):
    stamps = {"access": [fields(line)["ts"] for line in server.stdout().splitlines()],
              "application": [fields(line)["ts"] for line in server.stderr().splitlines()]}
    for kind, values in stamps.items():
        assert values, kind
        for value in values:
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", value), (kind, value)
            moment = dt.datetime.fromisoformat(value)
            assert abs(moment.timestamp() - time.time()) < 120, (kind, value)
