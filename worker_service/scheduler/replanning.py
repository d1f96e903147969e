"""A BackgroundScheduler that re-plans its jobs when the wall clock jumps.

APScheduler 3 keeps each job's next run time as a wall-clock datetime. Move
the wall clock back an hour and every job waits an hour for it; move it
forward and every run in between is due at once (a burst, or a flood of
misfires). So before each round of due jobs, :class:`ReplanningScheduler`
asks a :class:`~.clock_watch.ClockWatch` whether the wall clock jumped and,
if it did, re-plans every job from the new time (see :func:`replanned`).

A backward jump is only seen when ``_process_jobs`` runs, and APScheduler may
sleep until the old next run time: whoever owns the scheduler must call
``wakeup()`` periodically (the heartbeat does).
"""

from __future__ import annotations

import copy
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from apscheduler.events import EVENT_JOB_MODIFIED, JobEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from .clock_watch import ClockWatch

log = logging.getLogger(__name__)


def _shifted(moment: dt.datetime, seconds: float, tz: dt.tzinfo) -> dt.datetime:
    # Through the epoch: adding a timedelta to an aware datetime is wall-time
    # arithmetic in its zone, an hour off across a DST change.
    return dt.datetime.fromtimestamp(moment.timestamp() + seconds, tz)


def replanned(trigger: BaseTrigger, next_run_time: dt.datetime, jump: float,
              now: dt.datetime) -> tuple[BaseTrigger, dt.datetime] | None:
    """The ``(trigger, next run time)`` a job should have after the wall clock jumped by ``jump`` s, or ``None``.

    * interval: an elapsed-time schedule. Its whole grid moves with the jump
      (the trigger is re-anchored, because ``IntervalTrigger`` anchors on its
      ``start_date``), so the next run comes after the same real wait it had
      before the jump: nothing stalls, nothing runs twice, no run is skipped.
    * date: a one-off at a calendar moment. Left alone: a date now in the
      future waits for it; one now past is due and meets misfire handling.
    * cron and anything else: a calendar schedule, planned from the new time.
      A run that was already due before the jump stays due (it runs now)
      rather than being skipped to the next calendar slot.
    """
    tz = next_run_time.tzinfo or now.tzinfo or dt.UTC
    shifted = _shifted(next_run_time, jump, tz)
    if isinstance(trigger, DateTrigger):
        return None
    if isinstance(trigger, IntervalTrigger):
        moved = copy.copy(trigger)
        moved.start_date = _shifted(trigger.start_date, jump, trigger.timezone)
        return moved, shifted
    if shifted <= now:
        return trigger, shifted
    upcoming = trigger.get_next_fire_time(None, now)
    return (trigger, upcoming) if upcoming is not None else None


def latest_next_run(trigger: BaseTrigger, now: dt.datetime) -> dt.datetime | None:
    """The latest next run time a leader with a right clock could have published for an interval ``trigger``.

    Its grid is anchored where its leader started it, so its next run is at
    most one interval after ``now``. ``None`` for every other trigger: a
    calendar slot (cron, date) has a name, and a leader whose clock ran ahead
    may already have run the slots before the time it published, so planning
    any of them again could run one twice; it waits for the published time.
    """
    if isinstance(trigger, IntervalTrigger):
        return _shifted(now, trigger.interval_length, now.tzinfo or dt.UTC)
    return None


class ReplanningScheduler(BackgroundScheduler):
    """``BackgroundScheduler`` that re-plans every job after a wall-clock jump, before running due jobs.

    :param clock_watch: what tells a jump (default: a :class:`ClockWatch`).
    :param on_clock_jump: called with the jump in seconds once the jobs are
        re-planned and the due ones submitted; what it raises is logged.
    """

    def __init__(self, *args: Any, clock_watch: Any = None,
                 on_clock_jump: Callable[[float], None] | None = None, **options: Any) -> None:
        self.clock_watch = clock_watch or ClockWatch()
        self.on_clock_jump = on_clock_jump
        super().__init__(*args, **options)

    def start(self, *args: Any, **kwargs: Any) -> None:
        """Start, taking the clock watch's baseline first, so a jump before the start is no jump."""
        self.clock_watch.check()
        super().start(*args, **kwargs)

    def _process_jobs(self) -> float | None:
        jump = self.clock_watch.check()
        if jump is not None:
            try:
                self._replan(jump)
            except Exception:  # APScheduler's main loop dies on an exception: never let one out
                self._logger.exception("re-planning the jobs after a wall-clock jump failed")
        wait_seconds = super()._process_jobs()
        if jump is not None and self.on_clock_jump is not None:
            try:
                self.on_clock_jump(jump)
            except Exception:
                self._logger.exception("the clock-jump callback failed")
        return wait_seconds

    def _replan(self, jump: float) -> None:
        """Re-plan every scheduled job (paused ones have no next run time and stay paused), then log once."""
        now = dt.datetime.fromtimestamp(time.time(), self.timezone)
        modified: list[tuple[str, str]] = []
        with self._jobstores_lock:
            for alias, store in self._jobstores.items():
                for job in store.get_all_jobs():
                    if job.next_run_time is None:
                        continue
                    change = replanned(job.trigger, job.next_run_time, jump, now)
                    if change is None:
                        continue
                    trigger, next_run_time = change
                    job._modify(trigger=trigger, next_run_time=next_run_time)
                    store.update_job(job)
                    modified.append((job.id, alias))
        log.warning("wall clock jumped %s by %.1f s (against the monotonic clock); jobs re-planned from the "
                    "new time: %d", "back" if jump < 0 else "forward", abs(jump), len(modified))
        for job_id, alias in modified:
            self._dispatch_event(JobEvent(EVENT_JOB_MODIFIED, job_id, alias))
