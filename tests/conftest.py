"""Fixtures: app → client for in-process tests; real gunicorn, Redis and PostgreSQL for the rest."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import Gunicorn, HungListener, base_env

# run_accounting: the session fails if a collected test never ran (tests sharing a node id under xdist);
# leftover_check: ... and if a server a test started is still running at the end.
pytest_plugins = ["tests.support.supabase_fixtures", "tests.support.run_accounting", "tests.support.leftover_check"]

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give each test of a schemathesis ``schema.parametrize()`` its own node id: ``test_x[GET /health]``.

    schemathesis (4.32) names each operation's item ``test_x[GET /health]`` but passes ``test_x`` as its original
    name, from which pytest 9.2 builds the node id: all twelve OpenAPI contract tests had one, and pytest-xdist,
    which schedules by node id, ran one of them. The name is right, so the id is rebuilt from it (before xdist
    reads the ids). An id that is already right, as under older pytest versions, is left alone.
    """
    for item in items:
        base, bracket, params = item.name.partition("[")
        if bracket and not item.nodeid.endswith(item.name):
            item._id = item.parent.id.child(base).with_params(params.removesuffix("]"))  # no public setter
    # The longest files first: pytest-xdist (--dist loadfile) hands files out in this order, so none of them starts
    # last on a machine whose other workers have already finished (the suite's wall time is its longest tail).
    items.sort(key=lambda item: SLOW_FILES.get(item.path.name, len(SLOW_FILES)))


# The test files that take longest (tens of seconds of real processes each), longest first.
SLOW_FILES = {name: rank for rank, name in enumerate((
    "test_fleet.py", "test_fleet_fencing.py", "test_fleet_clock.py", "test_fleet_twins.py", "test_status_page_scale.py",
    "test_scheduler_gunicorn.py", "test_fleet_cold_start.py", "test_status_page.py", "test_load_balancers.py",
))}


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def make_app(state_dir: Path):
    """Build an app with settings overrides; each app gets its own resources, and none leak into the next test."""
    from worker_service import create_app, resources

    apps = []

    def factory(**overrides):
        resources.reset()
        apps.append(create_app({"WORKER_STATE_DIR": str(state_dir), **overrides}))
        return apps[-1]

    yield factory
    for app in apps:
        stop_in_process_scheduler(app)
    resources.reset()


def stop_in_process_scheduler(app, bound: float = 5.0) -> None:
    """Stop an app's in-process scheduler now, not at interpreter exit (atexit), when pytest has closed the streams
    its log lines would go to ("--- Logging error ---"); bounded, so a job a test left blocked cannot hang teardown."""
    import atexit
    import threading

    leadership = app.extensions.get("scheduler")
    if leadership is None:
        return
    stopping = threading.Thread(target=leadership.stop, args=(True,), daemon=True)
    stopping.start()
    stopping.join(bound)
    if not stopping.is_alive():
        atexit.unregister(leadership.stop)


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def hung_listener() -> Iterator[HungListener]:
    listener = HungListener()
    yield listener
    listener.close()


@pytest.fixture
def gunicorn(tmp_path: Path, state_dir: Path):
    """Start gunicorn servers with ``gunicorn(env_extra..., args=[...])``; all are stopped after the test."""
    servers: list[Gunicorn] = []

    def start(args: list[str] | None = None, wait: bool = True, **env: str) -> Gunicorn:
        server = Gunicorn(base_env(state_dir, **env), tmp_path, args=args)
        servers.append(server)
        return server.start(wait=wait)

    yield start
    for server in servers:
        server.stop()
