"""GET /jobs?state=&q=&offset=&limit=&runs=: one page of the jobs, problems first, as the status page shows them.

The whole list at 5,000 jobs is megabytes; a screen shows twenty rows. A
paged request filters and orders every job of one judged snapshot (at most
``STATUS_CACHE_TTL`` old, the one the page's overview uses) and answers one
page of them, each with the figures of its row and, with ``runs=N``, its N
newest runs (one store read for the page).

Order: unhealthy, then warning, then the rest; critical jobs first within each;
then the published order. ``q`` keeps the jobs whose id, name, state, reason
(or the word ``critical``) contain every whitespace-separated term, ignoring
case. The body holds no time relative to ``now`` (the page computes "3 min
ago" itself), so its ETag holds while nothing changed and a refresh is a 304.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from common.helpers.health import format_timestamp, redact

from ..reporting.snapshot import StoreSnapshot
from ..scheduler.job_health import JobHealth
from ..state import StateReader, StoreUnavailable
from ..state.records import JobRecord, OperatorPause, RunRecord
from ..vocabulary import JobState
from .payloads import job_summary

DEFAULT_LIMIT, MAX_LIMIT = 50, 200
MAX_RUNS = 20  # runs per job a page may ask for (the page's strip)
MAX_QUERY = 200  # characters of q
_RANK = {JobState.UNHEALTHY: 0, JobState.WARNING: 1}
_STATES = {state.value for state in JobState}
PAGE_PARAMETERS = ("state", "q", "offset", "limit", "runs")


class BadPage(ValueError):
    """A query parameter of a paged listing is not what it must be (the message says which)."""


@dataclasses.dataclass(frozen=True)
class PageQuery:
    """What a paged request asks for."""

    states: frozenset[str] = frozenset()
    terms: tuple[str, ...] = ()
    offset: int = 0
    limit: int = DEFAULT_LIMIT
    runs: int = 0

    @classmethod
    def parse(cls, args: Mapping[str, str]) -> PageQuery:
        """The query from request arguments; :class:`BadPage` for a value out of bounds."""
        raw_states = args.get("state") or ""
        words = raw_states.split(",") if raw_states else []
        states = frozenset(words)
        if not set(words) <= _STATES:
            raise BadPage(f"state must be job states separated by commas ({', '.join(sorted(_STATES))})")
        query = args.get("q") or ""
        if len(query) > MAX_QUERY:
            raise BadPage(f"q is at most {MAX_QUERY} characters")
        return cls(states=states, terms=tuple(query.lower().split()),
                   offset=_whole(args, "offset", 0, 10**9, 0), limit=_whole(args, "limit", 1, MAX_LIMIT, DEFAULT_LIMIT),
                   runs=_whole(args, "runs", 0, MAX_RUNS, 0))


def _whole(args: Mapping[str, str], name: str, low: int, high: int, default: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise BadPage(f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def is_paged(args: Mapping[str, str]) -> bool:
    """Whether a GET /jobs asks for a page (any of its parameters); without one it answers every job, as always."""
    return any(name in args for name in PAGE_PARAMETERS)


def _matches(record: JobRecord, verdict: JobHealth, query: PageQuery) -> bool:
    if query.states and verdict.state.value not in query.states:
        return False
    if not query.terms:
        return True
    definition = record.definition
    hay = " ".join((record.id, definition.name, verdict.state.value, verdict.reason or "",
                    "critical" if definition.critical else "")).lower()
    return all(term in hay for term in query.terms)


RecentRuns = Callable[[Sequence[str], int], dict[str, list[RunRecord]]]


def job_page(snapshot: StoreSnapshot, query: PageQuery, pauses: Mapping[str, OperatorPause],
             recent: RecentRuns) -> dict[str, Any]:
    """The page's body; ``recent(job_ids, n)`` reads the runs (the store's ``recent_runs``) when ``query.runs``."""
    chosen = [(index, record, verdict)
              for index, (record, verdict) in enumerate(zip(snapshot.records, snapshot.verdicts, strict=True))
              if _matches(record, verdict, query)]
    chosen.sort(key=lambda item: (_RANK.get(item[2].state, 2), not item[1].definition.critical, item[0]))
    shown = chosen[query.offset:query.offset + query.limit]
    runs: dict[str, list[RunRecord]] = recent([r.id for _, r, _ in shown], query.runs) if query.runs and shown else {}
    jobs = []
    for _, record, verdict in shown:
        entry = {**job_summary(record, verdict, pauses.get(record.id)), "figures": figures(record)}
        if query.runs:
            entry["recent_runs"] = [recent_run(run) for run in runs.get(record.id, [])]
        jobs.append(entry)
    return {"jobs": jobs, "total": len(snapshot.records), "matched": len(chosen), "offset": query.offset,
            "limit": query.limit, "timestamp": format_timestamp(snapshot.now)}


def read_job_page(snapshot: StoreSnapshot, store: StateReader, query: PageQuery) -> dict[str, Any]:
    """:func:`job_page` over ``snapshot`` with the store's pauses and runs; ``StoreUnavailable`` when unreadable."""
    if snapshot.error is not None:
        raise StoreUnavailable(snapshot.error)
    return job_page(snapshot, query, store.operator_pauses(), store.recent_runs)


def figures(record: JobRecord) -> dict[str, Any]:
    """A job's counts and durations, as its row shows them."""
    return {
        "success_count": record.success_count,
        "error_count": record.error_count,
        "missed_count": record.missed_count,
        "max_instances_count": record.max_instances_count,
        "consecutive_failures": record.consecutive_failures,
        "error_rate": round(100.0 * record.error_count / record.runs, 2) if record.runs else None,
        "avg_seconds": None if record.avg_duration is None else round(record.avg_duration, 6),
        "p95_seconds": None if record.duration_p95 is None else round(record.duration_p95, 6),
        "running_since": format_timestamp(record.running_since) if record.running_count else None,
        "crash_count": record.crash_count,
        "quarantined": record.quarantined_at is not None,
    }


def recent_run(run: RunRecord) -> dict[str, Any]:
    """One mark of a row's strip: when it finished, how long it took, its outcome and error (redacted)."""
    return {
        "finished_at": format_timestamp(run.at),
        "duration_seconds": None if run.duration is None else round(run.duration, 6),
        "outcome": run.outcome,
        "error": None if run.error_type is None else f"{run.error_type}: {redact(run.error_message or '')}"[:300],
    }
