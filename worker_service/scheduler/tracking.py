"""Record every run in the shared store: submitted, started, finished.

The writes of one run, and why each is where it is:

1. **submitted** (the scheduler thread, :class:`~.executor.TrackedThreadPoolExecutor`):
   the run (with this host and pid) and the job's next run time, in one
   transaction, *before* the run can start. A job that kills its own process
   is then known to have started, and the next leader resumes after it instead
   of running the same slot again (APScheduler only dispatches SUBMITTED after
   every due job was handed out, which is too late). If this write fails the run is not submitted at all:
   the service never runs a job it cannot record.
2. **started** (the pool thread, the job's wrapper): the run enters the job's
   own code. ``/status`` shows it as running since then, and a run still
   going past its ``max_runtime`` is running too long. The job's code does
   NOT run when the store says the run is gone (``record_started`` returns
   ``False``: a new leader on another host already settled it, as missed or
   lost) or refuses the write as fenced out (another host holds the lease,
   or this one's runs out before the run could be recorded): that leader
   records it, and a run it settled must not happen after all. A store that
   merely fails does not stop a run that was recorded as submitted.
3. **finished** (the wrapper): success or error, with the duration measured
   around the job's own code (APScheduler's events carry no duration). It
   counts the run only if its live row is still there (see the store's
   protocol): a run a new leader settled meanwhile is counted once, by it.

A run that never entered the wrapper (missed: later than its misfire grace)
is recorded from the MISSED event; max-instances skips from theirs. Slots
APScheduler folded into a run (``coalesce``: no process ran them, after a
freeze, a failover or a store outage) are counted as missed with the run's
"submitted" write (:mod:`.missed_slots`). The
executor forgets the run when APScheduler is done with it. Listeners are
wrapped, because APScheduler only logs what a listener raises.

Each event is one log line (APScheduler's own lines about the same events
are dropped, see :mod:`.log_noise`): a failed run is one WARNING, with its
traceback on the first failure in a row (on every one at DEBUG); a write the
store refused is a DEBUG line, because the service logs the failing store once
per change of state, not once per job and slot.

An operator's run-now (:mod:`.commands`) takes the same path with a
:class:`ManualRequest`: its run is ``manual``, says who asked and which
command, and leaves the job's next run time as it is. While a job's code runs,
:func:`current_run` tells it which run it is part of.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.base import MaxInstancesReachedError

from common.helpers.health import redact

from ..state import StateStore
from ..state.faults import FencedOut
from ..state.records import MissedSlots
from . import log_noise
from .job_health import gap_words
from .missed_slots import RECENT_KEPT, folded_slots, refused_slots

log = logging.getLogger(__name__)

TRACKED_EVENTS = EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES
MAX_ERROR_MESSAGE = 300
_EXAMINED_MESSAGE = 4096  # characters of an exception's text looked at: a 10 MB message costs nothing more

_current = threading.local()  # .run: the CurrentRun this pool thread is executing (APScheduler's run_job)


@dataclasses.dataclass(frozen=True)
class CurrentRun:
    """The run a job's code is part of: its job and run id, its slot, and whether an operator asked for it.

    ``run_id`` is ``None`` for a call the tracker did not submit (the job's
    function called directly); ``scheduled_at`` is the slot's epoch seconds
    (the moment of asking, for a run-now).
    """

    job_id: str
    run_id: int | None
    scheduled_at: float | None
    trigger: str = "scheduled"
    requested_by: str | None = None
    command_id: int | None = None
    claim_session: str | None = None  # a run a host claimed (fleet): the session that holds it
    claim_epoch: int | None = None  # and its fencing token (worker_service.fencing)


_running: contextvars.ContextVar[CurrentRun | None] = contextvars.ContextVar("current_run", default=None)


def current_run() -> CurrentRun | None:
    """The run whose job code is calling, or ``None`` outside a tracked job's code."""
    return _running.get()


@dataclasses.dataclass
class ManualRequest:
    """An operator's run-now on its way through the executor; ``run`` is the run it became once submitted."""

    requested_by: str
    command_id: int | None
    run: CurrentRun | None = None


