"""The per-job families of /metrics, as text, each job's lines reused while the job is unchanged.

With 1,000 jobs /metrics holds ~13,000 job samples. Building them as
prometheus_client families and formatting them with ``generate_latest`` on
every scrape cost 130-440 ms, yet between two scrapes only the jobs that ran
change. Each job's lines are formatted once per distinct (record, verdict),
family by family, and the families are joined per scrape. The format is
prometheus_client's text format 0.0.4, written here with its own number
formatting (``floatToGoString``) and label escaping rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from prometheus_client.utils import floatToGoString

from ..scheduler.job_health import JobHealth, JobState
from ..state.records import JobRecord

PREFIX = "worker_service"

# (name as exposed, type, help), in output order.
FAMILIES = (
    (f"{PREFIX}_job_runs_total", "counter", "Job runs by outcome."),
    (f"{PREFIX}_job_duration_seconds", "summary", "Duration of finished runs."),
    (f"{PREFIX}_job_last_success_timestamp_seconds", "gauge", "Unix time of the job's last successful run."),
    (f"{PREFIX}_job_next_run_timestamp_seconds", "gauge", "Unix time of the next run."),
    (f"{PREFIX}_job_consecutive_failures", "gauge", "Failures since the last success."),
    (f"{PREFIX}_job_health", "gauge", "1 for the job's current health state, 0 for the others."),
)
_HEADERS = tuple(f"# HELP {name} {text}\n# TYPE {name} {kind}\n" for name, kind, text in FAMILIES)
_OUTCOMES = ("success", "error", "missed", "max_instances")


def _label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class JobInputs(NamedTuple):
    """Everything a job's lines are made of, and nothing else: the memo's key, so it can never go stale."""

    job: str
    critical: bool
    next_run_time: float | None
    success: int
    error: int
    missed: int
    max_instances: int
    runs: int
    duration_sum: float
    last_success_at: float | None
    consecutive_failures: int
    state: JobState

    @classmethod
    def of(cls, record: JobRecord, verdict: JobHealth) -> JobInputs:
        """Pick them out of a record and its verdict."""
        return cls(record.id, record.definition.critical, record.definition.next_run_time, record.success_count,
                   record.error_count, record.missed_count, record.max_instances_count, record.runs,
                   record.duration_sum, record.last_success_at, record.consecutive_failures, verdict.state)


def job_lines(inputs: JobInputs) -> tuple[str, ...]:
    """One job's lines of each family in :data:`FAMILIES` (labels in name order, as prometheus_client writes them)."""
    job = f'job="{_label(inputs.job)}"'
    counts = (inputs.success, inputs.error, inputs.missed, inputs.max_instances)
    runs = "".join(f'{PREFIX}_job_runs_total{{{job},outcome="{outcome}"}} {floatToGoString(count)}\n'
                   for outcome, count in zip(_OUTCOMES, counts, strict=True))
    duration = (f"{PREFIX}_job_duration_seconds_count{{{job}}} {floatToGoString(inputs.runs)}\n"
                f"{PREFIX}_job_duration_seconds_sum{{{job}}} {floatToGoString(inputs.duration_sum)}\n")
    last = inputs.last_success_at
    last_success = "" if last is None else f"{PREFIX}_job_last_success_timestamp_seconds{{{job}}} {floatToGoString(last)}\n"
    upcoming = inputs.next_run_time
    next_run = "" if upcoming is None else f"{PREFIX}_job_next_run_timestamp_seconds{{{job}}} {floatToGoString(upcoming)}\n"
    failures = f"{PREFIX}_job_consecutive_failures{{{job}}} {floatToGoString(inputs.consecutive_failures)}\n"
    critical = "true" if inputs.critical else "false"
    health = "".join(f'{PREFIX}_job_health{{critical="{critical}",{job},state="{state.value}"}} '
                     f'{"1.0" if inputs.state is state else "0.0"}\n' for state in JobState)
    return runs, duration, last_success, next_run, failures, health


class JobSeries:
    """Renders the job families for a list of (record, verdict), memoized per job."""

    def __init__(self) -> None:
        self._memo: dict[JobInputs, tuple[str, ...]] = {}

    def render(self, records: Sequence[JobRecord], verdicts: Sequence[JobHealth]) -> str:
        """The text of every job family, headers included (an empty family keeps its headers)."""
        previous, memo = self._memo, {}
        for record, verdict in zip(records, verdicts, strict=True):
            key = JobInputs.of(record, verdict)
            memo[key] = previous.get(key) or memo.get(key) or job_lines(key)
        self._memo = memo  # the current jobs only
        per_job = list(memo.values())
        return "".join(header + "".join(lines[index] for lines in per_job)
                       for index, header in enumerate(_HEADERS))
