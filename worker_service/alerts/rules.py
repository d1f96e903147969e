"""What each subject's alert state is now: the rules the monitor applies at each look.

An :class:`Observation` is a subject as seen now: its state word, whether
that state fires, and why. Jobs are judged by the service's own job policy
(the verdict /health and /status give), with the job's ``alert_after_failures``
as its failure threshold; components by their health checks; the metric rules
by their thresholds. Holding a metric rule for ``ALERT_HOLD`` and a job's
``alert_after_recoveries`` are the monitor's part: they need memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

import psutil

from ..state.alert_records import AlertState
from ..state.records import JobRecord, LeaseRecord, RunRecord
from .settings import AlertSettings

FAILED = frozenset({"error", "crashed", "killed", "lost"})
RATE_WINDOW = 20  # runs: a job's error rate is over its last 20 runs
RATE_MIN_RUNS = 4  # fewer finished runs than this say nothing of a rate


@dataclasses.dataclass(frozen=True)
class JobAlerting:
    """A job's own alert options from the jobs file."""

    alert: bool = True
    after_failures: int | None = None
    after_recoveries: int = 1


@dataclasses.dataclass(frozen=True)
class Observation:
    """One subject as seen now."""

    key: str
    kind: str
    subject: str
    state: str
    firing: bool
    reason: str | None
    held: bool = False  # a metric rule: its change must hold for ALERT_HOLD before it counts
    recoveries_needed: int = 1  # a job: runs without a problem before it resolves
    recoveries_seen: int | None = None


# (record, now, failure threshold) -> (state word, reason)
Judge = Callable[[JobRecord, float, int], tuple[str, "str | None"]]


def job_observations(settings: AlertSettings, records: list[JobRecord], options: Mapping[str, JobAlerting],
                     judge: Judge, now: float) -> list[Observation]:
    """Each alerting job's state: firing while unhealthy (or warning, with ``ALERT_ON=warning``)."""
    observed = []
    for record in records:
        job = options.get(record.definition.id, JobAlerting())
        if not job.alert:
            continue
        state, reason = judge(record, now, job.after_failures or settings.failure_threshold)
        # A job an operator paused stops paging at once (it runs no more, so it could never recover).
        recoveries = 0 if state == "paused" else job.after_recoveries
        observed.append(Observation(f"job:{record.definition.id}", "job", record.definition.id, state,
                                    state in settings.firing_states, reason,
                                    recoveries_needed=recoveries, recoveries_seen=record.runs_since_problem))
    return observed


def host_observations(settings: AlertSettings) -> list[Observation]:
    """Disk of ``STATUS_DISK_PATH`` and memory, against their thresholds (0: off); held."""
    observed = []
    if settings.disk_percent > 0:
        try:
            used = psutil.disk_usage(settings.disk_path).percent
        except OSError as error:
            used, reason = None, f"disk {settings.disk_path} cannot be read: {error.strerror}"
        if used is not None:
            reason = f"disk {settings.disk_path} is {used:.1f} % full (threshold {settings.disk_percent:g} %)"
        firing = used is not None and used >= settings.disk_percent
        observed.append(Observation("metric:disk", "metric", "disk", "warning" if firing else "healthy", firing, reason,
                                    held=True))
    if settings.memory_percent > 0:
        used = psutil.virtual_memory().percent
        firing = used >= settings.memory_percent
        observed.append(Observation("metric:memory", "metric", "memory", "warning" if firing else "healthy", firing,
                                    f"memory is {used:.1f} % used (threshold {settings.memory_percent:g} %)",
                                    held=True))
    return observed


