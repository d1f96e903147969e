"""A state store that fails, fills, is locked, corrupt, truncated or deleted: every call answers in bounded
time with StoreUnavailable (or recovers), building the store never raises, and gunicorn keeps serving."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support.runs import jobs_file, pid_job, read_runs
from tests.support.servers import ROOT, wait_until
from worker_service.state import SqliteStateStore, StoreUnavailable
from worker_service.state.setup import STATE_FILE, build_store, check_state_store

READ_BOUND = 1.5  # seconds: a read waits 0.5 s on a lock, an opening about twice that


# -- fixtures: a small disk, immutable files ------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path):
    """A 512 KiB tmpfs mounted for the test (root only); skipped where mounting is not allowed."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` until it refuses another byte; return the filler file."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as out:
        with contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 4096)
    return filler


@pytest.fixture
def immutable():
    """``immutable(path)``: chattr +i (even root cannot write it); undone after the test."""
    marked: list[Path] = []

    def mark(path: Path) -> None:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"chattr +i not possible here: {done.stderr.decode(errors='replace').strip()}")
        marked.append(path)

    yield mark
    for path in marked:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def seeded(path: Path, runs: int = 300) -> SqliteStateStore:
    """A store with enough rows to span several pages, and a heartbeat."""
    store = SqliteStateStore(str(path))
    for i in range(runs):
        store.record_run(f"job{i % 30}", "success", time.time(), 0.1)
    store.beat(1, "host", "running", "UTC", time.time())
    return store


def corrupt_copies(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob(f"{STATE_FILE}.corrupt-*") if not p.name.endswith(("-wal", "-shm")))


def timed(call):
    started = time.monotonic()
    try:
        return call(), time.monotonic() - started
    except StoreUnavailable as error:
        return error, time.monotonic() - started


# -- corrupt, truncated, deleted -----------------------------------------------------------------
def test_a_corrupt_file_at_start_is_moved_aside_with_its_wal_and_rebuilt_with_one_error_line(state_dir, caplog):
    path = state_dir / STATE_FILE
    path.write_bytes(b"this is not a database " * 200)
    Path(f"{path}-wal").write_bytes(b"junk")
    caplog.set_level(logging.ERROR)

    store = build_store({"WORKER_STATE_DIR": str(state_dir), "JOB_HISTORY_SIZE": 50})

    [moved] = corrupt_copies(state_dir)
    assert moved.read_bytes().startswith(b"this is not a database")
    assert Path(f"{moved}-wal").read_bytes() == b"junk"
    lines = [r.getMessage() for r in caplog.records if "corrupt" in r.getMessage()]
    assert len(lines) == 1 and str(path) in lines[0] and str(moved) in lines[0]
    store.beat(7, "host", "running", "UTC", time.time())
    assert store.scheduler().pid == 7 and store.jobs() == []


def test_two_workers_finding_the_same_corrupt_file_move_it_aside_only_once(state_dir, tmp_path):
    path = state_dir / STATE_FILE
    path.write_bytes(b"garbage" * 1000)
    go = tmp_path / "go"
    script = (
        "import os, sys, time\n"
        "from worker_service.state import SqliteStateStore\n"
        "open(sys.argv[2], 'w').close()\n"
        "while not os.path.exists(sys.argv[3]): time.sleep(0.005)\n"
        "SqliteStateStore(sys.argv[1]).beat(os.getpid(), 'h', 'running', 'UTC', 0)\n"
    )
    workers = [subprocess.Popen([sys.executable, "-c", script, str(path), str(tmp_path / f"ready{i}"), str(go)],
                                cwd=ROOT, stderr=subprocess.PIPE, text=True) for i in range(2)]
    wait_until(lambda: all((tmp_path / f"ready{i}").exists() for i in range(2)), timeout=20, what="both workers")
    go.touch()
    for worker in workers:
        assert worker.wait(timeout=20) == 0, worker.stderr.read()
    assert len(corrupt_copies(state_dir)) == 1
    assert SqliteStateStore(str(path)).scheduler() is not None


