"""Exactly one scheduler under real gunicorn, through everything gunicorn does to its workers."""

from __future__ import annotations

import calendar
import os
import re
import signal
import time

import psutil
import pytest

from tests.support import pg
from tests.support.pg import schema  # noqa: F401 - the fixture
from tests.support.runs import duplicate_slots, jobs_file, pid_job, read_runs, read_scheduled
from tests.support.servers import wait_until
from worker_service.state import PostgresStateStore, SqliteStateStore
from worker_service.state.setup import STATE_FILE

FAST_BEAT = {"SCHEDULER_HEARTBEAT_INTERVAL": "1", "HEALTH_CACHE_TTL": "0"}


@pytest.fixture
def ticking(tmp_path, gunicorn, state_dir):
    """gunicorn with a job that appends its PID every second; returns (server, runs file, store)."""

    def start(workers: int = 4, args: list[str] | None = None, **env: str):
        runs = tmp_path / "runs.txt"
        path = jobs_file(tmp_path / "jobs.toml", pid_job(runs))
        server = gunicorn(args=args, WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY=str(workers), **FAST_BEAT, **env)
        wait_until(lambda: len(read_runs(runs)) >= 2, timeout=10, what="the first runs")
        return server, runs, SqliteStateStore(str(state_dir / STATE_FILE))

    return start


def leader_of(runs_file) -> int:
    return read_runs(runs_file)[-1][0]


def successes(store) -> int:
    return store.jobs()[0].success_count


def assert_no_duplicates(runs_file, interval=1.0):
    """No schedule slot ran twice, by the slot each run was scheduled for (a late run keeps its own slot)."""
    runs = read_scheduled(runs_file)
    assert len(runs) >= 2
    assert not duplicate_slots(runs, interval), f"slots run twice or shifted: {duplicate_slots(runs, interval)}"


def assert_single_handover(runs, old_pid):
    pids = [pid for pid, _ in runs]
    first_new = next(i for i, pid in enumerate(pids) if pid != old_pid)
    assert old_pid not in pids[first_new:], "the old leader ran again after the handover"


def test_runs_match_elapsed_seconds_and_come_from_exactly_one_worker(ticking):
    server, runs_file, _ = ticking()
    start_count, started = len(read_runs(runs_file)), time.monotonic()
    wait_until(lambda: len(read_runs(runs_file)) >= start_count + 4, timeout=8, what="4 more runs")
    elapsed = time.monotonic() - started
    runs = read_runs(runs_file)
    assert abs((len(runs) - start_count) - elapsed) <= 1.5
    assert len({pid for pid, _ in runs}) == 1
    assert runs[0][0] in server.worker_pids()
    assert_no_duplicates(runs_file)
    for _ in range(8):  # every worker answers for the scheduler
        assert server.get("/health", headers={"Connection": "close"})[2]["components"]["scheduler"] == "available"


def test_sigkill_of_the_leader_hands_over_within_about_an_interval_without_duplicates(ticking):
    # The kill may land while a tick runs: that run died with its worker, a crash, and the job is held back for
    # JOB_CRASH_BACKOFF (10 s by default, as documented) before the new leader runs it. The handover is what is
    # tested here, so the hold is short.
    server, runs_file, store = ticking(JOB_CRASH_BACKOFF="0.5")
    old = leader_of(runs_file)
    before = successes(store)
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: leader_of(runs_file) != old, timeout=10, what="a new leader")
    takeover = time.monotonic() - killed
    assert takeover < 3.0, f"takeover took {takeover:.2f} s"
    wait_until(lambda: len([r for r in read_runs(runs_file) if r[0] != old]) >= 3, timeout=8, what="3 runs")
    runs = read_runs(runs_file)
    assert_single_handover(runs, old)
    assert_no_duplicates(runs_file)
    # The stats survived the change of leader (a run is in the file when it starts, counted when it ends).
    wait_until(lambda: successes(store) >= before + 3, timeout=3, what="the new leader's runs counted")


