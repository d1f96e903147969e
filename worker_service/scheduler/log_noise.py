"""APScheduler's own log lines for the events the service already logs, dropped: one line per event.

The tracker logs each job event in its own words (:mod:`.tracking`): a
failure, a missed run, a max_instances skip; and the service logs a failing
state store once per change of state. APScheduler logs the same events again:
an ERROR with a traceback for every failed run, a second WARNING for every
skip or miss, and an ERROR with a traceback for every slot of every job it
could not submit while the store failed (1,000 tracebacks a second at 1,000
jobs). This filter drops those echoes, and only those: a run's exception or a
submission's error is dropped only if the tracker reported that very
exception, in the same thread, just before APScheduler logs it. Anything else
APScheduler logs (an executor lookup that failed, a listener that raised, an
error the tracker never saw) still gets through.
"""

from __future__ import annotations

import logging
import threading

# APScheduler 3's message templates (record.msg, before its arguments are merged).
_RAISED = 'Job "%s" raised an exception'  # executors/base.py run_job, with the job's traceback
_NOT_SUBMITTED = 'Error submitting job "%s" to executor "%s"'  # schedulers/base.py _process_jobs, with a traceback
_ALWAYS_ECHOED = frozenset({
    'Run time of job "%s" was missed by %s',  # executors/base.py; the tracker logs EVENT_JOB_MISSED
    'Execution of job "%s" skipped: maximum number of running instances reached (%d)',  # EVENT_JOB_MAX_INSTANCES
})
_REPORTED_ONCE = frozenset({_RAISED, _NOT_SUBMITTED})

# The loggers APScheduler logs those lines with: the scheduler's, and the executor's ("default", the only one).
LOGGERS = ("apscheduler.scheduler", "apscheduler.executors.default")

_reported = threading.local()  # .error: the exception the tracker logged last in this thread


def reported(error: BaseException) -> None:
    """The tracker logged ``error`` in this thread: APScheduler's line about it is an echo."""
    _reported.error = error


class ApschedulerEchoes(logging.Filter):
    """Drop APScheduler's records of events the service logged itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in _ALWAYS_ECHOED:
            return False
        if record.msg in _REPORTED_ONCE and record.exc_info:
            error = getattr(_reported, "error", None)
            if error is not None and record.exc_info[1] is error:
                _reported.error = None
                return False
        return True


_FILTER = ApschedulerEchoes()


def install() -> None:
    """Put the filter on APScheduler's loggers (once per process; adding it again changes nothing)."""
    for name in LOGGERS:
        logging.getLogger(name).addFilter(_FILTER)
