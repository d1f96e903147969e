"""The columns both stores read into records, and the mapping of a row onto its record: from :mod:`.tables`.

A field added to a record and described in its table is read, written and
mapped by both stores without another edit here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from .tables import COMMANDS, JOB_RUNS, JOB_STATS, JOBS, Table

R = TypeVar("R")

STAT_COLUMNS = JOB_STATS.record_columns  # JobRecord's stats, by name
DEFINITION_COLUMNS = JOBS.record_columns  # JobDefinition
RUN_COLUMNS = JOB_RUNS.record_columns  # RunRecord
COMMAND_COLUMNS = COMMANDS.record_columns  # Command
COMMANDS_KEPT = 100  # finished commands kept per job (pending ones are never trimmed)
LEADERSHIP_CHANGES_KEPT = 1000  # the fleet's leadership log keeps its newest changes (a handful a day: years)


def record_from(table: Table, record: type[R], row: Sequence[Any], **extra: Any) -> R:
    """``row`` (the table's record columns, in order) as a ``record``; SQLite's 0 and 1 as booleans."""
    values = dict(zip(table.record_columns, row, strict=True))
    for name in table.record_booleans:
        values[name] = bool(values[name])
    return record(**values, **extra)

