"""What the fleet benchmarks (bench/fleet_*.py) share: a fleet of local hosts running jobs that note each run.

Each host is a gunicorn master of tests/support/fleet.py (own state directory,
own TCP proxy to PostgreSQL). The jobs are ``tests.support.sample_jobs:record_run``:
each run inserts a row (job, slot, host, pid, the database's clock) into a
``runs`` table of a scratch schema of its own, straight to PostgreSQL, and notes
its end after sleeping; nothing is fenced, so whatever ran a run shows, twice if
a slot ran twice. The fleet's own tick job is left out (the jobs file is the
benchmark's alone).

``run_on``: the jobs file gets the key only when the service's loader accepts
it (the code under test); a build that predates it runs every job on the leader,
which is what ``run_on = "leader"`` asks of one that has it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from tests.support.fleet import Fleet, Host  # noqa: E402
from tests.support.pg import DATABASE_URL, admin, drop_schema, new_schema_name  # noqa: E402

RECORD = "tests.support.sample_jobs:record_run"
NOOP = "tests.support.sample_jobs:noop"
MODES = ("any", "leader")

_RUNS_DDL = """
CREATE SCHEMA "{t}";
CREATE TABLE "{t}".runs (
    id bigserial PRIMARY KEY, job text NOT NULL, slot float8 NOT NULL, host text NOT NULL, pid int NOT NULL,
    wall float8 NOT NULL, started float8 NOT NULL DEFAULT extract(epoch FROM clock_timestamp()), ended float8,
    tracked boolean NOT NULL
);
"""


@dataclasses.dataclass(frozen=True)
class Run:
    """One run as its job noted it (times are epoch seconds; ``started``/``ended`` by the database's clock)."""

    id: int
    job: str
    slot: float
    host: str
    pid: int
    wall: float
    started: float
    ended: float | None
    tracked: bool

    @property
    def key(self) -> tuple[str, float]:
        return self.job, round(self.slot, 3)

    @property
    def late(self) -> float:
        return self.started - self.slot


def run_on_accepted() -> bool:
    """Whether the jobs-file loader of the code under test takes ``run_on`` (issue 21)."""
    from worker_service.scheduler.jobs_file import JobsFileError, parse_jobs

    text = '[jobs.x]\nfunc = "tests.support.sample_jobs:noop"\ntrigger = "interval"\nseconds = 1\nrun_on = "leader"\n'
    try:
        parse_jobs(text)
    except JobsFileError:
        return False
    return True


def run_on_key(mode: str | None) -> str | None:
    """The ``run_on`` value to write for ``mode``, or ``None`` to leave the key out (a build without it)."""
    if mode is None:
        return None
    if mode not in ("any", "leader", "every-host"):
        raise ValueError(mode)
    if run_on_accepted():
        return mode
    if mode == "leader":
        return None  # the old loader refuses the key, and runs every job on the leader anyway
    raise Unsupported(f'run_on = "{mode}" is not accepted by this build (worker_service/scheduler/jobs_file.py)')


class Unsupported(Exception):
    """The scenario needs a feature the code under test does not have."""


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + " }"
    raise TypeError(type(value))


def job_toml(job_id: str, func: str, seconds: float, run_on: str | None = None, **keys: Any) -> str:
    """One ``[jobs.<id>]`` table on an interval trigger."""
    lines = [f"[jobs.{job_id}]", f"func = {toml_value(func)}", 'trigger = "interval"', f"seconds = {seconds!r}"]
    if run_on is not None:
        lines.append(f"run_on = {toml_value(run_on)}")
    lines += [f"{key} = {toml_value(value)}" for key, value in keys.items()]
    return "\n".join(lines) + "\n"


class RunsTable:
    """The ``runs`` table the jobs write to, in a scratch schema of its own (``name`` is ``schema.runs``)."""

    def __init__(self, database_url: str = DATABASE_URL) -> None:
        self.database_url = database_url
        self.schema = new_schema_name()
        with admin(database_url) as db:
            db.execute(_RUNS_DDL.format(t=self.schema))
        self.name = f"{self.schema}.runs"

    def read(self) -> list[Run]:
        with admin(self.database_url) as db:
            found = db.execute(f'SELECT id, job, slot, host, pid, wall, started, ended, tracked FROM "{self.schema}"'
                               ".runs ORDER BY id").fetchall()
        return [Run(*row) for row in found]

    def drop(self) -> None:
        drop_schema(self.schema, self.database_url)


class BenchFleet:
    """A :class:`Fleet` (not started) running only the given jobs file, plus the ``runs`` table they write to.

    ``jobs`` is a callable given the runs table (``schema.runs``) and the URL the
    jobs write through, returning the jobs file's text.
    """

    def __init__(self, workdir: Path, names: Iterable[str], jobs: Any, ttl: float = 10.0, timeout: float = 2.0,
                 workers: int = 2, database_url: str = DATABASE_URL, **env: str) -> None:
        self.database_url = database_url
        self.runs_table = RunsTable(database_url)
        self.table = self.runs_table.name
        self.down: set[str] = set()
        workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.fleet = Fleet(workdir, names=tuple(names), ttl=ttl, timeout=timeout, workers=workers,
                               database_url=database_url, **env)
        except BaseException:
            self.runs_table.drop()
            raise
        # The fleet's jobs file starts with its tick job: the benchmark's jobs replace the whole file.
        (workdir / "fleet-jobs.toml").write_text(jobs(self.table, database_url))

    @property
    def hosts(self) -> dict[str, Host]:
        return self.fleet.hosts

    def start(self) -> BenchFleet:
        self.fleet.start()
        return self

    def close(self) -> None:
        try:
            self.fleet.close()
        finally:
            self.runs_table.drop()

    def check_alive(self) -> None:
        """Raise if a host not in ``self.down`` (the ones a benchmark stopped or killed) has exited."""
        for host in self.hosts.values():
            if host.name not in self.down and host.server is not None and host.server.process.poll() is not None:
                raise RuntimeError(f"host {host.name} exited ({host.server.process.returncode}): "
                                   f"{host.server.stderr()[-1500:]}")

    def runs(self) -> list[Run]:
        return self.runs_table.read()

    def db_now(self) -> float:
        return self.fleet.db_now()

    def leader(self) -> Host | None:
        return self.fleet.leader()

    def wait_for_runs(self, count: int, timeout: float, after: float = 0.0) -> list[Run]:
        deadline = time.monotonic() + timeout
        while True:
            found = [run for run in self.runs() if run.started > after]
            if len(found) >= count:
                return found
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} runs after {after:.1f}: only {len(found)} in {timeout:g} s; "
                                   f"logs in {next(iter(self.hosts.values())).dir.parent}")
            time.sleep(0.2)


