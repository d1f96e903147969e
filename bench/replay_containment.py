#!/usr/bin/env python3
"""Replay the containment scenarios of issue 10 against a real gunicorn (2 workers) and print what was seen.

Scenarios, each on a fresh state directory, each for a bounded time:

* poison: a 1 s job that calls os._exit(1) beside a healthy 0.5 s job
  (JOB_CRASH_BACKOFF=1): worker boots, poison runs, healthy runs and slots run
  twice, /health answers, the poison job's state;
* fork / multiprocessing / subprocess: a job whose child outlives it; SIGKILL
  of the leader: time until another worker leads, whether a child listens on
  the port, whether the port can be bound after the master stops;
* unwritable store: the store file made immutable (chattr +i) for 6 s while a
  1 s job runs: runs while unwritable, leaders, /health, and after recovery;
* corrupt store at start: the file overwritten with garbage before the start.

Usage (from the repository, as root for chattr): bench/replay_containment.py [--only poison,fork,...]
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve() and VENV_PYTHON.exists():
    os.execv(VENV_PYTHON, [str(VENV_PYTHON), __file__, *sys.argv[1:]])  # the project's venv has the test helpers
sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402

from tests.support.runs import (  # noqa: E402
    duplicate_slots,
    kill_children,
    kill_the_leader_once_a_child_lingers,
    read_runs,
)
from tests.support.servers import Gunicorn, base_env, wait_until  # noqa: E402

FAST = {"SCHEDULER_HEARTBEAT_INTERVAL": "1", "HEALTH_CACHE_TTL": "0", "STATUS_CACHE_TTL": "0",
        "WEB_CONCURRENCY": "2", "GUNICORN_GRACEFUL_TIMEOUT": "2"}


def job(job_id: str, func: str, every: float, **kwargs: object) -> str:
    args = ", ".join(f"{key} = {value!r}".replace("'", '"') for key, value in kwargs.items())
    return (f'[jobs.{job_id}]\nfunc = "tests.support.sample_jobs:{func}"\ntrigger = "interval"\nseconds = {every}\n'
            f"misfire_grace_time = 5\nkwargs = {{ {args} }}\n")


def start(work: Path, jobs: str, **env: str) -> Gunicorn:
    state = work / "state"
    state.mkdir(exist_ok=True)
    (work / "jobs.toml").write_text(jobs)
    return Gunicorn(base_env(state, WORKER_JOBS_FILE=str(work / "jobs.toml"), **{**FAST, **env}), work).start()


def health(server: Gunicorn) -> str:
    try:
        status, _, body = server.get("/health", timeout=2)
        return f"{status} {body['status']} scheduler={body['components']['scheduler']}"
    except Exception as error:  # the replay reports what a probe saw, whatever it was
        return f"no answer ({type(error).__name__})"


def boots(server: Gunicorn) -> int:
    return server.stderr().count("Booting worker")


def poison(work: Path) -> None:
    poison_runs, healthy_runs = work / "poison.txt", work / "healthy.txt"
    server = start(work, job("poison", "exit_process", 1, path=str(poison_runs))
                   + job("healthy", "append_pid", 0.5, path=str(healthy_runs)), JOB_CRASH_BACKOFF="1")
    try:
        answers = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answers.append(health(server))
            time.sleep(1)  # one probe a second, as a load balancer would
        state = server.get("/status")[2]["metrics"]["jobs_analysis"]["job_health"]["poison"]
        healthy = read_runs(healthy_runs)
        print(f"poison: 30 s, {boots(server)} worker boots (2 at start), {len(read_runs(poison_runs))} poison runs, "
              f"{len(healthy)} healthy runs, {len(duplicate_slots(healthy, 0.5))} healthy slots run twice")
        print(f"  /health answers: {sorted(set(answers))}")
        print(f"  poison job: {state['status']} ({state['reason']}), errors {state['error_count']}")
    finally:
        server.stop()


def child(work: Path, how: str) -> None:
    runs, children = work / "runs.txt", work / "children.txt"
    server = start(work, job("spawner", "fork_and_linger", 1, how=how, seconds=30.0, pids_path=str(children),
                             runs_path=str(runs)))
    try:
        takeover = kill_the_leader_once_a_child_lingers(runs, children, timeout=30)
        server.stop()
        pids = [int(pid) for pid in children.read_text().split()]
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        listening = sum(1 for pid in alive for c in psutil.Process(pid).net_connections()
                        if c.status == psutil.CONN_LISTEN)
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", server.port))
                bound = "yes"
            except OSError as error:
                bound = f"no ({error.strerror})"
        print(f"{how}: next run by a new leader {takeover:.2f} s after SIGKILL of the leader; {len(alive)} children "
              f"alive after the stop, {listening} listening; port free for a new master: {bound}")
    finally:
        kill_children(children)


def unwritable(work: Path) -> None:
    runs = work / "runs.txt"
    server = start(work, job("tick", "append_pid", 1, path=str(runs)))
    try:
        wait_until(lambda: len(read_runs(runs)) >= 2, timeout=10, what="the first runs")
        files = [work / "state" / "worker-state.sqlite3", work / "state" / "worker-state.sqlite3-wal"]
        before = len(read_runs(runs))
        if os.system(" ".join(["chattr", "+i", *map(str, files)])) != 0:
            print("unwritable store: skipped (chattr +i not supported here)")
            return
        frozen = time.time()
        answers = []
        try:
            for _ in range(6):
                time.sleep(1)
                answers.append(health(server))
        finally:
            os.system(" ".join(["chattr", "-i", *map(str, files)]))
        during = len([at for _, at in read_runs(runs) if at > frozen + 1.5])
        wait_until(lambda: len(read_runs(runs)) >= before + 3, timeout=15, what="runs after recovery")
        all_runs = read_runs(runs)
        print(f"unwritable store for 6 s: {during} runs while unwritable (after the first 1.5 s), leaders "
              f"{sorted({pid for pid, _ in all_runs})}, {len(duplicate_slots(all_runs))} slots run twice")
        print(f"  /health during: {sorted(set(answers))}; after: {health(server)}")
    finally:
        server.stop()


def corrupt(work: Path) -> None:
    state = work / "state"
    state.mkdir()
    (state / "worker-state.sqlite3").write_bytes(b"this is not a database" * 100)
    runs = work / "runs.txt"
    server = start(work, job("tick", "append_pid", 1, path=str(runs)))
    try:
        wait_until(lambda: len(read_runs(runs)) >= 2, timeout=10, what="runs")
        aside = sorted(p.name for p in state.iterdir() if ".corrupt-" in p.name)
        print(f"corrupt store at start: master up, {len(read_runs(runs))} runs, /health {health(server)}; "
              f"moved aside: {aside}")
    finally:
        server.stop()


SCENARIOS = {"poison": poison, "fork": lambda w: child(w, "fork"),
             "multiprocessing": lambda w: child(w, "multiprocessing"),
             "subprocess": lambda w: child(w, "subprocess"), "unwritable": unwritable, "corrupt": corrupt}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    chosen = parser.parse_args().only.split(",")
    for name in chosen:
        with tempfile.TemporaryDirectory(prefix=f"replay-{name}-") as work:
            SCENARIOS[name](Path(work))


if __name__ == "__main__":
    main()
