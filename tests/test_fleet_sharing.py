"""A fleet that shares the work: runs claimed by any host, every-host runs, max_instances across hosts, lost runs.

Real gunicorn masters (two workers each) on one PostgreSQL schema, each through its own TcpProxy
(tests/support/fleet.py). Each job notes its start and end in a scratch table through its own host's proxy
(``sample_jobs:fleet_work``: job, slot, host, pid, run), unfenced, so the table shows what really ran where and when.
TTL 3 s: a host's row is renewed every second, and a host that stops renewing has its runs settled lost within
TTL + TTL/3 of its last renewal.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import signal
import time
from collections import Counter, defaultdict

import pytest

from tests.support.fleet import Fleet, check
from tests.support.pg import admin
from tests.support.pgbouncer import PgBouncer
from tests.support.pgbouncer import available as pgbouncer_available
from tests.support.sample_jobs import WORK_TABLE_DDL
from tests.support.servers import Gunicorn, base_env, wait_until

TTL = 3.0
DB_TIMEOUT = TTL / 4
LOST_WITHIN = TTL + TTL / 3 + 2.5  # the promise, plus a new sweep and a loaded 2-core machine
TICK = 1.0


def work_job(name: str, table: str, every: float, seconds: float, max_instances: int = 1, **options: object) -> str:
    extra = "".join(f"{key} = {_toml(value)}\n" for key, value in options.items())
    return (f'\n[jobs.{name}]\nfunc = "tests.support.sample_jobs:fleet_work"\ntrigger = "interval"\n'
            f"seconds = {every}\nmisfire_grace_time = 30\nmax_instances = {max_instances}\n{extra}"
            f'kwargs = {{ table = "{table}", seconds = {seconds} }}\n')


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else str(value)


@dataclasses.dataclass(frozen=True)
class Work:
    """One run of a work job as it noted itself."""

    job: str
    slot: float
    host: str
    pid: int
    run_id: int | None
    started: float
    ended: float | None


class SharedFleet(Fleet):
    """A fleet with the work table in its scratch schema."""

    def __init__(self, workdir, jobs_for, **options) -> None:
        self.workdir = workdir
        super().__init__(workdir, jobs="", **options)
        self.work_table = f"{self.tick_schema}.work"
        with admin(self.database_url) as db:
            db.execute(WORK_TABLE_DDL.format(table=f'"{self.tick_schema}".work'))
        jobs_file = workdir / "fleet-jobs.toml"
        jobs_file.write_text(jobs_file.read_text() + jobs_for(self.work_table))

    def work(self, job: str | None = None) -> list[Work]:
        with admin(self.database_url) as db:
            rows = db.execute(f'SELECT job, slot, host, pid, run_id, started, ended FROM "{self.tick_schema}".work'
                              " ORDER BY id").fetchall()
        return [Work(*row) for row in rows if job is None or row[0] == job]


def concurrency(runs: list[Work], now: float) -> int:
    """The most runs going at one moment."""
    events = sorted([(run.started, 1) for run in runs] + [(run.ended or now, -1) for run in runs],
                    key=lambda event: (event[0], event[1]))
    level = most = 0
    for _, step in events:
        level += step
        most = max(most, level)
    return most


def duplicates(runs: list[Work], per_host: bool = False) -> dict:
    seen = Counter((run.job, round(run.slot, 3), run.host if per_host else "") for run in runs)
    return {key: count for key, count in seen.items() if count > 1}


# -- sharing -------------------------------------------------------------------------------------------------------------
def test_three_hosts_share_the_runs_every_host_runs_its_own_and_max_instances_holds_across_hosts(tmp_path):
    def jobs(table: str) -> str:
        spread = "".join(work_job(f"spread_{n}", table, every=2, seconds=1.5) for n in range(4))
        # Every 2 s: a host looks for work every 0.5 s, and a slot planned while its last one waits is skipped.
        return (spread + work_job("every", table, every=2, seconds=0, run_on="every-host")
                + work_job("wide", table, every=1, seconds=2.5, max_instances=2))

    fleet = SharedFleet(tmp_path, jobs, ttl=TTL, timeout=DB_TIMEOUT, workers=2, tick=TICK,
                        JOB_EXECUTOR_THREADS="3")
    try:
        fleet.start()
        fleet.wait_for_leader(timeout=15)
        all_up = fleet.db_now()
        wait_until(lambda: len({run.host for run in fleet.work("every") if run.started > all_up}) == 3, timeout=15,
                   what="an every-host run on each of the three hosts")
        measured_from = fleet.db_now()
        wait_until(lambda: fleet.db_now() > measured_from + 10, timeout=20, interval=0.5, what="10 s of work")
        now = fleet.db_now()
        runs = fleet.work()
        shared = [run for run in runs if run.job != "every"]
        assert not duplicates(shared), f"slots run twice: {duplicates(shared)}"
        assert not check(fleet.ticks(), TICK)["duplicates"]
        by_host = Counter(run.host for run in shared if run.started > measured_from)
        assert set(by_host) == {"a", "b", "c"}, f"runs by host: {by_host}"  # every host took a share

        every = [run for run in fleet.work("every") if run.started > measured_from]
        assert not duplicates(every, per_host=True), f"an every-host slot ran twice on a host: {duplicates(every, True)}"
        slots: dict[float, set[str]] = defaultdict(set)
        for run in every:
            slots[round(run.slot, 3)].add(run.host)
        # Each host runs its own every-host runs before any other (nobody else can): a slot a busy host skipped is
        # counted as max_instances, but most slots ran on every host.
        for name in ("a", "b", "c"):
            share = sum(1 for hosts in slots.values() if name in hosts) / len(slots)
            assert share >= 0.7, f"host {name} ran {share:.0%} of the every-host slots"

        wide = fleet.work("wide")
        assert concurrency(wide, now) <= 2, "max_instances = 2 exceeded across the fleet"
        record = next(job for job in fleet.store.jobs() if job.id == "wide")
        assert record.max_instances_count > 0  # the third one was refused while two ran, wherever they ran
        assert len({run.host for run in wide}) >= 1
        hosts_seen = {run.host for job in ("spread_0", "spread_1", "spread_2", "spread_3")
                      for run in fleet.store.runs(job) if run.host}
        assert len(hosts_seen) >= 2, f"the history names the hosts that ran each run: {hosts_seen}"
        alive = [host for host in fleet.store.hosts() if host.alive]
        assert sorted(host.threads for host in alive) == [3, 3, 3]
    finally:
        fleet.close()


# -- a host lost mid-run -------------------------------------------------------------------------------------------------
def _running_on_a_follower(fleet: SharedFleet, job: str, busy: str) -> Work:
    """A run of ``job`` going on a host other than ``busy`` (the leader, whose one thread is held)."""
    def found() -> Work | None:
        going = [run for run in fleet.work(job) if run.ended is None and run.host != busy
                 and fleet.hosts[run.host].running]
        return going[-1] if going else None

    return wait_until(found, timeout=15, interval=0.1, what=f"a run of {job} on a follower")


@pytest.mark.parametrize("fault", ["SIGKILL", "SIGSTOP", "silent partition"])
def test_a_host_that_dies_or_is_cut_off_mid_run_has_its_runs_settled_lost_and_retry_lost_runs_them_once_more(
        tmp_path, fault):
    hog_at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)).isoformat()

    def jobs(table: str) -> str:
        return (work_job("retry", table, every=3, seconds=6, retry_lost=True)
                + work_job("plain", table, every=3, seconds=6)
                + f'\n[jobs.hog]\nfunc = "tests.support.sample_jobs:fleet_work"\ntrigger = "date"\n'
                  f'run_date = "{hog_at}"\nmisfire_grace_time = 30\n'
                  f'kwargs = {{ table = "{table}", seconds = 40 }}\n')

    fleet = SharedFleet(tmp_path, jobs, ttl=TTL, timeout=DB_TIMEOUT, workers=2, tick=TICK,
                        JOB_EXECUTOR_THREADS="1", GUNICORN_GRACEFUL_TIMEOUT="3")
    try:
        fleet.start(["a"])  # alone: its one thread takes the hog, so the two others run the work
        fleet.wait_for_leader(timeout=15)
        wait_until(lambda: fleet.work("hog"), timeout=10, what="the hog holding the leader's thread")
        for name in ("b", "c"):
            fleet.hosts[name].env["JOB_EXECUTOR_THREADS"] = "2"
        fleet.start(["b", "c"])
        victim_run = _running_on_a_follower(fleet, "retry", busy="a")
        victim = fleet.hosts[victim_run.host]
        plain_runs = [run for run in fleet.work("plain") if run.ended is None and run.host == victim.name]
        faulted = time.monotonic()
        if fault == "SIGKILL":
            victim.kill()
        elif fault == "SIGSTOP":
            victim.freeze()
        else:
            victim.proxy.freeze()

        lost = wait_until(lambda: [run for run in fleet.store.runs("retry") if run.outcome == "lost"], timeout=15,
                          interval=0.1, what="the run settled as lost")
        settled_after = time.monotonic() - faulted
        assert settled_after <= LOST_WITHIN, f"{fault}: lost after {settled_after:.1f} s"
        assert lost[0].host is not None and lost[0].error_type == "LeaderLost"
        retried = wait_until(lambda: [run for run in fleet.work("retry")
                                      if round(run.slot, 3) == round(victim_run.slot, 3) and run.host != victim.name],
                             timeout=10, interval=0.1, what="the lost run retried on another host")
        assert retried[0].host in {"b", "c"} - {victim.name}
        for run in plain_runs:  # no retry_lost: the slot is lost, not run again
            wait_until(lambda run=run: any(r.outcome == "lost" for r in fleet.store.runs("plain")), timeout=10,
                       what="the plain run settled as lost")
            assert [r.host for r in fleet.work("plain") if round(r.slot, 3) == round(run.slot, 3)] == [victim.name]
        if fault == "SIGSTOP":
            victim.thaw()
        elif fault == "silent partition":
            victim.proxy.restore()
        if fault != "SIGKILL":
            # Back: its run finishes there (it was only out of reach), but the slot was settled once and its end is
            # not counted again; a host back in reach claims again.
            back = fleet.db_now()
            wait_until(lambda: next(run for run in fleet.work("retry") if run.run_id == victim_run.run_id).ended,
                       timeout=15, what="the cut-off run to end where it ran")
            fleet.wait_for_ticks(1, timeout=20, host=victim, after=back)  # it claims again (a tick: any host may)
        for_slot = [run for run in fleet.work("retry") if round(run.slot, 3) == round(victim_run.slot, 3)]
        assert len(for_slot) == 2, f"the lost slot ran {len(for_slot)} times (once, then once retried)"
        assert len([run for run in fleet.store.runs("retry") if run.outcome == "lost"]) == 1
        shared = [run for run in fleet.work() if run.job != "retry" or
                  round(run.slot, 3) != round(victim_run.slot, 3)]
        assert not duplicates(shared), f"{fault}: slots run twice: {duplicates(shared)}"
        assert not check(fleet.ticks(), TICK)["duplicates"]
    finally:
        fleet.close()


# -- per-job handover ------------------------------------------------------------------------------------------------------
def _starts(path) -> list[tuple[int, float]]:
    return [(int(pid), float(at)) for kind, pid, at in (line.split() for line in path.read_text().splitlines())
            if kind == "start"] if path.exists() else []


def _ends(path) -> list[tuple[int, float]]:
    return [(int(pid), float(at)) for kind, pid, at in (line.split() for line in path.read_text().splitlines())
            if kind == "end"] if path.exists() else []


def longest_gap(starts: list[float], start: float, end: float) -> float:
    times = sorted([max((t for t in starts if t <= start), default=start)] + [t for t in starts if start < t <= end])
    return max((b - a for a, b in zip(times, times[1:], strict=False)), default=end - start)


HANDOVER_JOBS = """
[jobs.every_second]
func = "tests.support.sample_jobs:slow"
trigger = "interval"
seconds = 1
misfire_grace_time = 30
kwargs = {{ seconds = 0, path = "{quick}" }}

