"""Several hosts on one machine: gunicorn masters sharing one PostgreSQL schema, each through its own TcpProxy.

A "host" is a gunicorn master with its own state directory (its own host lock)
and its own TcpProxy to PostgreSQL, so a test can cut one host off (refused or
silent) without touching the others. Every host runs the same jobs file; the
tick job (``tests.support.sample_jobs:fleet_tick``) writes each run, fenced by
its lease epoch, into a table of the fleet's own scratch schema, where a
trigger notes the lease's epoch as the database saw it at the insert: a record
of a stale epoch would show there even if the job's own fence failed.

Used by tests/test_fleet.py and bench/failover.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import urllib.parse
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil

from tests.support.pg import DATABASE_URL, admin, drop_schema, new_schema_name, sweep_abandoned_schemas
from tests.support.servers import Gunicorn, base_env, wait_until
from tests.support.tcp_proxy import TcpProxy
from worker_service.state.pg_store import PostgresStateStore
from worker_service.state.records import LeadershipChange, LeaseRecord

TICK_TABLE = "ticks"
_TICKS_DDL = """
CREATE SCHEMA "{t}";
CREATE TABLE "{t}".ticks (
    id bigserial PRIMARY KEY, slot float8 NOT NULL, wall float8 NOT NULL, host text NOT NULL, pid int NOT NULL,
    epoch bigint NOT NULL, db_time float8 NOT NULL DEFAULT extract(epoch FROM clock_timestamp()), lease_epoch bigint
);
CREATE FUNCTION "{t}".note_lease() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.lease_epoch := (SELECT epoch FROM "{s}".lease WHERE name = 'scheduler');
    RETURN NEW;
END $$;
CREATE TRIGGER note_lease BEFORE INSERT ON "{t}".ticks FOR EACH ROW EXECUTE FUNCTION "{t}".note_lease();
"""

TICK_JOB = """
[jobs.tick]
name = "Fleet tick"
func = "tests.support.sample_jobs:fleet_tick"
trigger = "interval"
seconds = {interval}
misfire_grace_time = 30
kwargs = {{ table = "{table}" }}
"""

# The built-in jobs, on intervals a test can see (their functions, the shipped defaults otherwise).
BUILTIN_JOBS = """
[jobs.sync_accounts]
name = "Sincronización de cuentas"
func = "worker_service.jobs.accounts:sync_accounts"
trigger = "interval"
seconds = {sync}
critical = true

[jobs.cleanup_temporary_files]
name = "Limpieza de archivos temporales"
func = "worker_service.jobs.cleanup:cleanup_temporary_files"
trigger = "interval"
hours = 1