def error_message(error: BaseException) -> str:
    """A short, redacted text for ``error``, even when its ``__str__`` raises or is huge."""
    try:
        text = str(error)
    except Exception:  # a job's exception class may be broken; its run must still be recorded
        text = f"<unprintable {type(error).__name__}>"
    return redact(text[:_EXAMINED_MESSAGE])[:MAX_ERROR_MESSAGE]


class ExecutionTracker:
    """Wraps job callables and writes each run's steps to the shared store.

    :param store: the shared state store.
    :param session: this leadership's id (a new leader settles runs of other sessions).
    :param next_run_of: ``(next_run_time epoch or None, paused)`` for a job id.
    :param on_store_failure: called with the error when a write fails (the
        service then stops submitting until the store works again).
    :param host: this host's name, kept with each live run (a new leader on
        another host records the run as lost with its leader, not crashed).
    """

    def __init__(self, store: StateStore, session: str, next_run_of: Callable[[str], tuple[float | None, bool]],
                 on_store_failure: Callable[[BaseException], None], host: str | None = None) -> None:
        self._store = store
        self.session = session
        self.host = host
        self._next_run_of = next_run_of
        self._on_store_failure = on_store_failure
        self._pid = os.getpid()
        self._settled: set[int] = set()
        self._live: set[int] = set()  # submitted runs APScheduler is not done with
        self._failing: set[str] = set()  # jobs whose last run here failed: their next failure has no traceback
        self._unrecorded: dict[str, Any] = {}  # job id -> (first, last) of its slots the store refused in a row
        # job id -> slots folded into a run the store refused for max_instances (a run of the job is still going, or
        # planned and not claimed yet, e.g. after a freeze): counted with the job's next recorded run instead
        self._held_gaps: dict[str, MissedSlots] = {}
        self.forget_later: Callable[[int], None] | None = None  # removes a run's row later, once the store answers
        self._lock = threading.Lock()

    # -- the executor's side --------------------------------------------------
    def submitted(self, job: Any, run_times: list, request: ManualRequest | None = None,
                  run_on: str | None = None, for_host: str | None = None, count_gap: bool = True) -> CurrentRun:
        """Record a run about to be handed to the pool; raise (and nothing is submitted) if the store can't.

        A scheduled run publishes the job's next run time after its slot; an
        operator's run-now (``request``) publishes the one APScheduler has now,
        unchanged (the caller holds the scheduler's job-store lock, so it is
        current). ``count_gap`` False: the slots folded into this one are counted
        with another record of the same slot (an every-host run's first host).
        With ``run_on`` the run is planned for a host of the fleet to
        claim (:mod:`.host_runner`), not handed to this process's pool. The
        store refuses a run of a job that already has ``max_instances`` live
        runs anywhere (APScheduler's ``MaxInstancesReachedError`` is raised: it
        counts the skip), which is how a run still finishing in the previous
        process after a reload, or on another host, holds its job back.
        """
        scheduled = run_times[-1]
        missed = None
        if request is None:
            next_fire = job.trigger.get_next_fire_time(scheduled, scheduled.__class__.now(scheduled.tzinfo))
            trigger, requested_by, command_id = "scheduled", None, None
            held = self._held_gaps.pop(job.id, None) if count_gap else None
            missed = (_joined(held, folded_slots(job, scheduled, self._unrecorded.get(job.id))) if count_gap
                      else None)  # recorded with this run, or neither
        else:
            next_fire = job.next_run_time
            trigger, requested_by, command_id = "manual", request.requested_by, request.command_id
        try:
            run_id = self._store.record_submitted(job.id, self.session, self._pid, scheduled.timestamp(),
                                                  next_fire.timestamp() if next_fire else None, trigger,
                                                  requested_by, command_id, host=self.host, missed=missed,
                                                  max_instances=job.max_instances, run_on=run_on, for_host=for_host)
        except Exception as error:
            if request is None:  # never run: the gap the next recorded run folds in starts at the first such slot
                self._unrecorded[job.id] = refused_slots(job, self._unrecorded.get(job.id), scheduled)
                if held is not None:
                    self._held_gaps[job.id] = held
            what = f"at {scheduled.isoformat()}" if request is None else f"now for {requested_by}"
            log.debug("job %s not run %s: the state store cannot record it (%s)", job.id, what, error)
            self._on_store_failure(error)
            if request is None:  # APScheduler's _process_jobs logs it next (a run-now's caller answers it instead)
                log_noise.reported(error)
            raise
        if run_id is None:
            if missed is not None:  # the skip itself is counted as max_instances; the slots it folded wait
                self._held_gaps[job.id] = missed
                self._unrecorded.pop(job.id, None)
            raise MaxInstancesReachedError(job)  # the store holds max_instances runs of it (any process, any host)
        if run_on is None:
            with self._lock:
                self._live.add(run_id)
        if request is None:
            self._unrecorded.pop(job.id, None)
        if missed is not None:
            log.warning("job %s: %s while no scheduler ran; folded into its run at %s (coalesce)", job.id,
                        gap_words(missed.count, missed.first, missed.last), scheduled.isoformat())
        return CurrentRun(job.id, run_id, scheduled.timestamp(), trigger, requested_by, command_id)

    def executing(self, run: CurrentRun) -> _Executing:
        """Context for the pool thread while APScheduler's ``run_job`` runs the submitted run."""
        return _Executing(run)

    def done(self, run_id: int) -> None:
        """APScheduler is done with the run: forget it unless the wrapper or a listener already did."""
        with self._lock:
            self._live.discard(run_id)
            if run_id in self._settled:
                self._settled.discard(run_id)
                return
        try:
            self._store.forget_run(run_id)
        except Exception as error:
            log.debug("could not clear run %d from the state store: %s", run_id, error)
            if self.forget_later is not None:
                self.forget_later(run_id)  # else its row would hold its job's max_instances while this process lives
            self._on_store_failure(error)

    def settled(self, run_id: int) -> None:
        """The caller dealt with the run's live row itself: :meth:`done` must not forget it."""
        with self._lock:
            self._settled.add(run_id)

    def live_runs(self) -> set[int]:
        """Ids of the submitted runs APScheduler is not done with yet."""
        with self._lock:
            return set(self._live)

    # -- the job's side -------------------------------------------------------
    def wrap(self, job_id: str, func: Callable[..., Any]) -> Callable[..., Any]:
        """Return ``func`` recorded and timed around its own run."""

        @functools.wraps(func)
        def tracked(*args: Any, **kwargs: Any) -> Any:
            run: CurrentRun | None = getattr(_current, "run", None)
            run_id = run.run_id if run is not None else None
            started_at, started = time.time(), time.perf_counter()
            if run_id is not None and not self._may_start(job_id, run_id, started_at):
                return None
            token = _running.set(run if run is not None else CurrentRun(job_id, None, None))
            try:
                result = func(*args, **kwargs)
            except BaseException as error:
                _exit_if_forked_child(self._pid, 1)
                self._finish(job_id, run, started, error)
                log_noise.reported(error)
                raise
            finally:
                _running.reset(token)
            _exit_if_forked_child(self._pid, 0)
            self._finish(job_id, run, started, None)
            return result

        return tracked

    def _may_start(self, job_id: str, run_id: int, at: float) -> bool:
        """Record that the run enters the job's code; whether it may (see the module docstring, step 2)."""
        try:
            live = self._store.record_started(run_id, at)
        except FencedOut as error:
            log.warning("job %s: run %d not started: %s; recorded as missed", job_id, run_id, error)
            run = getattr(_current, "run", None)
            slot = run.scheduled_at if run is not None and run.scheduled_at is not None else at
            if self._count(self._store.record_missed, job_id, slot, run_id) is not None:
                self.settled(run_id)
            self._on_store_failure(error)
            return False
        except Exception as error:
            log.debug("state store write record_started failed: %s", error)
            self._on_store_failure(error)
            return True
        if not live:
            log.warning("job %s: run %d not started: another scheduler already settled it (recorded there as missed "
                        "or lost)", job_id, run_id)
            with self._lock:
                self._settled.add(run_id)  # its live row is gone: nothing to forget
            return False
        return True

    def _finish(self, job_id: str, run: CurrentRun | None, started: float, error: BaseException | None) -> None:
        """Record the run as finished now: its history row gets its start and trigger from the run's live row."""
        duration, finished_at = time.perf_counter() - started, time.time()
        run_id = run.run_id if run is not None else None
        if error is None:
            outcome = "success"
            counted = self._count(self._store.record_run, job_id, "success", finished_at, duration, run_id=run_id)
            self._failing.discard(job_id)
        else:
            outcome, message = "error", error_message(error)
            counted = self._count(self._store.record_run, job_id, "error", finished_at, duration,
                                  type(error).__name__, message, run_id=run_id)
            asked = f" (run now by {run.requested_by})" if run is not None and run.trigger == "manual" else ""
            first = job_id not in self._failing
            self._failing.add(job_id)
            log.warning("job %s failed after %.3f s%s: %s: %s", job_id, duration, asked, type(error).__name__,
                        message, exc_info=error if first or log.isEnabledFor(logging.DEBUG) else None)
        if counted is not None and run_id is not None:
            with self._lock:
                self._settled.add(run_id)  # its live row is gone, whether this write removed it or a settler did
        if counted is False:
            log.warning("job %s: run %s ended (%s) after another scheduler had settled it; counted once, as it "
                        "recorded it there", job_id, run_id, outcome)

    # -- APScheduler's events ---------------------------------------------------
    def listener(self, event: JobEvent) -> None:
        """The APScheduler listener; never raises (APScheduler would only log it)."""
        try:
            self._handle(event)
        except Exception:
            log.exception("tracking failed for job %s (event code %s)", getattr(event, "job_id", "?"), event.code)

    def _handle(self, event: JobEvent) -> None:
        job_id = event.job_id
        if event.code == EVENT_JOB_MISSED:
            run = getattr(_current, "run", None)  # dispatched in the pool thread that ran run_job
            run_id = run.run_id if run is not None else None
            counted = self._count(self._store.record_missed, job_id, event.scheduled_run_time.timestamp(), run_id)
            if counted is not None and run_id is not None:
                with self._lock:
                    self._settled.add(run_id)
            log.warning("job %s missed its run at %s (later than its misfire grace time)", job_id,
                        event.scheduled_run_time.isoformat())
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            self._write(self._store.record_max_instances, job_id, time.time())
            log.warning("job %s skipped a run: still running (max_instances reached)", job_id)
            self._write(self._store.update_next_run, job_id, *self._next_run_of(job_id))

    def _write(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        """Call a store write; on failure log it, tell the service, and return False."""
        try:
            method(*args, **kwargs)
            return True
        except Exception as error:
            log.debug("state store write %s failed: %s", method.__name__, error)
            self._on_store_failure(error)
            return False

    def _count(self, method: Callable[..., bool], *args: Any, **kwargs: Any) -> bool | None:
        """Call a write that counts a run: whether it counted it (``False``: it was settled before); ``None``: failed."""
        try:
            return bool(method(*args, **kwargs))
        except Exception as error:
            log.debug("state store write %s failed: %s", method.__name__, error)
            self._on_store_failure(error)
            return None


class _Executing:
    def __init__(self, run: CurrentRun) -> None:
        self.run = run

    def __enter__(self) -> None:
        _current.run = self.run

    def __exit__(self, *exc: object) -> None:
        _current.run = None


def _exit_if_forked_child(owner_pid: int, code: int) -> None:
    """A job that ``os.fork()``-ed and whose child returned here: end the child now.

    Otherwise the child would go back into APScheduler's executor (a thread
    pool that no longer exists in it), record the run a second time, and live
    on holding the worker's inherited descriptors.
    """
    if os.getpid() != owner_pid:
        os._exit(code)


def _joined(earlier: MissedSlots | None, later: MissedSlots | None) -> MissedSlots | None:
    """Two gaps of one job's slots as one (the earlier one held back by a refused run), or whichever there is."""
    if earlier is None or later is None:
        return earlier or later
    recent = (earlier.recent + later.recent)[-RECENT_KEPT:]
    return MissedSlots(earlier.count + later.count, min(earlier.first, later.first), max(earlier.last, later.last),
                       recent)
