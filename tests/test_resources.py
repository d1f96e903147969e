"""One set of resources per process: the gunicorn worker's scheduler, its app and its jobs share it."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from tests.support.servers import wait_until
from worker_service import create_app, resources, runtime
from worker_service.gunicorn import hooks as gunicorn_hooks
from worker_service.scheduler import UNDER_GUNICORN


@pytest.fixture
def fresh(monkeypatch, state_dir):
    """The process has no resources yet, its environment names the test's state directory; forgotten after."""
    monkeypatch.setenv("WORKER_STATE_DIR", str(state_dir))
    resources.reset()
    yield
    resources.reset()


def test_a_worker_after_post_fork_serves_its_app_on_the_leaders_store_and_settings(fresh, monkeypatch):
    monkeypatch.setenv(UNDER_GUNICORN, "1")  # as gunicorn.conf.py sets it in the master
    monkeypatch.setattr(gunicorn_hooks, "_leadership", None)  # the module's state is put back after the test
    worker = SimpleNamespace(sockets=[], cfg=SimpleNamespace(graceful_timeout=2, workers=1))
    gunicorn_hooks.post_fork(None, worker)
    leadership = gunicorn_hooks._leadership
    try:
        app = create_app()  # what wsgi.py does next in the same worker
        wait_until(lambda: leadership.is_leader, timeout=10, what="the worker to lead")
        assert app.extensions["store"] is leadership._store
        assert app.extensions["resources"].settings is leadership._settings
        assert app.extensions["resources"] is resources.current()
        assert runtime.store() is app.extensions["store"] and runtime.settings() is leadership._settings
    finally:
        gunicorn_hooks.worker_exit(None, worker)
    assert not leadership.is_leader


def test_threads_asking_at_once_get_one_set(fresh):
    start = threading.Barrier(8)
    seen: list[resources.Resources] = []

    def ask() -> None:
        start.wait(timeout=10)
        seen.append(resources.current())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(seen) == 8 and all(found is seen[0] for found in seen)


def test_an_app_built_for_the_same_settings_reuses_the_process_set_and_other_settings_replace_it(fresh, state_dir):
    first = create_app({"WORKER_STATE_DIR": str(state_dir)})
    again = create_app({"WORKER_STATE_DIR": str(state_dir)})
    assert again.extensions["store"] is first.extensions["store"]
    other = create_app({"WORKER_STATE_DIR": str(state_dir), "SERVICE_NAME": "other"})
    assert other.extensions["resources"] is resources.current() is not first.extensions["resources"]
    assert runtime.settings()["SERVICE_NAME"] == "other" and runtime.cache() is other.extensions["cache"]


def test_an_installed_set_is_what_jobs_and_the_next_app_see(fresh, state_dir):
    installed = resources.install(resources.build({**resources.current().settings, "SERVICE_NAME": "installed"}))
    assert runtime.settings()["SERVICE_NAME"] == "installed" and runtime.database() is installed.database
    assert create_app().extensions["resources"] is installed


def test_the_test_factory_gives_each_app_its_own_set(make_app):
    first, second = make_app(), make_app(SERVICE_NAME="second")
    assert first.extensions["store"] is not second.extensions["store"]
    assert runtime.store() is second.extensions["store"]
