"""Bounded staleness under real gunicorn: after a quiet spell, the first probe tells the dependency's state now.

Cron and Nagios probe every few minutes. Each probe must report the state at
that moment, not the state the worker found at its previous check: a result
older than HEALTH_CACHE_TTL + 2 x HEALTH_CHECK_TIMEOUT is never served. Each
worker refreshes its checks on a timer of one TTL, so the probe gets a result
within that bound from memory, without waiting for a check, even with a
dependency hung. Time is compressed: TTL 0.2-0.5 s, timeouts 0.25-1.5 s.
"""

from __future__ import annotations

import time

import pytest

from tests.support.private_services import PrivateRedis
from tests.support.servers import wait_until

TTL, TIMEOUT = 0.5, 0.25
MAX_AGE = TTL + 2 * TIMEOUT  # the documented bound on a served result's age
QUIET = MAX_AGE + 0.5  # a quiet spell longer than the bound


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path).start()
    yield server
    server.stop()


def quiet_spell(seconds: float) -> None:
    """Let ``seconds`` pass without probing the service: a bounded wait on the clock."""
    until = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() >= until, timeout=seconds + 5, interval=0.02, what="the quiet spell")


def probe(server) -> tuple[int, dict, float]:
    started = time.monotonic()
    status, _, body = server.get("/health", headers={"Connection": "close"})
    return status, body, time.monotonic() - started


def test_after_a_quiet_spell_the_first_probe_shows_an_outage_and_then_the_recovery(gunicorn, private_redis):
    server = gunicorn(REDIS_URL=f"redis://127.0.0.1:{private_redis.port}/0", HEALTH_CACHE_TTL=str(TTL),
                      HEALTH_CHECK_TIMEOUT=str(TIMEOUT), STATUS_CACHE_TTL=str(TTL), WEB_CONCURRENCY="1",
                      HEALTH_CRITICAL_COMPONENTS="cache,database")
    healthy = [probe(server) for _ in range(12)]  # one worker, so every probe meets the same cache
    assert all(status == 200 and body["components"]["cache"] == "available" for status, body, _ in healthy)

    private_redis.stop()
    quiet_spell(QUIET)
    status, body, took = probe(server)
    assert (status, body["components"]["cache"]) == (503, "unavailable"), body
    assert took < 2 * TIMEOUT + 0.5
    _, _, report = server.get("/status", headers={"Connection": "close"})
    cache = report["metrics"]["dependencies"]["cache"]
    assert cache["status"] == "unavailable" and cache["age_seconds"] <= MAX_AGE, cache

    private_redis.start()  # the same port
    quiet_spell(QUIET)
    status, body, took = probe(server)
    assert (status, body["components"]["cache"]) == (200, "available"), body
    assert took < 2 * TIMEOUT + 0.5


def test_with_redis_hung_the_first_probe_after_a_quiet_spell_answers_from_memory_without_waiting(gunicorn,
                                                                                                 hung_listener):
    """Each worker refreshes its checks on a timer: after a quiet spell past TTL + 2 x timeout, with Redis hung,
    the first probe says unavailable at once instead of waiting for a fresh check (a whole check timeout)."""
    ttl, timeout = 0.2, 1.5
    server = gunicorn(REDIS_URL=f"redis://127.0.0.1:{hung_listener.port}/0", HEALTH_CACHE_TTL=str(ttl),
                      HEALTH_CHECK_TIMEOUT=str(timeout), WEB_CONCURRENCY="1", HEALTH_CRITICAL_COMPONENTS="cache")
    wait_until(lambda: server.get("/health/ready")[2]["status"] != "starting", timeout=15,
               what="the worker's first checks (a timeout on the hung Redis)")
    quiet_spell(ttl + 2 * timeout + 0.5)  # nobody probes: results older than the bound would be refreshed on demand
    status, body, took = probe(server)
    assert (status, body["components"]["cache"]) == (503, "unavailable"), body
    assert took < timeout / 2, f"the probe took {took:.2f} s: it waited for a check"  # it used to take the timeout
    _, _, report = server.get("/status", headers={"Connection": "close"})
    cache = report["metrics"]["dependencies"]["cache"]
    assert "timed out" in cache["reason"] and cache["age_seconds"] <= ttl + 2 * timeout, cache  # within the bound


def test_each_worker_checks_redis_once_per_ttl_probed_or_not_and_probes_add_no_check(gunicorn, private_redis):
    """What the README says the timer costs: one check (SET, GET, DEL) per TTL per worker, and none per probe."""
    ttl, workers = 0.5, 2
    server = gunicorn(REDIS_URL=f"redis://127.0.0.1:{private_redis.port}/0", HEALTH_CACHE_TTL=str(ttl),
                      WEB_CONCURRENCY=str(workers), HEALTH_CRITICAL_COMPONENTS="cache,database")
    wait_until(lambda: server.stderr().count("is ready: its first checks are done") == workers, timeout=15,
               what="both workers' first checks, with no probe")
    redis = private_redis.client()

    def checks() -> int:  # the built-in jobs write nothing to Redis in the first 30 minutes
        return int(redis.info("commandstats").get("cmdstat_set", {}).get("calls", 0))

    before, began = checks(), time.monotonic()
    quiet_spell(3.0)
    idle, elapsed = checks() - before, time.monotonic() - began
    expected = workers * elapsed / ttl
    assert expected / 2 <= idle <= expected + 2 * workers, (idle, expected)  # nobody probed, every worker checked

    before, began = checks(), time.monotonic()
    for _ in range(100):
        assert probe(server)[0] == 200
    burst, elapsed = checks() - before, time.monotonic() - began
    assert burst <= workers * (elapsed / ttl + 2), (burst, elapsed)  # the 100 probes added no check of their own
