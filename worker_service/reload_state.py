"""What a reload leaves in the state directory for the workers: the last good jobs file, and its problem if any.

Standard library only: the gunicorn master loads this file by path (it never
imports the package, see :mod:`worker_service.gunicorn.master`), and the
workers import it as part of the package.

nginx keeps its old configuration when ``nginx -s reload`` finds a bad one;
this does the same for the jobs file:

* ``jobs-file.last-good.json``: the text of the last jobs file that was
  found good (by the master's check at a start or a reload, or by a leader
  that loaded it), with its path and when. A leader that finds the file
  broken schedules this copy instead (:mod:`worker_service.scheduler.jobs_source`).
* ``jobs-file.problem.json``: why the jobs file is unusable and since when
  (the first time it was found broken since it was last good). Every worker
  reads it: the scheduler component is ``degraded`` and names it while it is
  there. The next good reload (or a leader that loads a good file) removes it.

Both are written whole to a temporary file and renamed, so a reader never sees
half of one; the copy is readable by the service's user only (a jobs file may
carry arguments an operator would not show). None of this is ever fatal: a
state directory that cannot be written only loses the fallback.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from typing import Any

LAST_GOOD = "jobs-file.last-good.json"
PROBLEM = "jobs-file.problem.json"
_MAX_TEXT = 4 * 1024 * 1024  # a jobs file larger than this is not kept (thousands of jobs take far less)


def read_text(path: str) -> str | None:
    """The jobs file's text, or ``None`` if it cannot be read as UTF-8 (the check then says why)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(_MAX_TEXT + 1)
        return raw.decode("utf-8") if len(raw) <= _MAX_TEXT else None
    except (OSError, UnicodeDecodeError):
        return None


def save_last_good(directory: str, path: str, text: str, at: float | None = None) -> bool:
    """Keep ``text`` as the last good copy of the jobs file ``path``; whether it was written (or already there)."""
    current = read_last_good(directory)
    if current is not None and current.get("path") == path and current.get("text") == text:
        return True
    return _write(directory, LAST_GOOD, {"path": path, "text": text, "saved_at": time.time() if at is None else at})


def read_last_good(directory: str) -> dict[str, Any] | None:
    """``{"path", "text", "saved_at"}`` of the last good copy, or ``None``."""
    record = _read(directory, LAST_GOOD)
    if record is None or not isinstance(record.get("text"), str) or not isinstance(record.get("path"), str):
        return None
    return record


def record_problem(directory: str, path: str, problem: str, at: float | None = None) -> dict[str, Any] | None:
    """Note that the jobs file ``path`` is unusable (``problem``: one line), keeping the ``since`` of an earlier note.

    Returns the record as written (``None`` if it could not be).
    """
    now = time.time() if at is None else at
    earlier = read_problem(directory)
    since = earlier["since"] if earlier is not None and earlier.get("path") == path else now
    record = {"path": path, "problem": problem, "since": since, "seen_at": now}
    return record if _write(directory, PROBLEM, record) else None


def read_problem(directory: str) -> dict[str, Any] | None:
    """``{"path", "problem", "since", "seen_at"}`` while the jobs file is known broken, else ``None``."""
    record = _read(directory, PROBLEM)
    if record is None or not isinstance(record.get("problem"), str) or not isinstance(record.get("since"), (int, float)):
        return None
    return record


def clear_problem(directory: str) -> None:
    """The jobs file is good again (or the schedule follows it): forget its problem."""
    with contextlib.suppress(FileNotFoundError, OSError):
        os.unlink(os.path.join(directory, PROBLEM))


def _read(directory: str, name: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(directory, name), encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _write(directory: str, name: str, record: dict[str, Any]) -> bool:
    try:
        os.makedirs(directory, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", dir=directory)  # mode 0600
    except OSError:
        return False
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(record, handle)
        os.replace(temporary, os.path.join(directory, name))
        return True
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        return False