def test_sighup_reload_keeps_the_jobs_running(ticking):
    server, runs_file, store = ticking(workers=4)
    old_workers = set(server.worker_pids())
    old_leader = leader_of(runs_file)
    before = successes(store)
    server.signal(signal.SIGHUP)
    wait_until(lambda: not old_workers & set(server.worker_pids()) and len(server.worker_pids()) == 4,
               timeout=20, what="the old workers to be replaced")
    reloaded = time.monotonic()
    wait_until(lambda: leader_of(runs_file) != old_leader, timeout=10, what="a leader among the new workers")
    wait_until(lambda: read_runs(runs_file)[-1][1] > time.time() - 1.5 and len(read_runs(runs_file)) > 0,
               timeout=5, what="fresh runs")
    assert time.monotonic() - reloaded < 10
    runs = read_runs(runs_file)
    assert leader_of(runs_file) in server.worker_pids()
    assert_single_handover(runs, old_leader)
    assert_no_duplicates(runs_file)
    assert successes(store) > before
    # The old leader kept scheduling until a new worker was ready: no slot was folded into the next (before the
    # handover wait, one was: slots 2 s apart). By the slots the runs were scheduled for, not the gaps between run
    # times: while four workers boot on two cores a run may come late, and the next on time.
    scheduled = read_scheduled(runs_file)
    slots = sorted(slot for _, _, slot in scheduled)
    assert max(b - a for a, b in zip(slots, slots[1:], strict=False)) < 1.5, "a reload folded a slot into the next"
    assert max(at - slot for _, at, slot in scheduled) < 2.0, "a reload postponed a run"
    assert "state store is failing" not in server.stderr()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_slots_no_process_ran_during_a_freeze_are_counted_as_missed(request, schema, ticking, backend):  # noqa: F811
    """A frozen leader's slots are folded into one run when it wakes (coalesce): each one is counted as missed."""
    if backend == "sqlite":
        server, runs_file, store = ticking(workers=2)
    else:  # fleet mode with one host: the same through the PostgreSQL store and its lease
        server, runs_file, _ = ticking(workers=2, STATE_DATABASE_URL=pg.DATABASE_URL, STATE_DATABASE_SCHEMA=schema)
        store = PostgresStateStore(pg.DATABASE_URL, schema)
        request.addfinalizer(store.close)
    leader = psutil.Process(leader_of(runs_file))
    leader.suspend()
    try:  # frozen until its last heartbeat is 4.5 s old: 2 or more slots pass unrun
        wait_until(lambda: time.time() - store.scheduler().heartbeat_at > 4.5, timeout=15,
                   what="the frozen leader's heartbeat to age")
        assert server.get("/health/scheduler")[0] == 503  # every worker sees no scheduler
        resumed = time.time()
    finally:
        leader.resume()
    wait_until(lambda: read_scheduled(runs_file)[-1][2] > resumed + 1, timeout=10, what="runs after the freeze")
    slots = sorted(slot for _, _, slot in read_scheduled(runs_file))
    before, after = max(zip(slots, slots[1:], strict=False), key=lambda pair: pair[1] - pair[0])
    skipped = [before + n for n in range(1, round(after - before))]  # the freeze's slots: no run has them
    assert len(skipped) >= 2, slots
    wait_until(lambda: store.jobs()[0].missed_count >= len(skipped), timeout=5, what="the skipped slots counted")

    # Each skipped slot is a missed run in the history (a loaded machine may fold another slot later: not exact).
    missed = {round(run.at, 3) for run in store.runs("tick", limit=1000) if run.outcome == "missed"}
    assert {round(slot, 3) for slot in skipped} <= missed, (skipped, missed)
    counted = re.search(r'^worker_service_job_runs_total\{job="tick",outcome="missed"\} ([\d.]+)$',
                        server.get("/metrics")[2], re.M)
    assert counted and float(counted.group(1)) >= len(skipped)
    [job] = server.get("/jobs")[2]["jobs"]
    assert job["health"] == "warning", job
    assert re.fullmatch(r"\d+ runs? missed at [\d:–-]+( [\d:–-]+)? UTC while no scheduler ran", job["health_reason"]), job
    assert f"job tick: {len(skipped)} runs missed at " in server.stderr()


def test_max_requests_recycling_keeps_the_jobs_running(ticking):
    server, runs_file, store = ticking(workers=2, args=["--max-requests", "5", "--max-requests-jitter", "0"])
    first_workers = set(server.worker_pids())
    for _ in range(60):
        server.get("/health/live", headers={"Connection": "close"})
    wait_until(lambda: not first_workers & set(server.worker_pids()), timeout=20, what="every worker recycled")
    count = len(read_runs(runs_file))
    wait_until(lambda: len(read_runs(runs_file)) >= count + 2, timeout=6, what="runs after recycling")
    assert leader_of(runs_file) in server.worker_pids()
    assert_no_duplicates(runs_file)
    assert successes(store) >= count


