"""Log lines: one logfmt line per event, one ISO timestamp format, no raw control character, no echoes.

Real gunicorn for the access and error logs (a job failing with terminal escapes in its error, a job that keeps
hitting max_instances); the scheduler in-process for a state store that fails under 200 jobs a second.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.support.runs import jobs_file
from tests.support.servers import Gunicorn, base_env, wait_until
from worker_service.logfmt import LogfmtFormatter
from worker_service.scheduler.jobs_file import parse_jobs
from worker_service.scheduler.service import SchedulerService
from worker_service.state import SqliteStateStore

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
kwargs = { seconds = 5 }
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
    gunicorn = Gunicorn(base_env(workdir / "state", WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="1",
                                 GUNICORN_GRACEFUL_TIMEOUT="5"), workdir).start()
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


def test_a_job_failure_is_one_line_with_its_traceback_only_the_first_time(server):
    lines = server.stderr().splitlines()
    failures = [line for line in lines if "job hostile failed" in line]
    assert len(failures) >= 3
    assert "exc=" in failures[0] and "Traceback" in failures[0]
    assert not [line for line in failures[1:] if "exc=" in line]
    # APScheduler's "Job ... raised an exception" ERROR with its traceback was a second line for every failure.
    assert not [line for line in lines if "raised an exception" in line or "level=ERROR" in line]


def test_a_max_instances_skip_is_one_line(server):
    lines = server.stderr().splitlines()
    assert len([line for line in lines if "job long skipped a run" in line]) >= 2
    assert not [line for line in lines if "maximum number of running instances" in line]


# -- a failing state store under many jobs -----------------------------------------------------------------


class FlakyStore:
    """A real store whose writes fail, as a full disk fails them, from the first submission after ``down`` is set.

    The first write refused is always a run's submission (as when a job comes due), then every write is refused
    (heartbeats included) until ``down`` is cleared.
    """

    WRITES = ("record_", "beat", "update_next_run", "forget_run", "publish_jobs")

    def __init__(self, store: SqliteStateStore) -> None:
        self._store = store
        self.down = threading.Event()
        self.tripped = False
        self.refused: list[str] = []

    def __getattr__(self, name: str):
        attribute = getattr(self._store, name)
        if not name.startswith(self.WRITES):
            return attribute

        def call(*args, **kwargs):
            if self.down.is_set() and (self.tripped or name == "record_submitted"):
                self.tripped = True
                self.refused.append(name)
                raise OSError(28, "No space left on device")
            self.tripped = False
            return attribute(*args, **kwargs)

        return call


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self, level: int = logging.INFO) -> list[str]:
        return [f"{r.levelname} {r.name} {r.getMessage()}" + (" +traceback" if r.exc_info or r.exc_text else "")
                for r in list(self.records) if r.levelno >= level]


@contextlib.contextmanager
def captured() -> Iterator[Captured]:
    handler = Captured()
    loggers = [logging.getLogger(name) for name in ("worker_service", "apscheduler")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:  # the levels configure_logging gives them at LOG_LEVEL=INFO
        logger.addHandler(handler)
        logger.setLevel(logging.INFO if logger.name == "worker_service" else logging.WARNING)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


def test_a_failing_store_under_200_jobs_is_one_line_per_change_of_state(tmp_path):
    # Every job due at the same second, as the 1,000 were: one pass of APScheduler submits them all.
    jobs = "".join(f'[jobs.j{n}]\nfunc = "tests.support.sample_jobs:noop"\ntrigger = "cron"\nsecond = "*"\n\n'
                   for n in range(200))
    store = FlakyStore(SqliteStateStore(str(tmp_path / "state.sqlite3")))
    service = SchedulerService(parse_jobs(jobs), store, "UTC", heartbeat_interval=0.3)
    with captured() as log:
        service.start()
        try:
            wait_until(lambda: sum(job.success_count for job in store.jobs()) >= 200, timeout=10, what="runs")
            for _ in range(2):  # fails (a submission first, then a heartbeat too), recovers; again
                store.down.set()
                wait_until(lambda: "beat" in store.refused, timeout=10, what="a submission and a heartbeat refused")
                assert service._store_down is not None
                store.down.clear()
                wait_until(lambda: service._store_down is None, timeout=10, what="the store recovered")
                store.refused.clear()
        finally:
            service.shutdown(wait=True)
    lines = log.lines()
    failing = [line for line in lines if "the state store is failing" in line]
    recovered = [line for line in lines if "the state store records again" in line]
    assert len(failing) == 2 and len(recovered) == 2, "\n".join(lines)
    assert not [line for line in lines if "+traceback" in line or "Error submitting job" in line], "\n".join(lines)
    # Nothing per job or per slot: the changes of state, and what each recovery says it forgot.
    per_job = [line for line in lines if re.search(r"\bj\d+\b", line)]
    assert not per_job, "\n".join(per_job[:10])
    assert len(lines) <= 8, "\n".join(lines)


def test_the_echoes_dropped_are_apschedulers_own_words():
    """The filter matches APScheduler's message templates verbatim: an upgrade that rewords one must fail here."""
    import ast
    import inspect

    import apscheduler.executors.base
    import apscheduler.schedulers.base

    from worker_service.scheduler import log_noise

    strings = {node.value for module in (apscheduler.executors.base, apscheduler.schedulers.base)
               for node in ast.walk(ast.parse(inspect.getsource(module)))
               if isinstance(node, ast.Constant) and isinstance(node.value, str)}  # adjacent literals joined
    for template in (*log_noise._ALWAYS_ECHOED, *log_noise._REPORTED_ONCE):
        assert template in strings, template
