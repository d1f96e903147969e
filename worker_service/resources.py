"""The process's resources: settings, cache, database, state store, the scheduler election and lease, one set per process.

Under gunicorn, ``post_fork`` needs the store and the election before the
Flask app is loaded, and jobs run in scheduler threads outside any request.
Two builders meant two stores on one SQLite file in one process, and the
second one's open/close of the file dropped the first one's POSIX locks. So
the set is built once, under a lock, and everything takes it from here:
``post_fork`` (through :func:`current`), ``create_app`` (through
:func:`for_app`) and jobs (through :mod:`worker_service.runtime`).

Objects built before a fork (``--preload``) stay usable in the child: each
one opens its connections per process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .cache import Cache, build_cache
from .config import fleet_mode, load_settings
from .database import Database, build_database
from .logging_setup import configure_logging
from .scheduler.election import FileLockElection, LeaderElection
from .scheduler.lease import FleetLease, HostOnlyLease, LeaseTiming, SchedulerLease
from .state import StateStore
from .state.setup import build_store

if TYPE_CHECKING:
    from flask import Flask

LOCK_FILE = "scheduler.lock"  # in WORKER_STATE_DIR: the host-local election's lock


@dataclass(frozen=True)
class Coordination:
    """Who may run the scheduler and how its writes are fenced: one place that decides "fleet" and "who leads".

    One host: the host lock alone picks the leader (``lease`` a :class:`HostOnlyLease`).
    A fleet (``is_fleet``, ``STATE_DATABASE_URL``): the host lock picks each host's
    candidate, and the lease in the shared database the one leader among them.
    """

    is_fleet: bool
    election: LeaderElection
    lease: SchedulerLease = field(default_factory=HostOnlyLease)


@dataclass(frozen=True)
class Resources:
    """Everything the process shares between the app, the scheduler and the jobs."""

    settings: dict[str, Any]
    cache: Cache
    database: Database
    store: StateStore
    coordination: Coordination


_current: Resources | None = None
_lock = threading.RLock()


def coordination(settings: Mapping[str, Any]) -> tuple[StateStore, Coordination]:
    """The state store and the coordination (election, lease) the settings ask for: the one place choosing them.

    Without ``STATE_DATABASE_URL``: SQLite in ``WORKER_STATE_DIR`` and the
    host lock alone. With it: the PostgreSQL store shared by every host, the
    host lock to pick each host's candidate, and the lease in that same
    database to pick the one leader among the candidates. They are chosen
    together because the election must cover every process that writes the
    store, and the leader writes it fenced by the lease's epoch.
    """
    store = build_store(settings)
    election = FileLockElection(os.path.join(settings["WORKER_STATE_DIR"], LOCK_FILE))
    if not fleet_mode(settings):
        return store, Coordination(is_fleet=False, election=election)
    from .state.pg_lease import PostgresLease

    timing = LeaseTiming.from_settings(dict(settings))
    backend = PostgresLease(store, timing.ttl, max_skew=timing.max_skew)
    return store, Coordination(is_fleet=True, election=election,
                               lease=FleetLease(backend, store, timing))  # type: ignore[arg-type]


def build(settings: dict[str, Any]) -> Resources:
    """Build a new set from validated settings (logging first, so building can log); install nothing."""
    configure_logging(settings["LOG_LEVEL"])
    store, chosen = coordination(settings)
    return Resources(settings=settings, cache=build_cache(settings), database=build_database(settings),
                     store=store, coordination=chosen)


def current() -> Resources:
    """The process's resources, built from the environment on first use.

    Raises :class:`worker_service.config.ConfigError` when a setting is invalid.
    """
    global _current
    with _lock:
        if _current is None:
            _current = build(load_settings())
        return _current


def for_app(overrides: Mapping[str, Any] | None = None) -> Resources:
    """The resources ``create_app(overrides)`` serves: the process's own, or a new set for other settings (tests).

    Without overrides this is :func:`current` (under gunicorn, the set
    ``post_fork`` built). With overrides, the process's set is kept if its
    settings are the same, else a set built from the environment plus the
    overrides replaces it, so jobs in this process use the app's resources.
    """
    with _lock:
        if overrides is None:
            return current()
        settings = load_settings(overrides=overrides)
        if _current is not None and _current.settings == settings:
            return _current
        return install(build(settings))


def install(resources: Resources) -> Resources:
    """Make ``resources`` the process's set and return it (tests, :func:`for_app`)."""
    global _current
    with _lock:
        _current = resources
    return resources


def init_app(app: Flask, resources: Resources) -> None:
    """Attach ``resources`` to the app: ``app.extensions['resources']``, and ``'cache'``, ``'database'``, ``'store'``."""
    app.extensions["resources"] = resources
    app.extensions["cache"] = resources.cache
    app.extensions["database"] = resources.database
    app.extensions["store"] = resources.store


def reset() -> None:
    """Forget the process's set (tests); the next :func:`current` builds a new one."""
    global _current
    with _lock:
        _current = None