[jobs.reconcile_database]
name = "Reconciliación de la base de datos"
func = "worker_service.jobs.accounts:reconcile_database"
trigger = "cron"
hour = "3"
minute = "0"
critical = true
"""


@dataclasses.dataclass(frozen=True)
class Tick:
    """One run of the tick job as PostgreSQL recorded it."""

    slot: float
    wall: float
    host: str
    pid: int
    epoch: int
    db_time: float
    lease_epoch: int | None

    @property
    def stale(self) -> bool:
        """Written while another epoch held the lease (the trigger's view at the insert)."""
        return self.lease_epoch != self.epoch


class Host:
    """One simulated host: a state directory, a TcpProxy to PostgreSQL, and a gunicorn master on them."""

    def __init__(self, name: str, workdir: Path, env: dict[str, str], args: list[str],
                 database_url: str = DATABASE_URL) -> None:
        self.name = name
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "state").mkdir(exist_ok=True)
        target = urllib.parse.urlsplit(database_url)
        self.proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 5432)
        url = f"postgresql://postgres@127.0.0.1:{self.proxy.port}{target.path}"
        # Each simulated host is a machine of its own (host_identity: its processes' pids mean nothing elsewhere).
        self.env = base_env(self.dir / "state", STATE_DATABASE_URL=url, FLEET_HOST=name,
                            WORKER_SERVICE_MACHINE=f"test-{name}", **env)
        self.args = args
        self.server: Gunicorn | None = None

    def start(self, wait: bool = True) -> Host:
        self.server = Gunicorn(self.env, self.dir, args=self.args).start(wait=wait)
        return self

    @property
    def running(self) -> bool:
        return self.server is not None and self.server.process.poll() is None

    def processes(self) -> list[psutil.Process]:
        """The master and every worker."""
        if not self.running:
            return []
        master = self.server.master
        return [master, *master.children(recursive=True)]

    def pids(self) -> set[int]:
        return {process.pid for process in self.processes()}

    def signal_all(self, signum: int) -> None:
        """Send ``signum`` to the master and every worker at once (a whole host dying, freezing, waking)."""
        for process in self.processes():
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL the whole gunicorn at once: no hook runs, nothing is released."""
        self.signal_all(signal.SIGKILL)
        if self.server is not None:
            self.server.process.wait(timeout=10)

    def freeze(self) -> None:
        self.signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self.signal_all(signal.SIGCONT)

    def reload(self) -> None:
        self.server.signal(signal.SIGHUP)

    def stop(self, timeout: float = 40) -> int | None:
        """A graceful stop (SIGTERM to the master); the return code."""
        if self.server is None:
            return None
        with contextlib.suppress(psutil.NoSuchProcess):
            if self.running:
                self.thaw()  # a frozen host cannot stop
        return self.server.stop(timeout=timeout)

    def close(self) -> None:
        self.stop()
        self.proxy.close()


class Fleet:
    """Hosts sharing one state schema; the tick table; reads of the lease and the ticks straight from PostgreSQL."""

    def __init__(self, workdir: Path, names: Iterable[str] = ("a", "b", "c"), ttl: float = 3.0, timeout: float = 0.5,
                 workers: int = 2, tick: float = 1.0, jobs: str = "", args: list[str] | None = None,
                 database_url: str = DATABASE_URL, **env: str) -> None:
        if database_url == DATABASE_URL:
            sweep_abandoned_schemas()
        self.database_url = database_url
        self.schema, self.tick_schema = new_schema_name(), new_schema_name()
        self.ttl, self.tick = ttl, tick
        with admin(self.database_url) as db:
            db.execute(_TICKS_DDL.format(t=self.tick_schema, s=self.schema))
        jobs_file = workdir / "fleet-jobs.toml"
        jobs_file.write_text(TICK_JOB.format(interval=tick, table=f"{self.tick_schema}.{TICK_TABLE}") + jobs)
        # A run in flight when its leader's host fails counts as a crash, and a crash holds the job back for
        # JOB_CRASH_BACKOFF: 1 s here, so a fault costs the 1 s tick a slot or so, not ten.
        common = {
            "JOB_CRASH_BACKOFF": "1", "JOB_CRASH_LIMIT": "100", "STATE_DATABASE_SCHEMA": self.schema, "SCHEDULER_LEASE_TTL": str(ttl), "STATE_DATABASE_TIMEOUT": str(timeout),
            "WORKER_JOBS_FILE": str(jobs_file), "WEB_CONCURRENCY": str(workers), "SCHEDULER_HEARTBEAT_INTERVAL": "1",
            "HEALTH_CACHE_TTL": "0", **env,
        }
        self.hosts = {name: Host(name, workdir, common, args or [], database_url) for name in names}
        self.store = PostgresStateStore(database_url, self.schema, 50, 2.0)

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def start(self, names: Iterable[str] | None = None) -> Fleet:
        """Start the hosts at the same instant (each master forks its workers), then wait until each answers."""
        chosen = [self.hosts[name] for name in (names or self.hosts)]
        for host in chosen:
            host.start(wait=False)
        for host in chosen:
            wait_until(host.server._live, timeout=30, what=f"host {host.name}")
        return self

    # -- what the database says ---------------------------------------------------------------------------------------
    def lease(self) -> LeaseRecord | None:
        return self.store.lease()

    def changes(self, limit: int = 200) -> list[LeadershipChange]:
        """Changes of leader, oldest first."""
        return list(reversed(self.store.leadership_changes(limit)))

    def leader(self) -> Host | None:
        """The host whose process holds a live lease now, if any."""
        lease = self.lease()
        if lease is None or not lease.live:
            return None
        return next((host for host in self.hosts.values() if lease.holder_pid in host.pids()), None)

    def wait_for_leader(self, timeout: float, other_than: Host | None = None) -> Host:
        """The leading host once one leads (and is not ``other_than``)."""
        return wait_until(lambda: (leader := self.leader()) is not None and leader is not other_than and leader,
                          timeout=timeout, interval=0.05, what="a leading host")

    def ticks(self) -> list[Tick]:
        """Every recorded tick, in the order the database wrote them."""
        with admin(self.database_url) as db:
            found = db.execute(f'SELECT slot, wall, host, pid, epoch, db_time, lease_epoch FROM "{self.tick_schema}".'
                               f'{TICK_TABLE} ORDER BY id').fetchall()
        return [Tick(*row) for row in found]

    def wait_for_ticks(self, count: int, timeout: float, host: Host | None = None,
                       after: float | None = None) -> list[Tick]:
        """Wait until ``count`` ticks (of ``host``, written after database time ``after``) are recorded."""

        def enough() -> list[Tick]:
            found = [tick for tick in self.ticks() if (host is None or tick.host == host.name)
                     and (after is None or tick.db_time > after)]
            return found if len(found) >= count else []

        return wait_until(enough, timeout=timeout, interval=0.1, what=f"{count} ticks")

    def db_now(self) -> float:
        with admin(self.database_url) as db:
            return float(db.execute("SELECT extract(epoch FROM clock_timestamp())").fetchone()[0])

    def close(self) -> None:
        """Stop every host at once (SIGTERM to each master, then wait), close the proxies, drop the schemas."""
        running = [host for host in self.hosts.values() if host.running]
        for host in running:
            with contextlib.suppress(psutil.NoSuchProcess):
                host.thaw()
                host.server.process.send_signal(signal.SIGTERM)
        for host in running:
            try:
                host.server.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                host.signal_all(signal.SIGKILL)
                host.server.process.wait(timeout=10)
        for host in self.hosts.values():
            host.proxy.close()
        self.store.close()
        for name in (self.schema, self.tick_schema):
            drop_schema(name, self.database_url)


def skewed_fleet(workdir: Path, offsets: dict[str, float], **options: Any) -> Fleet:
    """A fleet (not started) of the hosts named in ``offsets``, each wall clock shifted by its offset in seconds.

    Through tests/support/clock_offset: the monotonic clock is left alone, as on
    a real host. Rewriting ``workdir / f"offset-{name}"`` moves a running host's clock.
    """
    from tests.support.clock_offset import HOOK_DIR, OFFSET_FILE_VARIABLE

    python_path = os.pathsep.join(p for p in (str(HOOK_DIR), os.environ.get("PYTHONPATH", "")) if p)
    made = Fleet(workdir, names=offsets, PYTHONPATH=python_path, **options)
    for name, offset in offsets.items():
        path = workdir / f"offset-{name}"
        path.write_text(str(offset))
        made.hosts[name].env[OFFSET_FILE_VARIABLE] = str(path)
    return made


@contextlib.contextmanager
def fleet(workdir: Path, **options: Any) -> Iterator[Fleet]:
    """A started fleet, closed (hosts stopped, proxies closed, schemas dropped) afterwards."""
    made = Fleet(workdir, **options)
    try:
        yield made.start()
    finally:
        made.close()


# -- what the ticks say -------------------------------------------------------------------------------------------------
def duplicate_slots(ticks: Iterable[Tick]) -> dict[float, list[Tick]]:
    """Slots run more than once (by any hosts): ``{slot: [ticks]}``."""
    by_slot: dict[float, list[Tick]] = {}
    for tick in ticks:
        by_slot.setdefault(round(tick.slot, 3), []).append(tick)
    return {slot: found for slot, found in by_slot.items() if len(found) > 1}


def missed_slots(ticks: list[Tick], interval: float) -> list[float]:
    """Slots of the interval grid from the first tick's slot to the last one's that never ran."""
    if not ticks:
        return []
    first = min(tick.slot for tick in ticks)
    steps = [(tick.slot - first) / interval for tick in ticks]
    ran = {round(step) for step in steps if abs(step - round(step)) < 0.01}
    return [first + k * interval for k in range(round(max(steps)) + 1) if k not in ran]


def overlaps(ticks: list[Tick]) -> list[tuple[Tick, Tick]]:
    """Pairs where a tick of an older epoch was written after one of a newer epoch (two leaders at once)."""
    found, newest = [], None
    for tick in sorted(ticks, key=lambda t: t.db_time):
        if newest is not None and tick.epoch < newest.epoch:
            found.append((newest, tick))
        if newest is None or tick.epoch > newest.epoch:
            newest = tick
    return found


def fault_gap(ticks: list[Tick], start: float, end: float) -> float:
    """The longest time between consecutive ticks from the last one before ``start`` to ``end`` (database clock)."""
    before = [tick.db_time for tick in ticks if tick.db_time <= start]
    inside = [tick for tick in ticks if start < tick.db_time <= end]
    times = ([max(before)] if before else []) + [tick.db_time for tick in inside]
    return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)


def gaps(ticks: list[Tick]) -> list[float]:
    """Seconds between consecutive ticks, by the database's clock."""
    times = sorted(tick.db_time for tick in ticks)
    return [b - a for a, b in zip(times, times[1:], strict=False)]


def slot_lateness(ticks: list[Tick]) -> list[float]:
    """How late each tick ran after its slot, by the writing host's own clock."""
    return [tick.wall - tick.slot for tick in ticks]


def check(ticks: list[Tick], interval: float) -> dict[str, Any]:
    """The fleet's record in numbers: slots checked, duplicates, stale-epoch records, overlaps, missed slots."""
    return {
        "slots": len({round(tick.slot, 3) for tick in ticks}),
        "duplicates": duplicate_slots(ticks),
        "stale": [tick for tick in ticks if tick.stale],
        "overlaps": overlaps(ticks),
        "missed": missed_slots(ticks, interval),
    }