def job_metric_observations(settings: AlertSettings, records: list[JobRecord], options: Mapping[str, JobAlerting],
                            runs_of: Callable[[JobRecord], list[RunRecord]]) -> list[Observation]:
    """The proactive rules of each job: p95 near its max_runtime, a high error rate, a crash before quarantine.

    A rule that does not apply now (the job is already unhealthy, it has too
    few runs) gives no observation: its last state stays.
    """
    observed = []
    for record in records:
        job_id, definition = record.definition.id, record.definition
        if not options.get(job_id, JobAlerting()).alert:
            continue
        threshold = options.get(job_id, JobAlerting()).after_failures or settings.failure_threshold
        if settings.duration_percent > 0 and definition.max_runtime and record.duration_p95 is not None:
            limit = definition.max_runtime * settings.duration_percent / 100
            firing = record.duration_p95 >= limit
            observed.append(Observation(
                job_metric_key("duration", job_id), "metric", job_id, "warning" if firing else "healthy", firing,
                f"p95 duration {record.duration_p95:.3g} s is {100 * record.duration_p95 / definition.max_runtime:.0f} %"
                f" of max_runtime {definition.max_runtime:g} s (threshold {settings.duration_percent:g} %)"))
        if settings.error_rate_percent > 0 and record.consecutive_failures < threshold:
            finished = [run for run in runs_of(record) if run.outcome in FAILED or run.outcome == "success"]
            # Proactive only: a window in which the job already reached its threshold is the job alert's business.
            if len(finished) >= RATE_MIN_RUNS and _longest_failure_streak(finished) < threshold:
                failed = sum(run.outcome in FAILED for run in finished)
                rate = 100 * failed / len(finished)
                firing = rate >= settings.error_rate_percent
                observed.append(Observation(
                    job_metric_key("error_rate", job_id), "metric", job_id, "warning" if firing else "healthy", firing,
                    f"{failed} of its last {len(finished)} runs failed ({rate:.0f} %, threshold "
                    f"{settings.error_rate_percent:g} %)"))
        if settings.crash_limit > 1 and record.quarantined_at is None:
            firing = record.consecutive_crashes >= settings.crash_limit - 1
            observed.append(Observation(
                job_metric_key("crashes", job_id), "metric", job_id, "warning" if firing else "healthy", firing,
                f"its worker died under it {record.consecutive_crashes} times in a row; quarantined at "
                f"{settings.crash_limit}"))
    return observed


JOB_METRIC_RULES = ("duration", "error_rate", "crashes")


def job_metric_key(rule: str, job_id: str) -> str:
    """The alert key of one of a job's :data:`JOB_METRIC_RULES`."""
    return f"metric:{rule}:{job_id}"


def orphaned_job_observations(states: Mapping[str, AlertState], records: list[JobRecord],
                              options: Mapping[str, JobAlerting]) -> list[Observation]:
    """Resolve the firing alerts of jobs that are gone from the jobs file or had ``alert = false`` set since.

    Nobody judges such a job any more, so without this its alert would stay
    firing for ever (and repeat, with ``ALERT_REPEAT``).
    """
    alerting = {record.definition.id for record in records if options.get(record.definition.id, JobAlerting()).alert}
    known = {record.definition.id for record in records}
    observed = []
    for key, state in states.items():
        per_job = key == f"job:{state.subject}" or any(key == job_metric_key(rule, state.subject)
                                                       for rule in JOB_METRIC_RULES)
        if not state.firing or not per_job or state.subject in alerting:
            continue
        if state.subject in known:
            word, reason = "not alerting", "alert = false was set for this job in the jobs file"
        else:
            word, reason = "removed", "the job is no longer in the jobs file"
        observed.append(Observation(key, state.kind, state.subject, word, False, reason))
    return observed


def _longest_failure_streak(runs: list[RunRecord]) -> int:
    longest = streak = 0
    for run in runs:
        streak = streak + 1 if run.outcome in FAILED else 0
        longest = max(longest, streak)
    return longest


def lease_observation(settings: AlertSettings, lease: LeaseRecord | None) -> Observation | None:
    """The fleet's lease, read by its leader: firing while it has less than a third of its TTL to spare.

    The leader renews every third of the TTL, so a healthy lease never has
    less than two thirds left; one with less than a third is a renewal late
    by a whole period (a slow or failing database): the next step is losing
    the lease. ``None`` on one host (no lease) or when the lease is not live.
    """
    if not settings.fleet or lease is None or not lease.live:
        return None
    spare = settings.lease_ttl / 3
    firing = lease.expires_in < spare
    return Observation("metric:lease", "metric", "lease", "warning" if firing else "healthy", firing,
                       f"the scheduler lease has {lease.expires_in:.1f} s to spare (alert under a third of "
                       f"SCHEDULER_LEASE_TTL, {spare:.1f} s)")


def scheduler_observation() -> Observation:
    """The leader itself: a scheduler runs (resolves the watchers' alert, :mod:`.watch`)."""
    return Observation("scheduler", "scheduler", "scheduler", "available", False, "a scheduler runs again")
