"""A bad job must not take the service down: poison jobs, forked children, jobs killed at a stop."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import psutil
import pytest

from tests.support.runs import (
    duplicate_slots,
    jobs_file,
    kill_children,
    kill_the_leader_once_a_child_lingers,
    read_runs,
    read_scheduled,
)
from tests.support.servers import wait_until
from worker_service.state import SqliteStateStore
from worker_service.state.setup import STATE_FILE

FAST = {"SCHEDULER_HEARTBEAT_INTERVAL": "1", "HEALTH_CACHE_TTL": "0", "STATUS_CACHE_TTL": "0"}


def job(job_id: str, func: str, every: float, critical: bool = False, **kwargs: object) -> str:
    args = ", ".join(f"{key} = {value!r}".replace("'", '"') for key, value in kwargs.items())
    return (f'[jobs.{job_id}]\nfunc = "tests.support.sample_jobs:{func}"\ntrigger = "interval"\nseconds = {every}\n'
            f"critical = {str(critical).lower()}\nmisfire_grace_time = 5\nkwargs = {{ {args} }}\n")


def job_health(server, job_id: str) -> dict:
    return server.get("/status")[2]["metrics"]["jobs_analysis"]["job_health"][job_id]


def scheduled_job(server, job_id: str) -> dict:
    return next(j for j in server.get("/status")[2]["metrics"]["scheduled_jobs"] if j["id"] == job_id)


def test_a_job_that_kills_its_worker_is_held_back_then_quarantined_while_the_others_keep_running(
        tmp_path, gunicorn, state_dir):
    poison_runs, healthy_runs = tmp_path / "poison.txt", tmp_path / "healthy.txt"
    path = jobs_file(tmp_path / "jobs.toml",
                     job("poison", "exit_process", 1, path=str(poison_runs))
                     + job("healthy", "append_pid", 0.5, path=str(healthy_runs)))
    server = gunicorn(WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="2", JOB_CRASH_BACKOFF="0.5", JOB_CRASH_LIMIT="3",
                      **FAST)
    wait_until(lambda: job_health(server, "poison")["reason"].startswith("quarantined"), timeout=30,
               what="the poison job quarantined")
    assert len(read_runs(poison_runs)) == 3, "each crash recorded once, and no run after the third"
    health = job_health(server, "poison")
    assert health["status"] == "unhealthy" and health["error_count"] == 3
    listed = scheduled_job(server, "poison")
    assert listed["quarantined"] is True and listed["crash_count"] == 3 and listed["running"] is None
    status, _, body = server.get("/health")
    assert body["components"]["scheduler"] == "degraded"  # the job is not critical: quarantine itself degrades
    # The rest of the service goes on: the healthy job keeps running, once per slot.
    count = len(read_runs(healthy_runs))
    wait_until(lambda: len(read_runs(healthy_runs)) >= count + 4, timeout=6, what="healthy runs after quarantine")
    assert not duplicate_slots(read_scheduled(healthy_runs)[count:], 0.5)
    assert len(read_runs(poison_runs)) == 3
    history = [run.outcome for run in SqliteStateStore(str(state_dir / STATE_FILE)).runs("poison")]
    # A slot a late start folded into the next (a loaded machine) is a missed run; the crashes are each recorded once.
    assert [outcome for outcome in history if outcome != "missed"] == ["crashed"] * 3
    assert "quarantined" in server.stderr()


@pytest.mark.parametrize("how", ["fork", "multiprocessing", "subprocess"])
def test_a_child_a_job_starts_keeps_neither_the_scheduler_lock_nor_the_port(how, tmp_path, gunicorn):
    runs, children = tmp_path / "runs.txt", tmp_path / "children.txt"
    path = jobs_file(tmp_path / "jobs.toml", job("spawner", "fork_and_linger", 1, how=how, seconds=60.0,
                                                 pids_path=str(children), runs_path=str(runs)))
    # A kill that lands while a run is in flight is a crash, held back JOB_CRASH_BACKOFF (10 s by default): 1 s here,
    # the test is about the lock and the port, not the hold.
    server = gunicorn(WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="2", GUNICORN_GRACEFUL_TIMEOUT="2",
                      JOB_CRASH_BACKOFF="1", **FAST)
    try:
        takeover = kill_the_leader_once_a_child_lingers(runs, children, timeout=10)
        assert takeover < 5, "the children kept the host without a scheduler"
        server.stop()
        live = [int(pid) for pid in children.read_text().split() if psutil.pid_exists(int(pid))]
        assert live, "the children should outlive the service for this test to mean anything"
        for pid in live:
            listening = [c for c in psutil.Process(pid).net_connections() if c.status == psutil.CONN_LISTEN]
            assert not listening, f"child {pid} holds a listening socket: {listening}"
        with socket.socket() as probe:  # a new master can bind the port (as gunicorn does, with SO_REUSEADDR)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", server.port))
            probe.listen()
    finally:
        kill_children(children)


def test_a_job_killed_at_the_graceful_timeout_is_recorded_as_killed_at_the_stop(tmp_path, gunicorn, state_dir):
    marks = tmp_path / "marks.txt"
    path = jobs_file(tmp_path / "jobs.toml", job("long", "slow", 1, seconds=60.0, path=str(marks)))
    server = gunicorn(WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="1", GUNICORN_GRACEFUL_TIMEOUT="1", **FAST)
    wait_until(lambda: marks.exists() and "start" in marks.read_text(), timeout=10, what="the long job running")
    assert job_health(server, "long")["status"] in ("pending", "healthy")
    running = wait_until(lambda: scheduled_job(server, "long")["running"], timeout=5, what="the run shown running")
    assert running["instances"] == 1 and running["since"].endswith("Z")
    assert scheduled_job(server, "long")["max_runtime"] == 60.0
    server.stop(timeout=15)
    restarted = gunicorn(WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="1", GUNICORN_GRACEFUL_TIMEOUT="1", **FAST)
    wait_until(lambda: job_health(restarted, "long")["error_count"] == 1, timeout=10, what="the killed run recorded")
    store = SqliteStateStore(str(state_dir / STATE_FILE))
    # The run itself (the 1 s slots that came due while it ran are skipped as max_instances around it).
    assert [run.outcome for run in store.runs("long") if run.outcome != "max_instances"][-1] == "killed"
    record = next(r for r in store.jobs() if r.id == "long")
    assert record.last_error_type == "KilledAtStop" and "graceful timeout" in record.last_error_message
    assert "killed at the graceful timeout" in restarted.stderr()


def _immutable(paths: list[Path], on: bool) -> bool:
    flag = "+i" if on else "-i"
    return all(os.system(f"chattr {flag} {path} 2>/dev/null") == 0 for path in paths if path.exists())


def test_the_leader_stops_submitting_while_the_store_is_unwritable_and_no_other_worker_takes_over(
        tmp_path, gunicorn, state_dir):
    runs = tmp_path / "runs.txt"
    path = jobs_file(tmp_path / "jobs.toml", job("tick", "append_pid", 1, critical=True, path=str(runs)))
    server = gunicorn(WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="2", **FAST)
    wait_until(lambda: len(read_runs(runs)) >= 2, timeout=10, what="the first runs")
    leader = read_runs(runs)[-1][0]
    files = [state_dir / STATE_FILE, state_dir / (STATE_FILE + "-wal")]
    if not _immutable(files, True):
        pytest.skip("chattr +i is not supported here (needs root on ext4/xfs)")
    try:
        frozen_at = time.time()
        wait_until(lambda: "no job is submitted" in server.stderr(), timeout=5, what="the leader saying it holds jobs")
        wait_until(lambda: server.get("/health")[2]["components"]["scheduler"] == "unavailable", timeout=8,
                   what="the scheduler reported unavailable")
        during = [at for _, at in read_runs(runs) if at > frozen_at + 1.5]
        assert during == [], f"jobs ran while their runs could not be recorded: {during}"
    finally:
        _immutable(files, False)
    count = len(read_runs(runs))
    wait_until(lambda: len(read_runs(runs)) >= count + 2, timeout=10, what="runs after the store recovered")
    assert {pid for pid, _ in read_runs(runs)} == {leader}, "another worker led while the leader held on"
    assert not duplicate_slots(read_scheduled(runs))
    wait_until(lambda: server.get("/health")[2]["components"]["scheduler"] == "available", timeout=8,
               what="the scheduler available again")
