"""The check engine in common.helpers.health: deadlines, caching, single-flight, status words."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from common.helpers.health import (
    ComponentCheck,
    HealthEngine,
    ServiceDegraded,
    ServiceUnavailable,
    Status,
    aggregate,
    format_timestamp,
    format_uptime,
    redact,
    register_secret,
)
from tests.support.servers import wait_until


class CountingCheck(ComponentCheck):
    backend = "test"

    def __init__(self, delay: float = 0.0, error: Exception | None = None) -> None:
        self.calls = 0
        self.delay = delay
        self.error = error
        self.release = threading.Event()
        self._lock = threading.Lock()

    def check(self) -> None:
        with self._lock:
            self.calls += 1
        if self.delay:
            self.release.wait(self.delay)
        if self.error:
            raise self.error


def test_concurrent_callers_share_one_in_flight_check():
    check = CountingCheck(delay=0.2)
    engine = HealthEngine(timeout=1.0, cache_ttl=0)
    engine.register("slow", check)
    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(lambda _: engine.run()["slow"].status, range(20)))
    assert results == [Status.AVAILABLE] * 20
    assert check.calls == 1


def test_results_are_cached_for_the_ttl_and_rechecked_after():
    check = CountingCheck()
    # A TTL wide enough for ten cached runs on a loaded host (a stall past it would start the second check early).
    engine = HealthEngine(timeout=1.0, cache_ttl=0.5)
    engine.register("c", check)
    first_check = time.monotonic()  # before the check: the TTL runs from its end
    for _ in range(10):
        engine.run()
    assert check.calls == 1
    wait_until(lambda: engine.run() and check.calls == 2, timeout=3, what="a second check after the TTL")
    assert time.monotonic() - first_check >= 0.5


def test_a_hung_check_answers_unavailable_at_the_deadline_and_is_not_started_again_while_hung():
    check = CountingCheck(delay=30)
    engine = HealthEngine(timeout=0.5, cache_ttl=0, max_abandoned=1)
    engine.register("hung", check)
    started = time.perf_counter()
    result = engine.run()["hung"]
    # One deadline (0.5 s) and overhead; never the hang (30 s), nor a confirmation's second deadline (1.0 s).
    assert time.perf_counter() - started < 2 * 0.5
    assert result.status is Status.UNAVAILABLE and "timed out" in result.reason
    for _ in range(5):
        assert engine.run()["hung"].status is Status.UNAVAILABLE
    assert check.calls <= 2  # one hung call, at most one abandoned retry
    check.release.set()


def test_typed_errors_map_to_statuses_and_unexpected_errors_to_unavailable():
    engine = HealthEngine(timeout=1.0, cache_ttl=0)
    engine.register("down", CountingCheck(error=ServiceUnavailable("refused")))
    engine.register("meh", CountingCheck(error=ServiceDegraded("slow replica")))
    engine.register("boom", CountingCheck(error=ZeroDivisionError("oops")))
    results = engine.run()
    assert (results["down"].status, results["down"].reason) == (Status.UNAVAILABLE, "refused")
    assert (results["meh"].status, results["meh"].reason) == (Status.DEGRADED, "slow replica")
    assert results["boom"].status is Status.UNAVAILABLE and "ZeroDivisionError" in results["boom"].reason


def test_overall_status_is_the_worst_critical_one_or_degraded_for_optional_failures():
    components = {"cache": Status.UNAVAILABLE, "database": Status.AVAILABLE, "scheduler": Status.AVAILABLE}
    assert aggregate(components, ["cache", "database", "scheduler"]) is Status.UNAVAILABLE
    assert aggregate(components, ["database", "scheduler"]) is Status.DEGRADED
    assert aggregate({**components, "cache": Status.AVAILABLE}, ["cache"]) is Status.AVAILABLE
    assert aggregate({**components, "cache": Status.DEGRADED}, ["cache"]) is Status.DEGRADED


def test_formats_match_the_seed():
    assert format_uptime(86420) == "1d 0h 0m"
    assert format_uptime(3725) == "0d 1h 2m"
    assert format_timestamp(0.123456) == "1970-01-01T00:00:00.123456Z"


def test_redaction_masks_url_passwords_tokens_and_registered_secrets():
    register_secret("canary-api-key-123")
    text = redact("redis://user:hunter22@host/0 Authorization: Bearer abc.def key=canary-api-key-123 eyJhbGciOi.eyJyb2xlIjo.sig")
    for secret in ("hunter22", "abc.def", "canary-api-key-123", "eyJhbGciOi"):
        assert secret not in text
    assert "redis://user:***@host/0" in text


def test_past_the_ttl_probes_get_the_last_result_at_once_while_a_refresh_runs():
    check = CountingCheck()
    # A grace wide enough for the refresh and its confirmation (2 x 0.5 s) to run while probes come every 20 ms.
    engine = HealthEngine(timeout=0.5, cache_ttl=0.1, stale_grace=2.5)
    engine.register("c", check)
    assert engine.run()["c"].status is Status.AVAILABLE
    check.delay = 30  # the dependency now hangs
    wait_until(lambda: engine.run() and check.calls == 2, timeout=2, what="a background refresh after the TTL")
    timings, statuses = [], []

    def probe():
        begun = time.perf_counter()
        statuses.append(engine.run()["c"].status)
        timings.append(time.perf_counter() - begun)
        return statuses[-1] is Status.UNAVAILABLE

    wait_until(probe, timeout=5, interval=0.02, what="the hung refresh to turn the component unavailable")
    # Under the 0.5 s a probe waiting on the refresh or its confirmation would take (the confirmation's own deadline).
    assert max(timings) < 0.4, f"a probe waited {max(timings):.3f} s"
    assert statuses[0] is Status.AVAILABLE  # the last result, served while the refresh hangs
    assert "timed out" in engine.run()["c"].reason
    check.release.set()


class FlakyCheck(ComponentCheck):
    """Answers ``outcomes`` in turn (``None``: available; a number: block that long, then available; an error: raise)."""

    backend = "test"

    def __init__(self, *outcomes) -> None:
        self.outcomes = list(outcomes)
        self.calls = 0
        self.release = threading.Event()

    def check(self) -> None:
        outcome = self.outcomes[min(self.calls, len(self.outcomes) - 1)]
        self.calls += 1
        if isinstance(outcome, Exception):
            raise outcome
        if outcome:
            self.release.wait(outcome)


def wait_on_the_clock(seconds: float) -> None:
    """Let ``seconds`` pass without probing (a quiet spell): a bounded wait on the clock, not a probe."""
    until = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() >= until, timeout=seconds + 2, interval=0.01, what="the quiet spell to pass")


def test_after_a_quiet_spell_the_first_probe_tells_the_state_now_for_a_failure_and_a_recovery():
    check = FlakyCheck(None, ServiceUnavailable("refused"), None)
    # A TTL wide enough for five cached runs on a loaded host (a stall past it would start the next check early).
    engine = HealthEngine(timeout=0.2, cache_ttl=0.3)  # default grace: 2 x timeout
    engine.register("c", check)
    for _ in range(5):
        assert engine.run()["c"].status is Status.AVAILABLE
    assert check.calls == 1
    wait_on_the_clock(0.3 + 2 * 0.2 + 0.05)  # longer than TTL + grace, nobody probing; the dependency goes down
    result = engine.run()["c"]
    assert (result.status, result.reason) == (Status.UNAVAILABLE, "refused")
    assert result.age() < 0.3  # checked for this probe: the last result would be over 0.75 s old
    wait_on_the_clock(0.3 + 2 * 0.2 + 0.05)  # and comes back
    assert engine.run()["c"].status is Status.AVAILABLE
    assert check.calls == 3


def test_inside_ttl_plus_grace_the_last_result_is_served_and_never_past_it():
    check = FlakyCheck(None, ServiceUnavailable("refused"))
    engine = HealthEngine(timeout=0.2, cache_ttl=0.1, stale_grace=0.3)
    engine.register("c", check)
    engine.run()
    ages = []

    def probe():
        result = engine.run()["c"]
        ages.append(result.age())
        return result.status is Status.UNAVAILABLE

    wait_until(probe, timeout=2, interval=0.01, what="the failure to show")
    assert max(ages) <= engine.max_age == 0.4


def test_a_single_missed_deadline_of_an_available_component_is_confirmed_before_it_is_reported():
    # The second check blocks past its deadline (a worker that had no CPU), the retry answers at once.
    # It blocks 2 x timeout: a caller late by up to 0.5 s after the deadline still finds it unfinished.
    check = FlakyCheck(None, 1.0, None)
    engine = HealthEngine(timeout=0.5, cache_ttl=0)
    engine.register("c", check)
    assert engine.run()["c"].status is Status.AVAILABLE
    started = time.monotonic()
    result = engine.run()["c"]
    elapsed = time.monotonic() - started
    assert result.status is Status.AVAILABLE, result.reason
    # One deadline, then the confirmation's answer: not its deadline too (2 x 0.5 s), nor the blocked check's end.
    assert check.calls == 3 and 0.5 - 0.02 <= elapsed < 2 * 0.5, elapsed
    check.release.set()


def test_a_real_hang_of_an_available_component_shows_once_its_confirmation_misses_too():
    check = FlakyCheck(None, 30)
    engine = HealthEngine(timeout=0.5, cache_ttl=0, max_abandoned=3)
    engine.register("c", check)
    assert engine.run()["c"].status is Status.AVAILABLE
    started = time.monotonic()
    result = engine.run()["c"]
    elapsed = time.monotonic() - started
    assert result.status is Status.UNAVAILABLE and "timed out" in result.reason
    # Two deadlines (1.0 s), not three (1.5 s).
    assert 2 * 0.5 - 0.02 <= elapsed < 2 * 0.5 + 0.4 and check.calls == 3, elapsed
    # Already unavailable: the next miss is reported at its first deadline (0.5 s), without a confirmation (1.0 s).
    started = time.monotonic()
    assert engine.run()["c"].status is Status.UNAVAILABLE
    elapsed = time.monotonic() - started
    assert elapsed < 0.5 + 0.4 and check.calls == 4, elapsed
    check.release.set()


def test_an_outright_failure_is_reported_at_once_without_a_retry():
    check = FlakyCheck(None, ServiceUnavailable("refused"))
    engine = HealthEngine(timeout=0.2, cache_ttl=0)
    engine.register("c", check)
    engine.run()
    assert engine.run()["c"].reason == "refused" and check.calls == 2