def test_a_worker_gunicorn_kills_on_timeout_hands_the_scheduler_over(ticking):
    server, runs_file, _ = ticking(workers=2, args=["--timeout", "2"])
    old = leader_of(runs_file)
    os.kill(old, signal.SIGSTOP)  # a frozen worker stops notifying the master, which kills it on timeout
    try:
        wait_until(lambda: not psutil.pid_exists(old) or psutil.Process(old).status() == psutil.STATUS_ZOMBIE,
                   timeout=15, what="gunicorn to kill the frozen worker")
        wait_until(lambda: leader_of(runs_file) != old, timeout=10, what="a new leader")
    finally:
        if psutil.pid_exists(old):
            os.kill(old, signal.SIGCONT)
    assert_single_handover(read_runs(runs_file), old)
    assert "WORKER TIMEOUT" in server.stderr()


def test_sigterm_lets_a_running_job_finish_and_marks_the_scheduler_stopped(tmp_path, gunicorn, state_dir):
    marks = tmp_path / "marks.txt"
    path = jobs_file(tmp_path / "jobs.toml", f"""
[jobs.long]
name = "Long"
func = "tests.support.sample_jobs:slow"
trigger = "interval"
seconds = 1
kwargs = {{ seconds = 1.5, path = "{marks}" }}
""")
    server = gunicorn(WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="2", **FAST_BEAT)
    wait_until(lambda: marks.exists() and marks.read_text().count("start") > marks.read_text().count("end"),
               timeout=10, what="a run in progress")
    assert server.stop(timeout=20) == 0
    lines = marks.read_text().split()
    assert lines.count("start") == lines.count("end"), "a running job was cut off"
    leader = SqliteStateStore(str(state_dir / STATE_FILE)).scheduler()
    assert leader.state == "stopped"


def test_preload_never_starts_the_scheduler_in_the_master(ticking):
    server, runs_file, _ = ticking(workers=2, args=["--preload"], SCHEDULER_AUTOSTART="true")
    pids = {pid for pid, _ in read_runs(runs_file)}
    assert pids and server.process.pid not in pids
    assert pids <= set(server.worker_pids()) and len(pids) == 1


def test_outside_gunicorn_create_app_starts_the_scheduler_when_asked(make_app, tmp_path):
    runs = tmp_path / "runs.txt"
    path = jobs_file(tmp_path / "jobs.toml", pid_job(runs))
    app = make_app(WORKER_JOBS_FILE=str(path), SCHEDULER_AUTOSTART="true", SCHEDULER_HEARTBEAT_INTERVAL="1",
                   HEALTH_CACHE_TTL="0")
    try:
        wait_until(lambda: len(read_runs(runs)) >= 2, timeout=6, what="two runs in-process")
        assert {pid for pid, _ in read_runs(runs)} == {os.getpid()}
        assert app.test_client().get("/health").json["components"]["scheduler"] == "available"
    finally:
        app.extensions["scheduler"].stop(wait=True)
    assert not app.extensions["scheduler"].is_leader


def test_a_broken_jobs_file_on_reload_keeps_the_last_good_jobs_running_until_a_good_reload(tmp_path, gunicorn):
    """As ``nginx -s reload``: a bad file is logged and reported, the last good schedule goes on, a good one applies."""
    runs = tmp_path / "runs.txt"
    path = jobs_file(tmp_path / "jobs.toml", pid_job(runs))
    server = gunicorn(WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="2", **FAST_BEAT)
    wait_until(lambda: len(read_runs(runs)) >= 2, timeout=10, what="the first runs")
    old_workers = set(server.worker_pids())
    with open(path, "a") as handle:
        handle.write("\n[jobs.broken\n")
    broken_at = time.time()
    server.signal(signal.SIGHUP)

    wait_until(lambda: "reload: jobs file" in server.stderr(), timeout=20, what="the reload error in the log")
    assert "keeps the last good job set" in server.stderr()
    wait_until(lambda: not old_workers & set(server.worker_pids()) and len(server.worker_pids()) == 2,
               timeout=20, what="the old workers to be replaced")
    new_workers = set(server.worker_pids())
    wait_until(lambda: len([run for run in read_runs(runs) if run[0] in new_workers]) >= 3, timeout=15,
               what="the last good job set to run in the new workers")
    status, _, health = server.get("/health")
    assert (status, health["status"], health["components"]["scheduler"]) == (200, "degraded", "degraded")
    _, _, verbose = server.get("/health?verbose")
    assert "[+]scheduler degraded: jobs file " in verbose and "TOML syntax error" in verbose, verbose
    reason = server.get("/status")[2]["metrics"]["dependencies"]["scheduler"]["reason"]
    assert reason.startswith(f"jobs file {path}: TOML syntax error"), reason
    since = calendar.timegm(time.strptime(reason.split("; since ")[1][:20], "%Y-%m-%dT%H:%M:%SZ"))
    assert broken_at - 1 <= since <= time.time(), reason  # when the reload found it (after a check-config child)
    assert "the scheduler keeps the last good job set" in reason

    # A good file at the next reload applies, and the problem is gone.
    runs_after = tmp_path / "runs-after.txt"
    jobs_file(path, pid_job(runs_after).replace("[jobs.tick]", "[jobs.tock]"))
    server.signal(signal.SIGHUP)
    wait_until(lambda: len(read_runs(runs_after)) >= 2, timeout=20, what="the new job set to run")
    wait_until(lambda: server.get("/health")[2]["status"] == "available", timeout=10, what="available again")
    assert [job["id"] for job in server.get("/status")[2]["metrics"]["scheduled_jobs"]] == ["tock"]