[jobs.long]
func = "tests.support.sample_jobs:slow"
trigger = "interval"
seconds = 4
misfire_grace_time = 30
{run_on}
kwargs = {{ seconds = 6, path = "{long}" }}
"""


def _assert_per_job_handover(quick, long, event_at: float, where: str) -> None:
    """The 1 s job went on through the event; the 6 s run in flight finished and the next began only after it."""
    in_flight = [start for start in _starts(long) if start[1] <= event_at][-1]
    wait_until(lambda: [start for start in _starts(long) if start[1] > in_flight[1]], timeout=30,
               what="the long job's next run after the one in flight")
    ended = [end for end in _ends(long) if end[0] == in_flight[0] and end[1] >= in_flight[1]]
    assert ended, f"{where}: the run in flight was cut off"
    later = [start for start in _starts(long) if start[1] > in_flight[1]]
    assert later and later[0][1] >= ended[0][1] - 0.05, f"{where}: the long job started again before its run ended"
    gap = longest_gap([at for _, at in _starts(quick)], event_at - 1.0, ended[0][1] + 1.0)
    assert gap <= 2.5, f"{where}: the 1 s job waited {gap:.2f} s"


def test_a_reload_on_one_host_holds_back_only_the_job_whose_run_is_still_going(tmp_path):
    quick, long = tmp_path / "quick.txt", tmp_path / "long.txt"
    jobs = tmp_path / "jobs.toml"
    jobs.write_text(HANDOVER_JOBS.format(quick=quick, long=long, run_on=""))
    (tmp_path / "state").mkdir()
    env = base_env(tmp_path / "state", WORKER_JOBS_FILE=str(jobs), WEB_CONCURRENCY="2",
                   SCHEDULER_HEARTBEAT_INTERVAL="1", GUNICORN_GRACEFUL_TIMEOUT="20")
    server = Gunicorn(env, tmp_path).start()
    try:
        wait_until(lambda: len(_starts(long)) >= 1 and time.time() - _starts(long)[-1][1] > 1.0
                   and len(_starts(long)) > len(_ends(long)), timeout=20, interval=0.05, what="a long run in flight")
        reloaded_at = time.time()
        server.signal(signal.SIGHUP)
        _assert_per_job_handover(quick, long, reloaded_at, "reload")
    finally:
        server.stop(timeout=30)


def test_a_graceful_stop_of_the_fleet_leader_holds_back_only_the_job_whose_run_is_still_going(tmp_path):
    quick, long = tmp_path / "quick.txt", tmp_path / "long.txt"
    fleet = Fleet(tmp_path, names=("a", "b"), ttl=TTL, timeout=DB_TIMEOUT, workers=2, tick=TICK,
                  jobs=HANDOVER_JOBS.format(quick=quick, long=long, run_on='run_on = "leader"'),
                  GUNICORN_GRACEFUL_TIMEOUT="20")
    try:
        fleet.start(["a"])
        leader = fleet.wait_for_leader(timeout=15)
        fleet.start(["b"])
        wait_until(lambda: len([h for h in fleet.store.hosts() if h.alive]) == 2, timeout=10, what="both hosts")
        wait_until(lambda: len(_starts(long)) >= 1 and time.time() - _starts(long)[-1][1] > 1.0
                   and len(_starts(long)) > len(_ends(long)), timeout=20, interval=0.05, what="a long run in flight")
        stopped_at = time.time()
        leader.server.process.send_signal(signal.SIGTERM)
        _assert_per_job_handover(quick, long, stopped_at, "graceful stop of the leader")
        assert leader.server.process.wait(timeout=30) == 0
        assert not check(fleet.ticks(), TICK)["duplicates"]
    finally:
        fleet.close()


# -- through a transaction pooler -------------------------------------------------------------------------------------------
@pytest.mark.skipif(not pgbouncer_available(), reason="pgbouncer (Debian package pgbouncer) is not installed")
def test_hosts_claim_through_pgbouncer_in_transaction_mode_and_run_each_slot_once(tmp_path):
    with PgBouncer(tmp_path / "bouncer", pool_mode="transaction", pool_size=10) as bouncer:
        def jobs(table: str) -> str:
            return "".join(work_job(f"spread_{n}", table, every=1, seconds=0.8) for n in range(3))

        fleet = SharedFleet(tmp_path, jobs, names=("a", "b"), ttl=TTL, timeout=DB_TIMEOUT, workers=2, tick=TICK,
                            database_url=bouncer.url(), JOB_EXECUTOR_THREADS="2")
        try:
            fleet.start()
            fleet.wait_for_leader(timeout=15)
            wait_until(lambda: {run.host for run in fleet.work()} == {"a", "b"}, timeout=20,
                       what="runs on both hosts")
            since = fleet.db_now()
            wait_until(lambda: fleet.db_now() > since + 5, timeout=10, interval=0.5, what="5 s of work")
            runs = fleet.work()
            assert not duplicates(runs), f"slots run twice: {duplicates(runs)}"
            assert not check(fleet.ticks(), TICK)["duplicates"]
            assert len([run for run in runs if run.started > since]) >= 8
        finally:
            fleet.close()


# -- a job that kills the workers of a host that does not lead ------------------------------------------------------------
def test_a_job_that_kills_its_worker_on_a_host_that_does_not_lead_is_held_back_then_quarantined(tmp_path):
    hog_at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)).isoformat()
    pids = tmp_path / "poison.txt"

    def jobs(table: str) -> str:
        return (f'\n[jobs.poison]\nfunc = "tests.support.sample_jobs:exit_process"\ntrigger = "interval"\n'
                f'seconds = 1\nmisfire_grace_time = 30\nkwargs = {{ path = "{pids}" }}\n'
                f'\n[jobs.hog]\nfunc = "tests.support.sample_jobs:fleet_work"\ntrigger = "date"\n'
                f'run_date = "{hog_at}"\nmisfire_grace_time = 30\n'
                f'kwargs = {{ table = "{table}", seconds = 40 }}\n')

    fleet = SharedFleet(tmp_path, jobs, names=("a", "b"), ttl=TTL, timeout=DB_TIMEOUT, workers=2, tick=TICK,
                        JOB_EXECUTOR_THREADS="1", JOB_CRASH_LIMIT="2", GUNICORN_GRACEFUL_TIMEOUT="3")
    try:
        fleet.start(["a"])  # alone: its one thread takes the hog, so host b runs the poison
        leader = fleet.wait_for_leader(timeout=15)
        wait_until(lambda: fleet.work("hog"), timeout=10, what="the hog holding the leader's thread")
        leader_pids = leader.pids()
        fleet.start(["b"])
        wait_until(lambda: "poison" in fleet.store.quarantined_jobs(), timeout=30, interval=0.2,
                   what="the poison job quarantined")
        outcomes = [run.outcome for run in fleet.store.runs("poison")]
        assert outcomes.count("crashed") >= 2 and "lost" not in outcomes, outcomes
        assert fleet.leader() is leader and leader_pids <= leader.pids()  # the leader's workers never died
        crashes = len(pids.read_text().splitlines())
        settled_runs = len(fleet.store.runs("poison"))
        quarantined_at = fleet.db_now()
        fleet.wait_for_ticks(3, timeout=10, after=quarantined_at)  # three more slots of the 1 s tick
        assert len(pids.read_text().splitlines()) == crashes, "a quarantined job ran again"
        assert len(fleet.store.runs("poison")) == settled_runs
    finally:
        fleet.close()


def test_the_last_host_of_a_fleet_releases_the_lease_at_its_stop_without_waiting_for_a_taker(tmp_path):
    fleet = Fleet(tmp_path, names=("a",), ttl=TTL, timeout=DB_TIMEOUT, workers=2, tick=TICK)
    try:
        fleet.start()
        only = fleet.wait_for_leader(timeout=15)
        wait_until(lambda: [h for h in fleet.store.hosts() if h.alive], timeout=10, what="its host row")
        fleet.wait_for_ticks(1, timeout=10)  # its scheduler runs (not only holds the lease)
        leading = fleet.lease()
        assert only.stop() == 0
        assert "no other host of the fleet is alive" in only.server.stderr()
        assert "no other host took the scheduler over" not in only.server.stderr()
        after = fleet.lease()
        # Given up at once, not left to run out (a standby worker of the host may have taken it during the stop).
        assert after.released or after.epoch > leading.epoch
    finally:
        fleet.close()
