"""The per-host families of /metrics: each host's runs in flight, threads, claims, claim latency and lost runs.

Labelled by the host name people read (``host``), as the lease holder's
series are. A host may have several rows at once: a reload makes a new
process while the old one finishes its runs, and an expired row stays for an
hour. So the rows of one label are added up (the maximum wait is the largest),
and a host's threads count only its rows that have not expired. Two machines
that share a host name (cloned VMs) share its series too: give hosts distinct
names. A process's counters start at 0 with it, so when the old row of a
reload goes, the sum falls: Prometheus's ``rate()`` reads that as a counter
reset, as it does when a process restarts.

On one host (SQLite) there are no claims: only the runs in flight and the
threads are exported, for the one host its heartbeat names; the claim
families are left out, as the lease's are.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily

from ..reporting.work_view import WorkView
from ..vocabulary import HostState
from .job_series import PREFIX


@dataclasses.dataclass
class _HostTotals:
    """One host label's rows, added up."""

    in_flight: int = 0
    threads: int = 0
    claims: int | None = None
    wait_sum: float = 0.0
    wait_max: float | None = None
    lost: int = 0


def _totals(work: WorkView) -> dict[str, _HostTotals]:
    totals: dict[str, _HostTotals] = {}
    for host in work.hosts:
        entry = totals.setdefault(host.host, _HostTotals())
        entry.in_flight += host.claimed
        if host.state is not HostState.EXPIRED:
            entry.threads += host.threads
        if host.claims is not None:  # a fleet's row: its claim counters
            entry.claims = (entry.claims or 0) + host.claims
            entry.wait_sum += host.claim_wait_sum or 0.0
            entry.lost += host.lost or 0
            if host.claim_wait_max is not None:
                entry.wait_max = max(entry.wait_max or 0.0, host.claim_wait_max)
    return totals


def host_families(work: WorkView, fleet: bool) -> Iterator[Metric]:
    """The host families (empty, with their headers, when the store could not be read); the claims' in a ``fleet``."""
    in_flight = GaugeMetricFamily(f"{PREFIX}_host_runs_in_flight", "Runs the host's processes hold now.",
                                  labels=["host"])
    threads = GaugeMetricFamily(f"{PREFIX}_host_threads", "Executor threads of the host's live processes "
                                "(JOB_EXECUTOR_THREADS).", labels=["host"])
    claims = CounterMetricFamily(f"{PREFIX}_claims", "Planned runs the host claimed (fleet mode).", labels=["host"])
    wait = SummaryMetricFamily(f"{PREFIX}_claim_wait_seconds", "Seconds the host's claimed runs waited between "
                               "planned and claimed, by the database's clock (fleet mode).", labels=["host"])
    wait_max = GaugeMetricFamily(f"{PREFIX}_claim_wait_seconds_max", "The longest wait of a run the host claimed, "
                                 "over its processes' rows (fleet mode).", labels=["host"])
    lost = CounterMetricFamily(f"{PREFIX}_runs_lost", "The host's runs settled lost: it died, froze or was cut off "
                               "while they ran (fleet mode).", labels=["host"])
    for name, total in sorted(_totals(work).items()):
        in_flight.add_metric([name], total.in_flight)
        threads.add_metric([name], total.threads)
        if total.claims is None:
            continue
        claims.add_metric([name], total.claims)
        wait.add_metric([name], count_value=total.claims, sum_value=round(total.wait_sum, 6))
        if total.wait_max is not None:
            wait_max.add_metric([name], round(total.wait_max, 6))
        lost.add_metric([name], total.lost)
    yield from (in_flight, threads)
    if fleet:
        yield from (claims, wait, wait_max, lost)
