"""The real PostgreSQL of the tests: URLs, scratch schemas dropped after each test, stores on them.

Each test gets its own schema (``wst_<pid>_<random>``) on database ``test``,
dropped afterwards; schemas left by a test process that died are dropped the
next time a scratch schema is made. Test stores use ``synchronous_commit=off``
through the URL (durability is not under test; it saves a disk flush per write).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

import psutil
import psycopg
import pytest

DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
FAST_URL = DATABASE_URL + ("&" if "?" in DATABASE_URL else "?") + "options=-c%20synchronous_commit%3Doff"
PREFIX = "wst_"
_swept = False


def admin(url: str = DATABASE_URL) -> psycopg.Connection:
    """A fresh autocommit connection for a test's own checks and set-up (close it, or use ``with``)."""
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


def new_schema_name() -> str:
    return f"{PREFIX}{os.getpid()}_{uuid.uuid4().hex[:10]}"


def drop_schema(name: str, url: str = DATABASE_URL) -> None:
    with admin(url) as db:
        db.execute("SET lock_timeout = '5s'")
        db.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def sweep_abandoned_schemas() -> None:
    """Drop the scratch schemas of test processes that are gone (a run killed before its clean-up)."""
    global _swept
    if _swept:
        return
    _swept = True
    with admin() as db:
        names = [name for (name,) in db.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE %s", (PREFIX.replace("_", r"\_") + "%",)).fetchall()]
    for name in names:
        pid = name[len(PREFIX):].split("_", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            drop_schema(name)


@contextlib.contextmanager
def scratch_schema() -> Iterator[str]:
    """A new schema name (not created: the store migrates it); dropped with everything in it afterwards."""
    sweep_abandoned_schemas()
    name = new_schema_name()
    try:
        yield name
    finally:
        drop_schema(name)


@pytest.fixture
def schema() -> Iterator[str]:
    with scratch_schema() as name:
        yield name


def rows(schema: str, sql: str, params: tuple = ()) -> list[tuple]:
    """Read the scratch schema directly (``{s}`` in ``sql`` is the schema), bypassing the store under test."""
    with admin() as db:
        return db.execute(sql.format(s=f'"{schema}"'), params).fetchall()
