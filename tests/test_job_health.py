"""The job-health table of worker_service/scheduler/job_health.py, one test per row, at an injected ``now``.

Rows are tried top to bottom and the first that matches wins, so each test also shows which row beats the next.
"""

from __future__ import annotations

import dataclasses

from worker_service.scheduler.job_health import WARNING_WINDOW_RUNS, JobState, judge
from worker_service.state.records import JobDefinition, JobRecord

NOW = 1_800_000_000.0  # one fixed instant: the rules read no clock
THRESHOLD = 3  # JOB_FAILURE_THRESHOLD
GRACE = 60.0  # JOB_OVERDUE_GRACE


def job(*, next_run_in: float | None = 30.0, **definition: object) -> JobDefinition:
    """A published interval job, next due ``next_run_in`` seconds after NOW."""
    values = dict(id="tick", name="Tick", trigger="interval[0:01:00]",
                  next_run_time=None if next_run_in is None else NOW + next_run_in, misfire_grace_time=None,
                  max_instances=1, executor="default", paused=False, critical=False, max_runtime=120.0)
    values.update(definition)
    return JobDefinition(**values)


def record(definition: JobDefinition | None = None, **stats: object) -> JobRecord:
    """A job that has run 20 times, the last one a success 30 s ago, unless ``stats`` say otherwise."""
    values = dict(success_count=20, last_run_at=NOW - 30, last_outcome="success", last_success_at=NOW - 30)
    values.update(stats)
    return JobRecord(definition=definition or job(), **values)


def verdict(rec: JobRecord) -> tuple[JobState, str | None]:
    health = judge(rec, NOW, THRESHOLD, GRACE)
    return health.state, health.reason


def test_quarantined_is_unhealthy_before_anything_else_even_paused():
    state, reason = verdict(record(job(paused=True), quarantined_at=NOW - 5, consecutive_crashes=3))
    assert state is JobState.UNHEALTHY
    assert reason.startswith("quarantined: its worker died under it 3 times in a row")


def test_paused_is_paused_even_with_failures_and_overdue():
    state, reason = verdict(record(job(paused=True, next_run_in=-3600), consecutive_failures=THRESHOLD,
                                   last_outcome="error"))
    assert (state, reason) == (JobState.PAUSED, "paused")


def test_a_run_going_longer_than_max_runtime_is_unhealthy_and_one_within_it_is_not():
    too_long = record(job(max_runtime=120.0), running_count=1, running_since=NOW - 121)
    assert verdict(too_long) == (JobState.UNHEALTHY, "running too long: for 121 s, over max_runtime 120 s")
    within = record(job(max_runtime=120.0), running_count=1, running_since=NOW - 119)
    assert verdict(within)[0] is JobState.HEALTHY


def test_threshold_consecutive_failures_are_unhealthy_one_fewer_is_a_warning():
    failing = dict(error_count=THRESHOLD, last_outcome="error", last_error_type="TimeoutError")
    assert verdict(record(consecutive_failures=THRESHOLD, **failing)) == (
        JobState.UNHEALTHY, f"{THRESHOLD} consecutive failures (last: TimeoutError)")
    assert verdict(record(consecutive_failures=THRESHOLD - 1, **failing))[0] is JobState.WARNING


def test_overdue_past_the_grace_is_unhealthy_and_at_the_grace_is_not():
    assert verdict(record(job(next_run_in=-(GRACE + 1)))) == (JobState.UNHEALTHY, "overdue: next run was due 61 s ago")
    assert verdict(record(job(next_run_in=-GRACE)))[0] is JobState.HEALTHY


def test_a_longer_misfire_grace_time_extends_the_overdue_grace():
    definition = job(next_run_in=-(GRACE + 30), misfire_grace_time=300)
    assert verdict(record(definition))[0] is JobState.HEALTHY
    assert verdict(record(job(next_run_in=-301, misfire_grace_time=300)))[0] is JobState.UNHEALTHY


def test_a_job_that_has_not_run_yet_is_pending():
    fresh = record(success_count=0, last_run_at=None, last_outcome=None, last_success_at=None)
    assert verdict(fresh) == (JobState.PENDING, "not run yet")
    assert verdict(dataclasses.replace(fresh, missed_count=1))[0] is not JobState.PENDING  # a miss is news


def test_a_last_run_that_failed_below_the_threshold_is_a_warning():
    state, reason = verdict(record(error_count=1, consecutive_failures=1, last_outcome="error",
                                   last_error_type="ValueError"))
    assert (state, reason) == (JobState.WARNING, "last run failed: ValueError (1 in a row)")


def test_a_run_lost_with_its_leader_is_a_warning_like_a_crash_with_its_own_reason():
    """Fleet: a new leader took over from a host that may still be alive; the run's outcome is unknown."""
    lost = dict(error_count=1, consecutive_failures=1, last_outcome="error", last_problem="lost", runs_since_problem=0,
                last_error_type="LeaderLost")
    assert verdict(record(**lost)) == (JobState.WARNING, "last run lost: its leader lost the scheduler while it ran;"
                                                         " it may have finished on the old leader's host (1 in a row)")
    crashed = dict(lost, last_problem="crashed", last_error_type="WorkerDied")
    assert verdict(record(**crashed)) == (JobState.WARNING, "last run failed: its worker died while it ran (1 in a row)")
    after = record(runs_since_problem=2, last_problem="lost", error_count=1)
    assert verdict(after) == (JobState.WARNING, "a run lost with its leader (it may have finished on the old leader's"
                                                f" host) within the last {WARNING_WINDOW_RUNS} runs")
    in_a_row = record(**dict(lost, consecutive_failures=THRESHOLD))
    assert verdict(in_a_row) == (JobState.UNHEALTHY, f"{THRESHOLD} consecutive failures (last: its leader lost the"
                                                     " scheduler while it ran; it may have finished on the old leader's"
                                                     " host)")


def test_a_problem_within_the_warning_window_is_a_warning_that_names_it_and_then_ages_out():
    recent = record(runs_since_problem=WARNING_WINDOW_RUNS - 1, last_problem="missed", missed_count=1)
    assert verdict(recent) == (
        JobState.WARNING, f"a missed run (later than its misfire grace time) within the last {WARNING_WINDOW_RUNS} runs")
    aged = dataclasses.replace(recent, runs_since_problem=WARNING_WINDOW_RUNS)
    assert verdict(aged) == (JobState.HEALTHY, None)


def test_otherwise_healthy_with_no_reason():
    assert verdict(record()) == (JobState.HEALTHY, None)


def test_slots_no_process_ran_are_a_warning_that_says_how_many_and_when():
    gap = dict(missed_count=5, runs_since_problem=0, last_problem="no_scheduler", gap_missed=5, gap_from=NOW - 8,
               gap_to=NOW - 4)
    state, reason = verdict(record(**gap))
    # NOW is 2027-01-15 08:00:00 UTC
    assert (state, reason) == (JobState.WARNING, "5 runs missed at 07:59:52–07:59:56 UTC while no scheduler ran")
    assert verdict(record(**{**gap, "runs_since_problem": WARNING_WINDOW_RUNS}))[0] is JobState.HEALTHY
    yesterday = dict(gap, gap_missed=1, gap_from=NOW - 86400, gap_to=NOW - 86400)
    assert verdict(record(**yesterday))[1] == "1 run missed at 2027-01-14 08:00:00 UTC while no scheduler ran"