@contextlib.contextmanager
def bench_fleet(workdir: Path, names: Iterable[str], jobs: Any, **options: Any) -> Iterator[BenchFleet]:
    made = BenchFleet(workdir, names, jobs, **options)
    try:
        yield made.start()
    finally:
        made.close()


# -- a database of its own (clean pg_stat_database figures) ------------------------------------------------------------
DB_PREFIX = "wsbench_"


def sweep_abandoned_databases() -> None:
    with admin() as db:
        names = [name for (name,) in db.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                                  (DB_PREFIX.replace("_", r"\_") + "%",)).fetchall()]
    for name in names:
        pid = name[len(DB_PREFIX):].split("_", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            with admin() as db:
                db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def own_database() -> Iterator[str]:
    """A new database on the test server (its URL), dropped afterwards with every connection to it."""
    sweep_abandoned_databases()
    name = f"{DB_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with admin() as db:
        db.execute(f'CREATE DATABASE "{name}"')
    base = DATABASE_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin() as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- figures -----------------------------------------------------------------------------------------------------------
def twice(runs: Iterable[Run]) -> dict[tuple[str, float], list[Run]]:
    """Slots (job, slot) run more than once, by tracked runs."""
    seen: dict[tuple[str, float], list[Run]] = {}
    for run in runs:
        if run.tracked:
            seen.setdefault(run.key, []).append(run)
    return {key: found for key, found in seen.items() if len(found) > 1}


def in_window(runs: Iterable[Run], start: float, end: float) -> list[Run]:
    """Runs of the slots in [start, end) (slot time)."""
    return [run for run in runs if start <= run.slot < end]


def share(counter: Counter, names: Iterable[str]) -> str:
    total = sum(counter.values()) or 1
    return ", ".join(f"{name} {100 * counter.get(name, 0) / total:.0f} %" for name in names)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else float("nan")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(headers: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(out)


def main_commit() -> str:
    """The commit under test (and whether the tree differs from it)."""
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=10", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (+ uncommitted changes)" if dirty else "")


def stop_on_signals() -> None:
    """SIGTERM and SIGINT raise KeyboardInterrupt, so every ``finally`` stops its processes and drops its schemas."""

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
