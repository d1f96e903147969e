"""Count the slots APScheduler folds into one run: the runs no process made while no scheduler ran.

After a freeze, a failover or a state store outage, every slot of a job that
came due meanwhile is due at once, and with ``coalesce`` (the default)
APScheduler runs only the last of them. It reports the others nowhere: no
MISSED event, so ``missed_count`` stayed 0 after a 13 s gap on a 1 s job.

When the run of a slot is submitted, the job's ``next_run_time`` is still the
first slot that was due (APScheduler moves it on only after the submission),
so the folded slots are the trigger's fire times from there up to, not
including, the slot being run. They are counted with the run's own record
(:meth:`~worker_service.state.protocol.StateStore.record_submitted`).
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from typing import Any

from apscheduler.triggers.interval import IntervalTrigger

from ..state.records import MissedSlots

MAX_ENUMERATED = 100_000  # fire times looked at for a calendar trigger: a 1 s cron job down for over a day is undercounted
RECENT_KEPT = 10_000  # slot times handed to the store for history rows (JOB_HISTORY_SIZE is at most this)


def folded_slots(job: Any, scheduled: dt.datetime,
                 refused: tuple[dt.datetime, dt.datetime] | None = None) -> MissedSlots | None:
    """The slots before ``scheduled`` that APScheduler folded into its run of ``scheduled``, or ``None``.

    ``refused``: the first and last of the slots just before, one after the
    other, that were due but could not be recorded (the store failed, so they
    never ran; see :func:`refused_slots`): the gap starts at the first, if the
    job's plan went on from the last (the first due slot is the one after it;
    a pause, a resume or a re-planning in between starts a new plan).
    """
    first, trigger = job.next_run_time, job.trigger
    if refused is not None and first is not None and _next(trigger, refused[1]) == first:
        first = refused[0]
    if not job.coalesce or first is None or first >= scheduled:
        return None
    if isinstance(trigger, IntervalTrigger) and not trigger.jitter:
        return _on_a_grid(first.timestamp(), scheduled.timestamp(), trigger.interval.total_seconds())
    recent: deque[float] = deque(maxlen=RECENT_KEPT)
    moment: dt.datetime | None = first
    count = 0
    while moment is not None and moment < scheduled and count < MAX_ENUMERATED:
        count += 1
        recent.append(moment.timestamp())
        moment = trigger.get_next_fire_time(moment, moment)
    if not count:
        return None
    return MissedSlots(count=count, first=first.timestamp(), last=recent[-1], recent=tuple(recent))


def refused_slots(job: Any, earlier: tuple[dt.datetime, dt.datetime] | None,
                  scheduled: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The slots refused in a row once the run of ``scheduled`` (with what it folded) was refused too.

    Extended if they follow ``earlier`` (the job's plan went on from its last
    slot), else a new row.
    """
    first = job.next_run_time if job.coalesce and job.next_run_time is not None else scheduled
    first = min(first, scheduled)
    if earlier is not None and _next(job.trigger, earlier[1]) == first:
        return earlier[0], scheduled
    return first, scheduled


def _next(trigger: Any, slot: dt.datetime) -> dt.datetime | None:
    return trigger.get_next_fire_time(slot, slot)


def _on_a_grid(first: float, scheduled: float, period: float) -> MissedSlots | None:
    """An interval's slots ``first``, ``first + period``, ... before ``scheduled``, counted without walking them."""
    if period <= 0:
        return None
    count = max(round((scheduled - first) / period), 0)  # scheduled is on the same grid
    if not count:
        return None
    kept = min(count, RECENT_KEPT)
    recent = tuple(first + period * index for index in range(count - kept, count))
    return MissedSlots(count=count, first=first, last=recent[-1], recent=recent)
