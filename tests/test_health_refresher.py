"""The background refresher: checks on a timer of one TTL, off the callers' path; callers answer from memory.

In-process, against the engine: time is compressed (TTL 0.1-0.2 s, timeouts 0.5-1.5 s).
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from common.helpers.health import ComponentCheck, HealthEngine, Status
from common.helpers.health.refresher import Refresher
from tests.support.servers import wait_until


class GatedCheck(ComponentCheck):
    """Available after ``delay`` seconds (0: at once); counts calls and the most ever running at once."""

    backend = "test"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls = 0
        self.running = 0
        self.most_at_once = 0
        self.release = threading.Event()
        self._lock = threading.Lock()

    def check(self) -> None:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            if self.delay:
                self.release.wait(self.delay)
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def refreshers():
    started: list[Refresher] = []

    def start(engine: HealthEngine, **kwargs) -> Refresher:
        refresher = Refresher(engine, **kwargs)
        started.append(refresher)
        assert refresher.start()
        return refresher

    yield start
    for refresher in started:
        refresher.stop()


def quiet_spell(seconds: float) -> None:
    """Let ``seconds`` pass without asking the engine anything: a bounded wait on the clock."""
    until = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() >= until, timeout=seconds + 2, interval=0.01, what="the quiet spell")


def test_the_refresher_checks_once_per_ttl_with_nobody_asking_and_callers_never_start_a_check(refreshers):
    check = GatedCheck()
    engine = HealthEngine(timeout=0.5, cache_ttl=0.2)
    engine.register("c", check)
    refresher = refreshers(engine)
    assert refresher.first_round.wait(2)
    began, calls_before = time.monotonic(), check.calls
    wait_until(lambda: check.calls >= calls_before + 3, timeout=3, what="three rounds with no caller")
    for _ in range(200):  # a burst of callers: answered from memory, no check of their own
        assert engine.run()["c"].status is Status.AVAILABLE
    elapsed = time.monotonic() - began
    assert check.calls - calls_before <= elapsed / 0.2 + 2, (check.calls, elapsed)  # one per TTL, not one per caller
    assert engine.run()["c"].age() <= engine.max_age


def test_with_a_hung_dependency_a_caller_after_a_quiet_spell_answers_from_memory_and_does_not_wait(refreshers):
    """A quiet spell past TTL + 2 x timeout used to make the next caller wait a whole check timeout."""
    check = GatedCheck()
    engine = HealthEngine(timeout=1.0, cache_ttl=0.2)
    engine.register("c", check)
    refreshers(engine).first_round.wait(2)
    check.delay = 60  # the dependency hangs from now on
    wait_until(lambda: engine.run()["c"].status is Status.UNAVAILABLE, timeout=10, what="the hang reported")
    quiet_spell(engine.max_age + 0.3)  # longer than the bound on a result's age: nobody asks meanwhile
    began = time.monotonic()
    result = engine.run()["c"]
    took = time.monotonic() - began
    assert result.status is Status.UNAVAILABLE and "timed out" in result.reason, result
    assert took < engine.timeout / 2, f"the caller waited {took:.3f} s for a check"  # it used to wait 1 s
    assert result.age() <= engine.max_age  # and the answer is within the bound all the same
    check.release.set()


def test_a_check_slower_than_the_ttl_never_runs_twice_at_once(refreshers):
    check = GatedCheck(delay=0.35)  # over three TTLs, within the timeout
    engine = HealthEngine(timeout=1.0, cache_ttl=0.1)
    engine.register("c", check)
    refreshers(engine)
    wait_until(lambda: check.calls >= 4, timeout=5, what="four slow checks")
    assert check.most_at_once == 1


def test_a_check_still_hung_past_its_deadline_gets_no_second_run_and_reads_still_hung(refreshers):
    check = GatedCheck(delay=60)  # hung from the start
    engine = HealthEngine(timeout=0.3, cache_ttl=0.1)
    engine.register("c", check)
    refreshers(engine)
    wait_until(lambda: "still hung" in (engine.run()["c"].reason or ""), timeout=5, what="'still hung'")
    quiet_spell(0.5)  # several rounds while the first checks still hang
    assert check.calls == 2  # the first check and the one retry of its missed deadline (booting), then none
    assert engine.run()["c"].age() <= engine.max_age  # each round is a fresh observation that it still hangs
    check.release.set()


def test_the_first_round_is_reported_once_every_component_has_a_result(refreshers):
    fast, slow = GatedCheck(), GatedCheck(delay=0.4)
    engine = HealthEngine(timeout=1.0, cache_ttl=0.1)
    engine.register("fast", fast)
    engine.register("slow", slow)
    reports: list[float] = []
    began = time.monotonic()
    refresher = refreshers(engine, on_first_round=lambda: reports.append(time.monotonic() - began))
    assert refresher.first_round.wait(3)
    wait_until(lambda: slow.calls >= 3, timeout=5, what="later rounds")
    assert len(reports) == 1 and reports[0] >= 0.4 - 0.02  # after the slow one's first result, and only once


def test_a_forked_child_does_not_count_on_its_parents_refresher(refreshers):
    """Threads do not survive a fork: the child's engine refreshes on demand until a refresher starts there."""
    engine = HealthEngine(timeout=0.5, cache_ttl=0.2)
    engine.register("c", GatedCheck())
    refresher = refreshers(engine)
    assert refresher.running and engine.refreshed_in_background
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, then leave at once (no pytest teardown here)
        os.write(write, b"1" if (refresher.running or engine.refreshed_in_background) else b"0")
        os._exit(0)
    os.close(write)
    answer = os.read(read, 1)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"0"


def test_stop_ends_the_thread_and_callers_refresh_on_demand_again():
    check = GatedCheck()
    engine = HealthEngine(timeout=0.5, cache_ttl=0.1)
    engine.register("c", check)
    refresher = Refresher(engine)
    refresher.start()
    assert refresher.first_round.wait(2)
    refresher.stop()
    assert not refresher.running and not engine.refreshed_in_background
    calls = check.calls
    quiet_spell(0.3)
    assert check.calls == calls  # no more rounds
    engine.run()
    assert check.calls == calls + 1  # a caller past the TTL refreshes it, as without a refresher


def test_nothing_starts_with_caching_off():
    engine = HealthEngine(timeout=0.5, cache_ttl=0)
    engine.register("c", GatedCheck())
    assert Refresher(engine).start() is False and not engine.refreshed_in_background


class LateOnceCheck(GatedCheck):
    """Its first run misses the deadline (a booting worker short of CPU), every later run answers at once."""

    def check(self) -> None:
        self.delay = 0.8 if self.calls == 0 else 0.0
        super().check()


def test_a_first_check_that_misses_its_deadline_while_the_process_boots_is_retried_not_reported(refreshers):
    """A new worker's first check runs while every worker imports its code: one late answer is no outage."""
    check = LateOnceCheck()
    engine = HealthEngine(timeout=0.4, cache_ttl=0.5)
    engine.register("c", check)
    assert refreshers(engine).first_round.wait(3)
    result = engine.run()["c"]
    assert result.status is Status.AVAILABLE, result.reason
    assert check.calls == 2  # the late one and its retry
    check.release.set()
