"""Every table of the state store, described once: columns, types, defaults, keys and indexes.

Both backends' DDL is rendered from here (:mod:`.ddl`), and so are the column
lists the stores read and the records they map rows onto (:mod:`.columns`).
Adding a field is an edit here plus one migration per backend that adds it to
an existing store (:mod:`.sqlite_migrations`, :mod:`.pg_schema`); a new store
is made from this description directly. The order of the columns is the order
an upgraded store has them in (a column added later comes last), so a new and
an upgraded store look the same.

Types are the backends' common words: ``TEXT``, ``INT`` (a small integer),
``COUNT`` (a 64-bit integer), ``REAL`` (seconds, epoch seconds), ``BOOL``,
``TIMESTAMP`` (PostgreSQL only: times stamped by the database's clock) and
``AUTO_ID`` (the table's key, numbered by the database).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

TEXT, INT, COUNT, REAL, BOOL, TIMESTAMP, AUTO_ID = "TEXT", "INT", "COUNT", "REAL", "BOOL", "TIMESTAMP", "AUTO_ID"
SQLITE, POSTGRESQL = "sqlite", "postgresql"


@dataclass(frozen=True)
class Column:
    """One column; ``internal`` ones (positions, sequence numbers, keys of the row) are not fields of its record."""

    name: str
    type: str
    not_null: bool = False
    default: str | int | bool | None = None  # a number, a bool, or a quoted SQL string such as "'pending'"
    primary_key: bool = False
    check: str | None = None
    internal: bool = False


@dataclass(frozen=True)
class Index:
    """An index named ``<table>_<suffix>``, partial with ``where``."""

    suffix: str
    columns: tuple[str, ...]
    where: str | None = None
    unique: bool = False


@dataclass(frozen=True)
class Table:
    """A table and where it exists: both backends, or PostgreSQL only (the fleet's lease, log and fences)."""

    name: str
    columns: tuple[Column, ...]
    indexes: tuple[Index, ...] = ()
    primary_key: tuple[str, ...] = ()  # a key of several columns; a one-column key is marked on its column
    backends: tuple[str, ...] = (SQLITE, POSTGRESQL)
    sqlite_name: str | None = None  # the SQLite file has always called it this

    def name_in(self, backend: str) -> str:
        """The table's name in ``backend``."""
        return self.sqlite_name if backend == SQLITE and self.sqlite_name else self.name

    @cached_property  # read on every row mapped: worked out once per table
    def column_names(self) -> tuple[str, ...]:
        """Every column, in table order."""
        return tuple(column.name for column in self.columns)

    @cached_property
    def record_columns(self) -> tuple[str, ...]:
        """The columns its record has a field for, in table order."""
        return tuple(column.name for column in self.columns if not column.internal)

    @cached_property
    def record_booleans(self) -> tuple[str, ...]:
        """The record's boolean fields (SQLite stores them as 0 and 1)."""
        return tuple(column.name for column in self.columns if not column.internal and column.type == BOOL)

    def column(self, name: str) -> Column:
        """The column called ``name``."""
        return next(column for column in self.columns if column.name == name)


def _key(name: str, type_: str = TEXT) -> Column:
    return Column(name, type_, primary_key=True)


def _required(name: str, type_: str) -> Column:
    return Column(name, type_, not_null=True)


def _counter(name: str) -> Column:
    return Column(name, COUNT, not_null=True, default=0)


def _scheduled(name: str = "trigger") -> Column:
    return Column(name, TEXT, not_null=True, default="'scheduled'")


JOBS = Table("jobs", (
    _key("id"), Column("position", INT, not_null=True, internal=True), _required("name", TEXT),
    _required("trigger", TEXT), Column("next_run_time", REAL), Column("misfire_grace_time", REAL),
    _required("max_instances", INT), _required("executor", TEXT), _required("paused", BOOL),
    _required("critical", BOOL), Column("interval_seconds", REAL), Column("max_runtime", REAL),
))
JOB_STATS = Table("job_stats", (
    Column("job_id", TEXT, primary_key=True, internal=True),
    _counter("success_count"), _counter("error_count"), _counter("missed_count"), _counter("max_instances_count"),
    Column("duration_sum", REAL, not_null=True, default=0), Column("duration_min", REAL), Column("duration_max", REAL),
    _counter("consecutive_failures"),
    Column("last_run_at", REAL), Column("last_outcome", TEXT), Column("last_success_at", REAL),
    Column("last_error_type", TEXT), Column("last_error_message", TEXT), Column("last_error_at", REAL),
    Column("runs_since_problem", COUNT), Column("last_problem", TEXT),
    _counter("crash_count"), _counter("consecutive_crashes"),
    Column("quarantined_at", REAL), Column("quarantine_key", TEXT, internal=True), Column("held_until", REAL),
    Column("duration_p95", REAL),
    Column("gap_missed", COUNT), Column("gap_from", REAL), Column("gap_to", REAL),
))
JOB_RUNS = Table("job_runs", (
    Column("seq", AUTO_ID, internal=True), _required("job_id", TEXT), _required("at", REAL),
    _required("outcome", TEXT), Column("duration", REAL), Column("started_at", REAL), Column("error_type", TEXT),
    Column("error_message", TEXT), _scheduled(), Column("requested_by", TEXT), Column("command_id", COUNT),
    Column("host", TEXT),
), indexes=(Index("by_job", ("job_id", "seq")),))
JOB_RUNNING = Table("job_running", (
    Column("run_id", AUTO_ID), _required("job_id", TEXT), _required("session", TEXT), _required("pid", INT),
    _required("scheduled_at", REAL), _required("submitted_at", REAL), Column("started_at", REAL),
    Column("stopping", BOOL, not_null=True, default=False), _scheduled(), Column("requested_by", TEXT),
    Column("command_id", COUNT), Column("host", TEXT),
    # A run the leader planned for any host to claim (fleet mode) has no owner yet: session '' and pid 0 until a
    # host claims it. ``run_on`` is 'any' or 'every-host' for such a run (NULL: run by the process that submitted it),
    # ``for_host`` the one host an every-host run is for, ``avoid_host`` the host a retried lost run must not go back
    # to, ``retry_of`` the lost run it retries, ``claimed_at`` when a host claimed it (the database's clock).
    Column("run_on", TEXT), Column("for_host", TEXT), Column("avoid_host", TEXT), Column("retry_of", COUNT),
    Column("claimed_at", REAL),
), indexes=(Index("by_session", ("session",)), Index("by_job", ("job_id",)),
            # What a claim reads, in the order it takes it: runs any host may take, and each host's own every-host runs.
            Index("claimable", ("scheduled_at",), where="session = '' AND for_host IS NULL"),
            Index("claimable_here", ("for_host", "scheduled_at"), where="session = '' AND for_host IS NOT NULL")))
SCHEDULER = Table("scheduler", (
    Column("id", INT, primary_key=True, check="id = 1", internal=True), _required("pid", INT),
    _required("hostname", TEXT), _required("state", TEXT), _required("timezone", TEXT),
    _required("started_at", REAL), _required("heartbeat_at", REAL), Column("session", TEXT),
    Column("clock_jump_seconds", REAL), Column("clock_jump_at", REAL),
))
LEASE = Table("lease", (
    _key("name"), _required("epoch", COUNT), Column("holder_host", TEXT), Column("holder_pid", INT),
    Column("holder_session", TEXT), Column("acquired_at", TIMESTAMP), Column("renewed_at", TIMESTAMP),
    _required("expires_at", TIMESTAMP), Column("released", BOOL, not_null=True, default=False),
    Column("handover", BOOL, not_null=True, default=False), Column("previous_host", TEXT),
    Column("previous_pid", INT), Column("previous_session", TEXT), Column("change_reason", TEXT),
), backends=(POSTGRESQL,))
LEADERSHIP_CHANGES = Table("leadership_changes", (
    Column("id", AUTO_ID), _required("at", TIMESTAMP), _required("epoch", COUNT), _required("reason", TEXT),
    Column("from_host", TEXT), Column("from_pid", INT), Column("from_session", TEXT),
    Column("to_host", TEXT), Column("to_pid", INT), Column("to_session", TEXT), Column("lost_epoch", COUNT),
), indexes=(Index("lost_once", ("lost_epoch",), where="reason = 'lost'", unique=True),), backends=(POSTGRESQL,))
COMMANDS = Table("commands", (
    Column("id", AUTO_ID), _required("job_id", TEXT), _required("action", TEXT), _required("requested_by", TEXT),
    _required("requested_at", REAL), Column("state", TEXT, not_null=True, default="'pending'"),
    Column("status", INT), Column("outcome", TEXT), Column("finished_at", REAL), Column("applied_by", TEXT),
    Column("run_id", COUNT),
), indexes=(Index("pending", ("id",), where="state = 'pending'"), Index("by_job", ("job_id", "id"))),
    sqlite_name="job_commands")
OPERATOR_PAUSES = Table("operator_pauses", (
    _key("job_id"), _required("paused", BOOL), _required("paused_by", TEXT), _required("at", REAL),
))
FENCES = Table("fences", (
    _key("resource"), _required("epoch", COUNT), _required("written_at", TIMESTAMP),
), backends=(POSTGRESQL,))
# One row per executing process of the fleet (a host's candidate: the worker holding its host lock), renewed every
# TTL/3 while it lives and while its last runs finish at a stop. A run claimed by a session whose row has expired is
# settled ``lost`` by the leader. The claim counters feed /metrics.
HOSTS = Table("hosts", (
    _key("session"), _required("host", TEXT), _required("pid", INT), _required("threads", INT),
    _required("started_at", TIMESTAMP), _required("renewed_at", TIMESTAMP), _required("expires_at", TIMESTAMP),
    Column("stopping", BOOL, not_null=True, default=False), _counter("claims"),
    Column("claim_wait_sum", REAL, not_null=True, default=0), Column("claim_wait_max", REAL), _counter("lost"),
    # Set by a live process of the same machine that saw this one's pid gone: its runs died with it (crashed, killed
    # at a stop, or missed), not lost out of reach; the leader, maybe on another machine, cannot look at the pid.
    Column("gone", BOOL, not_null=True, default=False),
), backends=(POSTGRESQL,))
ALERT_STATES = Table("alert_states", (
    _key("key"), _required("kind", TEXT), _required("subject", TEXT), _required("state", TEXT),
    _required("firing", BOOL), Column("reason", TEXT), _required("since", REAL), _required("seq", COUNT),
    Column("notified_at", REAL),
))
ALERT_OUTBOX = Table("alert_outbox", (
    Column("id", AUTO_ID), _required("event_id", TEXT), _required("key", TEXT), _required("status", TEXT),
    _required("channel", TEXT), _required("payload", TEXT), _required("created_at", REAL),
    Column("attempts", INT, not_null=True, default=0), _required("next_attempt_at", REAL),
    Column("claimed_by", TEXT), Column("claimed_until", REAL),
    Column("outcome", TEXT, not_null=True, default="'pending'"),
    Column("last_error", TEXT), Column("finished_at", REAL),
), indexes=(Index("pending", ("next_attempt_at",), where="outcome = 'pending'"),))
ALERT_COUNTS = Table("alert_counts", (
    _required("channel", TEXT), _required("outcome", TEXT), _required("count", COUNT),
), primary_key=("channel", "outcome"))

TABLES: tuple[Table, ...] = (JOBS, JOB_STATS, JOB_RUNS, JOB_RUNNING, SCHEDULER, LEASE, LEADERSHIP_CHANGES, COMMANDS,
                             OPERATOR_PAUSES, FENCES, ALERT_STATES, ALERT_OUTBOX, ALERT_COUNTS, HOSTS)


def tables_of(backend: str) -> tuple[Table, ...]:
    """The tables ``backend`` keeps, in the order they are made."""
    return tuple(table for table in TABLES if backend in table.backends)
