"""The job set a leader schedules: the jobs file, or its last good copy while the file is broken.

A reload (SIGHUP) with a broken jobs file used to leave the new workers with
NO scheduler. Like ``nginx -s reload``, the service now keeps the last good
job set running instead: a leader that cannot load the file schedules the
last good copy (:mod:`worker_service.reload_state`, kept by the master's
check at each start and reload, and by every leader that loads a good file),
logs the error and records it with the time it was first found, so every
worker's ``/health`` says ``degraded`` and names it. A leader that loads a
good file keeps it as the new last good copy and clears the problem.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any

from common.helpers.health import redact

from .. import reload_state
from ..config import BUILTIN_JOBS_FILE
from .jobs_file import JobsFileError, JobSpec, load_jobs_file, parse_jobs

log = logging.getLogger(__name__)


def load_schedule(settings: Mapping[str, Any]) -> list[JobSpec]:
    """The jobs to schedule: the file's, else (it is broken) the last good copy's; raise if neither loads."""
    path, timezone = settings["WORKER_JOBS_FILE"], settings["SCHEDULER_TIMEZONE"]
    directory = settings["WORKER_STATE_DIR"]
    text = reload_state.read_text(path)
    try:
        specs = load_jobs_file(path, timezone)
    except JobsFileError as error:
        return _last_good(directory, path, timezone, error)
    if path != BUILTIN_JOBS_FILE and text is not None and reload_state.read_text(path) == text:  # not a later edit
        reload_state.save_last_good(directory, path, text)
    reload_state.clear_problem(directory)
    return specs


def _last_good(directory: str, path: str, timezone: str, error: JobsFileError) -> list[JobSpec]:
    problem = redact(str(error))  # an import error of a job module may quote anything
    recorded = reload_state.record_problem(directory, path, problem)
    copy = reload_state.read_last_good(directory)
    if copy is None or copy["path"] != path:
        raise error
    try:
        specs = parse_jobs(copy["text"], f"{path} (last good copy)", timezone)
    except JobsFileError as copy_error:
        log.error("the last good copy of the jobs file cannot be loaded either: %s", redact(str(copy_error)))
        raise error from None
    since = recorded["since"] if recorded is not None else None
    log.error("%s; scheduling the last good job set instead (the file as it was at %s; broken since %s): fix the "
              "file, check it with `worker-service check-config`, reload", problem, _iso(copy.get("saved_at")),
              _iso(since))
    return specs


def problem_reason(directory: str, now: float) -> str | None:
    """Why the scheduler does not follow the jobs file, for the scheduler component's reason; ``None`` if it does.

    "jobs file /etc/x.toml: TOML syntax error: ... (line 9, column 13); since 2026-12-07T06:10:03Z (42 s ago);
    the scheduler keeps the last good job set (the file as it was at 2026-12-07T05:58:00Z)"
    """
    if not directory:
        return None
    record = reload_state.read_problem(directory)
    if record is None:
        return None
    since = record["since"]
    copy = reload_state.read_last_good(directory)
    if copy is not None and copy["path"] == record.get("path"):
        keeps = f"the scheduler keeps the last good job set (the file as it was at {_iso(copy.get('saved_at'))})"
    else:
        keeps = "no last good copy of it is kept"
    return f"{record['problem']}; since {_iso(since)} ({max(now - since, 0):.0f} s ago); {keeps}"


def _iso(epoch: Any) -> str:
    if not isinstance(epoch, (int, float)):
        return "an unknown time"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