def test_stats_and_next_run_survive_a_full_restart(tmp_path, gunicorn, state_dir):
    runs = tmp_path / "runs.txt"
    path = jobs_file(tmp_path / "jobs.toml", pid_job(runs))
    first = gunicorn(WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="2", **FAST_BEAT)
    wait_until(lambda: len(read_runs(runs)) >= 3, timeout=10, what="three runs")
    assert first.stop() == 0
    store = SqliteStateStore(str(state_dir / STATE_FILE))
    before = successes(store)
    assert before >= 3 and store.scheduler().state == "stopped"
    gunicorn(WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="2", **FAST_BEAT)
    wait_until(lambda: successes(store) >= before + 2, timeout=10, what="runs after the restart")
    assert store.scheduler().state == "running"


def test_sighup_brings_new_job_code_because_the_master_never_imports_it(tmp_path, gunicorn):
    package = tmp_path / "pkg"
    package.mkdir()
    module = package / "versioned_job.py"
    out = tmp_path / "versions.txt"
    module.write_text(f"def run():\n    open({str(out)!r}, 'a').write('v1\\n')\n")
    path = jobs_file(tmp_path / "jobs.toml", '[jobs.v]\nfunc = "versioned_job:run"\ntrigger = "interval"\nseconds = 1\n')
    server = gunicorn(WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="2", PYTHONPATH=str(package), **FAST_BEAT)
    wait_until(lambda: out.exists() and "v1" in out.read_text(), timeout=10, what="v1 runs")
    module.write_text(f"def run():\n    open({str(out)!r}, 'a').write('v2\\n')\n")
    server.signal(signal.SIGHUP)
    wait_until(lambda: "v2" in out.read_text(), timeout=20, what="the new code to run after SIGHUP")
    lines = out.read_text().split()
    assert "v1" not in lines[lines.index("v2"):], "old code ran after the new code"


def test_a_stop_right_after_a_reload_does_not_wait_out_the_graceful_timeout(ticking):
    """New workers run the master's signal handlers until gunicorn installs theirs: a SIGTERM then was lost."""
    server, _, _ = ticking(workers=3, GUNICORN_GRACEFUL_TIMEOUT="30")
    server.signal(signal.SIGHUP)
    wait_until(lambda: len(server.worker_pids()) > 3, timeout=5, interval=0.01, what="new workers forked")
    stopped = time.monotonic()
    server.signal(signal.SIGTERM)
    server.process.wait(timeout=40)
    assert time.monotonic() - stopped < 10, f"the stop took {time.monotonic() - stopped:.1f} s"


def test_job_executor_threads_bounds_the_runs_at_once(make_app, tmp_path):
    """JOB_EXECUTOR_THREADS=1: two slow jobs due together run one after the other, never side by side."""
    marks = tmp_path / "marks.txt"
    path = jobs_file(tmp_path / "jobs.toml", "".join(
        f'[jobs.{name}]\nfunc = "tests.support.sample_jobs:slow"\ntrigger = "interval"\nseconds = 1\n'
        f'misfire_grace_time = 30\nkwargs = {{ seconds = 0.6, path = "{marks}" }}\n' for name in ("a", "b")))
    app = make_app(WORKER_JOBS_FILE=str(path), SCHEDULER_AUTOSTART="true", SCHEDULER_HEARTBEAT_INTERVAL="1",
                   JOB_EXECUTOR_THREADS="1")
    try:
        wait_until(lambda: marks.exists() and marks.read_text().count("end") >= 4, timeout=15, what="four runs")
    finally:
        app.extensions["scheduler"].stop(wait=True)
    running = deepest = 0
    for line in marks.read_text().splitlines():
        running += 1 if line.startswith("start") else -1
        deepest = max(deepest, running)
    assert deepest == 1, marks.read_text()