def test_a_file_half_truncated_while_running_is_rebuilt_and_reads_stay_bounded(state_dir):
    path = state_dir / STATE_FILE
    store = seeded(path)
    store.file.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    os.truncate(path, os.path.getsize(path) // 2)

    result, took = timed(lambda: SqliteStateStore(str(path)).runs("job1"))  # a new thread or worker
    assert took < READ_BOUND and (result == [] or isinstance(result, StoreUnavailable)), result
    assert len(corrupt_copies(state_dir)) == 1
    assert store.runs("job1") == []  # an old connection follows the rebuilt file


def test_a_file_truncated_to_nothing_while_running_never_hangs_a_new_reader(state_dir):
    path = state_dir / STATE_FILE
    writer = seeded(path)
    os.truncate(path, 0)

    result, took = timed(lambda: SqliteStateStore(str(path)).scheduler())
    assert took < READ_BOUND and result is None
    assert len(corrupt_copies(state_dir)) == 1
    writer.beat(2, "host", "running", "UTC", time.time())  # the writer follows the new file
    assert SqliteStateStore(str(path)).scheduler().pid == 2


def test_a_file_deleted_while_running_is_recreated_and_every_reader_follows_the_writer(state_dir):
    path = state_dir / STATE_FILE
    writer, reader = seeded(path), SqliteStateStore(str(path))
    assert reader.scheduler().pid == 1
    os.unlink(path)

    writer.beat(2, "host", "running", "UTC", time.time())

    assert reader.scheduler().pid == 2
    assert SqliteStateStore(str(path)).scheduler().pid == 2  # a new thread or worker: no "no such table"
    assert writer.file.replacements == 1


# -- full, unwritable, locked -----------------------------------------------------------------------
def test_a_full_disk_fails_writes_with_a_short_reason_keeps_reads_and_recovers(small_disk):
    store = SqliteStateStore(str(small_disk / STATE_FILE))
    store.beat(1, "host", "running", "UTC", time.time())
    filler = fill(small_disk)

    with pytest.raises(StoreUnavailable, match="^state store: disk full$"):
        for i in range(500):
            store.record_run("tick", "error", time.time(), 0.1, "ValueError", "x" * 2000 + str(i))
    assert store.scheduler().pid == 1
    assert "No space left on device" in check_state_store({"WORKER_STATE_DIR": str(small_disk)})

    filler.unlink()
    store.record_run("tick", "success", time.time(), 0.1)
    assert check_state_store({"WORKER_STATE_DIR": str(small_disk)}) is None


def test_an_io_error_on_a_full_disk_is_named_a_full_disk_and_elsewhere_an_io_error(small_disk, state_dir):
    from worker_service.state.faults import SQLITE_IOERR, reason_for

    error = sqlite3.OperationalError("disk I/O error")  # what SQLite says when it cannot make or grow a side file
    error.sqlite_errorcode, error.sqlite_errorname = SQLITE_IOERR | (3 << 8), "SQLITE_IOERR_WRITE"
    fill(small_disk)
    assert reason_for(error, 2.0, str(small_disk / STATE_FILE)) == "state store: disk full"
    assert reason_for(error, 2.0, str(state_dir / STATE_FILE)) == "state store: I/O error (SQLITE_IOERR_WRITE)"


def test_an_immutable_store_file_builds_reads_and_refuses_writes_with_a_reason(state_dir, immutable):
    path = state_dir / STATE_FILE
    seeded(path, runs=3).file.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    immutable(path)

    store = build_store({"WORKER_STATE_DIR": str(state_dir), "JOB_HISTORY_SIZE": 50})
    assert store.scheduler().pid == 1
    with pytest.raises(StoreUnavailable, match="not writable"):
        store.beat(2, "host", "running", "UTC", time.time())
    assert "is not writable" in check_state_store({"WORKER_STATE_DIR": str(state_dir)})


def test_a_store_whose_directory_cannot_be_made_builds_and_raises_on_use(tmp_path, immutable):
    parent = tmp_path / "locked"
    parent.mkdir()
    immutable(parent)

    store = build_store({"WORKER_STATE_DIR": str(parent / "state"), "JOB_HISTORY_SIZE": 50})
    with pytest.raises(StoreUnavailable, match="^state store: "):
        store.scheduler()
    assert "cannot be created: Operation not permitted" in check_state_store({"WORKER_STATE_DIR": str(parent / "state")})


def test_a_locked_file_fails_reads_within_a_second_and_writes_within_their_bound(state_dir):
    path = state_dir / STATE_FILE
    store = seeded(path, runs=3)
    holder = sqlite3.connect(str(path), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        result, took = timed(lambda: store.beat(2, "host", "running", "UTC", time.time()))
        assert isinstance(result, StoreUnavailable) and "locked" in str(result) and took < 3.0
        holder.execute("ROLLBACK")

        holder.execute("PRAGMA locking_mode=EXCLUSIVE")  # blocks even WAL readers once it writes
        holder.execute("BEGIN EXCLUSIVE")
        for read in (store.scheduler, lambda: SqliteStateStore(str(path)).jobs()):
            result, took = timed(read)
            assert isinstance(result, StoreUnavailable) and "locked" in str(result) and took < READ_BOUND, (result, took)
    finally:
        holder.close()
    assert store.scheduler().pid == 1


def test_check_state_store_refuses_proc_even_as_root_and_accepts_a_corrupt_file(state_dir):
    problem = check_state_store({"WORKER_STATE_DIR": "/proc"})
    assert problem and "\n" not in problem and "WORKER_STATE_DIR='/proc' is not usable" in problem
    (state_dir / STATE_FILE).write_bytes(b"garbage" * 100)
    assert check_state_store({"WORKER_STATE_DIR": str(state_dir)}) is None  # the start moves it aside
    assert list(state_dir.iterdir()) == [state_dir / STATE_FILE]  # the check left nothing behind


# -- real gunicorn -------------------------------------------------------------------------------------
def test_gunicorn_starts_on_a_corrupt_state_file_moves_it_aside_and_answers(gunicorn, state_dir):
    path = state_dir / STATE_FILE
    path.write_bytes(b"not a database " * 500)

    server = gunicorn(HEALTH_CACHE_TTL="0", SCHEDULER_HEARTBEAT_INTERVAL="1")

    assert len(corrupt_copies(state_dir)) == 1
    wait_until(lambda: server.get("/health")[0] == 200, timeout=10, what="/health 200 on the rebuilt store")
    assert server.process.poll() is None
    errors = [line for line in server.stderr().splitlines() if "is corrupt: moved it aside" in line]
    assert len(errors) == 1 and str(corrupt_copies(state_dir)[0]) in errors[0]


def test_a_read_only_state_dir_then_a_worker_death_keeps_gunicorn_serving(gunicorn, state_dir, tmp_path, immutable):
    runs = tmp_path / "runs.txt"
    server = gunicorn(WORKER_JOBS_FILE=str(jobs_file(tmp_path / "jobs.toml", pid_job(runs))),
                      HEALTH_CACHE_TTL="0", SCHEDULER_HEARTBEAT_INTERVAL="1", GUNICORN_GRACEFUL_TIMEOUT="5")
    wait_until(lambda: read_runs(runs), timeout=10, what="a first run")
    immutable(state_dir)
    victim, other = server.worker_pids()

    os.kill(victim, signal.SIGKILL)

    [new] = wait_until(lambda: set(server.worker_pids()) - {victim, other}, timeout=15, what="a replacement worker")
    wait_until(lambda: str(state_dir / STATE_FILE) in {f.path for f in psutil.Process(new).open_files()}, timeout=15,
               what="the replacement worker past its start (its store open)")
    survivors = server.worker_pids()
    assert survivors == sorted([other, new])
    for _ in range(4):  # several probes, so both workers answer
        assert server.get("/health")[0] in (200, 503)
    status, _, body = server.get("/status")
    assert status == 200 and body["components"]["scheduler"] in ("available", "degraded", "unavailable")
    assert "reason" in body["metrics"]["dependencies"]["scheduler"]
    assert server.process.poll() is None and server.worker_pids() == survivors


def test_a_second_store_in_one_process_never_drops_the_first_ones_locks(tmp_path):
    """Reading the file's header closes a descriptor of it, which drops every POSIX lock the process holds:
    another process then took the live WAL for abandoned and deleted it (SQLITE_IOERR_SHORT_READ in the leader)."""
    import subprocess
    import sys

    from worker_service.state import SqliteStateStore

    path = tmp_path / "worker-state.sqlite3"
    first = SqliteStateStore(str(path))
    first.beat(1, "host", "running", "UTC", 0.0, "session")
    SqliteStateStore(str(path)).jobs()  # a second store of the same file in this process (a worker has two)
    closer = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('SELECT 1 FROM scheduler').fetchall(); c.close()"
    subprocess.run([sys.executable, "-c", closer, str(path)], check=True, timeout=30)
    assert (tmp_path / "worker-state.sqlite3-wal").exists(), "another process checkpointed and deleted the live WAL"
    first.beat(1, "host", "running", "UTC", 0.0, "session")
    assert first.scheduler().state == "running"


def test_a_child_forked_while_the_recovery_lock_is_held_never_keeps_it(tmp_path):
    """A job's child forked while a thread held the lock kept an flock for as long as it lived: no other worker
    could open the store, and no new leader could start."""
    import os
    import signal
    import subprocess
    import sys

    from worker_service.state.recovery import recovery_lock

    path = str(tmp_path / "worker-state.sqlite3")
    with recovery_lock(path, 1.0):
        child = os.fork()
        if child == 0:  # pragma: no cover - the child only sleeps, as a job's child would
            __import__("time").sleep(30)
            os._exit(0)
    try:
        taker = ("import sys; sys.path.insert(0, sys.argv[2]); from worker_service.state.recovery import recovery_lock\n"
                 "with recovery_lock(sys.argv[1], 2.0): print('taken')")
        done = subprocess.run([sys.executable, "-c", taker, path, os.getcwd()], capture_output=True, text=True,
                              timeout=30)
        assert done.stdout.strip() == "taken", done.stderr[-500:]
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_a_full_disk_under_gunicorn_is_named_as_the_cause_in_status_not_a_silent_heartbeat_or_an_io_error(
        small_disk, gunicorn, tmp_path):
    runs = tmp_path / "runs.txt"
    jobs = jobs_file(tmp_path / "jobs.toml", pid_job(runs))
    server = gunicorn(WORKER_STATE_DIR=str(small_disk), WORKER_JOBS_FILE=str(jobs), HEALTH_CACHE_TTL="0",
                      SCHEDULER_HEARTBEAT_INTERVAL="1")
    wait_until(lambda: server.get("/health")[0] == 200, timeout=15, what="a healthy start")
    filler = fill(small_disk)

    wait_until(lambda: server.get("/health/scheduler")[0] == 503, timeout=15, what="the scheduler to go unavailable")
    dependencies = server.get("/status")[2]["metrics"]["dependencies"]
    scheduler, database = dependencies["scheduler"]["reason"], dependencies["database"]["reason"]
    full = rf"disk full \(\d+ (bytes|KiB) left on {re.escape(str(small_disk))}\)"  # README: "state store: disk full"
    assert re.match(rf"state store: {full}; no scheduler heartbeat for \d+ s", scheduler), scheduler
    assert re.fullmatch(full, database), database  # the embedded database: not "sqlite error: disk I/O error"
    assert "the state store is failing (state store: disk full)" in server.stderr()

    filler.unlink()
    wait_until(lambda: server.get("/health")[0] == 200, timeout=20, what="the service to recover by itself")
    count = len(read_runs(runs))
    wait_until(lambda: len(read_runs(runs)) > count, timeout=10, what="the jobs to run again")
