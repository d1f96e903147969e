"""The process's resources (settings, cache, database, state store), for code outside a request.

Jobs run in scheduler threads, and under gunicorn the scheduler may start in
``post_fork`` before the Flask app is loaded. So resources live here, one set
per process: ``create_app`` provides them through each module's
``init_app``, and anything missing is built from the environment on first use.
"""

from __future__ import annotations

import threading
from typing import Any, TypeVar

T = TypeVar("T")

_provided: dict[str, Any] = {}
_lock = threading.RLock()


def provide(name: str, value: T) -> T:
    """Make ``value`` the process's ``name`` resource and return it."""
    with _lock:
        _provided[name] = value
    return value


def _get(name: str) -> Any:
    with _lock:
        if name not in _provided:
            _provided[name] = _build(name)
        return _provided[name]


def _build(name: str) -> Any:
    if name == "settings":
        from .config import load_settings

        return load_settings()
    current = settings()
    if name == "cache":
        from .cache import build_cache

        return build_cache(current)
    if name == "database":
        from .database import build_database

        return build_database(current)
    if name == "store":
        from .state.setup import build_store

        return build_store(current)
    raise KeyError(name)


def settings() -> dict[str, Any]:
    """The validated settings."""
    return _get("settings")


def cache() -> Any:
    """The cache (:class:`worker_service.cache.Cache`)."""
    return _get("cache")


def database() -> Any:
    """The database (:class:`worker_service.database.Database`)."""
    return _get("database")


def store() -> Any:
    """The shared state store."""
    return _get("store")


def reset() -> None:
    """Forget every resource (tests)."""
    with _lock:
        _provided.clear()
