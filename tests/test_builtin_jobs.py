"""The built-in jobs do small, real work against the configured database and cache."""

from __future__ import annotations

import json
import os
import time
import uuid

import psycopg
import pytest

from tests.conftest import DATABASE_URL, REDIS_URL
from tests.support.servers import wait_until
from worker_service.config import BUILTIN_JOBS_FILE
from worker_service.scheduler.jobs_file import load_jobs_file


def test_builtin_jobs_file_declares_the_seeds_jobs():
    jobs = {spec.id: spec for spec in load_jobs_file(BUILTIN_JOBS_FILE)}
    assert list(jobs) == ["sync_accounts", "cleanup_temporary_files", "reconcile_database"]
    assert jobs["sync_accounts"].name == "Sincronización de cuentas"
    assert str(jobs["sync_accounts"].trigger) == "interval[0:30:00]" and jobs["sync_accounts"].critical
    assert jobs["reconcile_database"].critical and not jobs["cleanup_temporary_files"].critical


@pytest.fixture
def accounts_table():
    table = f"accounts_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(DATABASE_URL, autocommit=True) as connection:
        connection.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, email text)")
        connection.execute(f"INSERT INTO {table} VALUES ('a1', 'a@example.org'), ('a2', 'b@example.org')")
    yield table
    with psycopg.connect(DATABASE_URL, autocommit=True) as connection:
        connection.execute(f"DROP TABLE IF EXISTS {table}")


def test_sync_then_reconcile_against_postgresql_and_redis(make_app, accounts_table):
    service = f"jobs-test-{uuid.uuid4().hex[:6]}"
    app = make_app(DATABASE_URL=DATABASE_URL, REDIS_URL=REDIS_URL, ACCOUNTS_TABLE=accounts_table, SERVICE_NAME=service)
    from worker_service.jobs.accounts import reconcile_database, sync_accounts

    cache = app.extensions["cache"]
    assert sync_accounts() == 2
    assert json.loads(cache.get(f"{service}:account:a1"))["email"] == "a@example.org"
    with psycopg.connect(DATABASE_URL, autocommit=True) as connection:
        connection.execute(f"DELETE FROM {accounts_table} WHERE id = 'a2'")
    assert reconcile_database() == 1
    assert cache.get(f"{service}:account:a2") is None and cache.get(f"{service}:account:a1") is not None
    cache.delete(f"{service}:account:a1")


def test_sync_accounts_fails_clearly_when_the_table_is_missing(make_app):
    make_app(DATABASE_URL=DATABASE_URL, ACCOUNTS_TABLE="no_such_accounts_table")
    from worker_service.jobs.accounts import sync_accounts

    with pytest.raises(psycopg.errors.UndefinedTable):
        sync_accounts()


def test_cleanup_deletes_old_files_only_and_never_follows_symlinks_out(make_app, tmp_path):
    target_dir = tmp_path / "cleanup"
    outside = tmp_path / "outside"
    (target_dir / "nested").mkdir(parents=True)
    outside.mkdir()
    old, new, nested_old = target_dir / "old.tmp", target_dir / "new.tmp", target_dir / "nested" / "old.tmp"
    precious = outside / "precious.txt"
    for path in (old, new, nested_old, precious):
        path.write_text("x")
    past = time.time() - 7200
    for path in (old, nested_old, precious):
        os.utime(path, (past, past))
    (target_dir / "link-to-outside").symlink_to(outside, target_is_directory=True)
    make_app(CLEANUP_DIR=str(target_dir), CLEANUP_MAX_AGE="3600")
    from worker_service.jobs.cleanup import cleanup_temporary_files

    deleted = cleanup_temporary_files()
    assert not old.exists() and not nested_old.exists() and new.exists()
    assert precious.exists(), "followed a symlink out of the directory"
    assert deleted == 2


def test_cleanup_creates_its_default_directory_but_not_a_configured_one(make_app, state_dir, tmp_path):
    make_app()
    from worker_service.jobs.cleanup import cleanup_temporary_files

    assert cleanup_temporary_files() == 0 and (state_dir / "tmp").is_dir()
    make_app(CLEANUP_DIR=str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="CLEANUP_DIR"):
        cleanup_temporary_files()


def test_gunicorn_on_the_embedded_defaults_is_available_with_the_builtin_jobs(gunicorn):
    server = gunicorn(WEB_CONCURRENCY="2", HEALTH_CACHE_TTL="0")
    status, _, body = wait_until(lambda: (r := server.get("/health"))[0] == 200 and r, timeout=10, what="200")
    assert body["status"] == "available", body
    _, _, report = server.get("/status")
    assert report["metrics"]["jobs_analysis"]["total_jobs"] == 3
    assert {d["backend"] for d in report["metrics"]["dependencies"].values()} == {"in-process", "sqlite", "apscheduler"}
