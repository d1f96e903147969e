"""The peer: py-healthcheck (PyPI ``py-healthcheck``, import ``healthcheck``) with the same checks.

Redis PING and PostgreSQL ``SELECT 1``, registered the way its README shows
(``app.add_url_rule(..., view_func=health.run)``), left at its default caching
(success_ttl=27 s, failed_ttl=9 s, no error_timeout).

* Redis: one ``redis.Redis.from_url(REDIS_URL)`` client per worker with redis-py's
  defaults (8.x: 5 s socket and connect timeouts, retries on).
* PostgreSQL: a new psycopg connection per check (connect_timeout=2, autocommit),
  the usual way such a check is written; with the default caching it runs at most
  once per 27 s per worker.

    gunicorn -k gthread -w 2 --threads 4 --chdir bench peer_app:app
"""

from __future__ import annotations

import os

import psycopg
import redis
from flask import Flask
from healthcheck import HealthCheck

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")

app = Flask(__name__)
health = HealthCheck()
_redis = redis.Redis.from_url(REDIS_URL)


def redis_available():
    _redis.ping()
    return True, "redis ok"


def postgres_available():
    with psycopg.connect(DATABASE_URL, connect_timeout=2, autocommit=True) as connection:
        connection.execute("SELECT 1").fetchone()
    return True, "postgresql ok"


health.add_check(redis_available)
health.add_check(postgres_available)
app.add_url_rule("/health", "health", view_func=health.run)
