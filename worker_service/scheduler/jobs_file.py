"""Read and validate the TOML jobs file (``WORKER_JOBS_FILE``).

The file is the complete job set. Each job is a table ``[jobs.<id>]``::

    [jobs.sync_accounts]
    name = "Sincronización de cuentas"
    func = "worker_service.jobs.accounts:sync_accounts"
    trigger = "interval"          # or "cron" or "date"
    minutes = 30                  # the trigger's APScheduler arguments
    critical = true

Any problem raises :class:`JobsFileError` with one line that names the file,
the job and what is wrong.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import importlib
import re
import tomllib
import zoneinfo
from collections.abc import Callable
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from ..messages import plain

TRIGGERS = ("interval", "cron", "date")
DEFAULT_MISFIRE_GRACE_TIME = 60
MIN_DEFAULT_MAX_RUNTIME = 60.0  # seconds: the derived max_runtime is never shorter than this
DATE_JOB_MAX_RUNTIME = 3600.0  # seconds: the default max_runtime of a one-off (date) job
_JOB_ID = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_HEADER = re.compile(r'^\s*\[\s*jobs\s*\.\s*(?:"([^"]+)"|\'([^\']+)\'|([A-Za-z0-9_-]+))\s*\]\s*(?:#.*)?$')


RUN_ON_ANY, RUN_ON_LEADER, RUN_ON_EVERY_HOST = "any", "leader", "every-host"
RUN_ON_CHOICES = (RUN_ON_ANY, RUN_ON_LEADER, RUN_ON_EVERY_HOST)


class JobsFileError(Exception):
    """The jobs file is unusable; ``str(error)`` is one line for an operator."""


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """One validated job, ready for ``scheduler.add_job``."""

    id: str
    name: str
    func_ref: str
    func: Callable[..., Any]
    trigger_kind: str
    trigger: Any
    critical: bool
    paused: bool
    misfire_grace_time: int | None
    max_instances: int
    coalesce: bool
    executor: str
    args: tuple
    kwargs: dict[str, Any]
    max_runtime: float | None = None
    alert: bool = True  # notify the alert channels of its changes of state (README, Alerts)
    alert_after_failures: int | None = None  # failures in a row before it alerts; default JOB_FAILURE_THRESHOLD
    alert_after_recoveries: int = 1  # runs without a problem in a row before its alert resolves
    run_on: str | None = None  # "any", "leader" or "every-host"; None: the mode's default (see placement)
    retry_lost: bool = False  # a run lost with its host runs once more, on another host

    def placement(self, fleet: bool) -> str:
        """Where its runs execute: ``leader`` on one host (there is no other), else ``run_on`` (default ``any``)."""
        if not fleet:
            return RUN_ON_LEADER
        return self.run_on or RUN_ON_ANY

    @property
    def interval_seconds(self) -> float | None:
        """The period of an interval trigger, else ``None``."""
        interval = getattr(self.trigger, "interval", None)
        return interval.total_seconds() if interval is not None else None

    @property
    def effective_max_runtime(self) -> float:
        """``max_runtime`` from the file, or derived from the trigger.

        The default is the job's period (an interval's length; for cron, the
        gap between its next two fire times), at least
        ``MIN_DEFAULT_MAX_RUNTIME``; a one-off (date) job gets
        ``DATE_JOB_MAX_RUNTIME``. A run still going past it is running too long.
        """
        if self.max_runtime is not None:
            return self.max_runtime
        period = self.interval_seconds
        if period is None and self.trigger_kind == "cron":
            period = _cron_period(self.trigger)
        if period is None:
            return DATE_JOB_MAX_RUNTIME
        return max(period, MIN_DEFAULT_MAX_RUNTIME)

    @property
    def fingerprint(self) -> str:
        """Changes whenever what the job runs or when does: editing the job releases its quarantine."""
        text = repr((self.func_ref, str(self.trigger), self.args, sorted(self.kwargs.items()), self.max_runtime))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _cron_period(trigger: Any) -> float | None:
    now = dt.datetime.now(trigger.timezone)
    first = trigger.get_next_fire_time(None, now)
    second = trigger.get_next_fire_time(first, first + dt.timedelta(microseconds=1)) if first else None
    return (second - first).total_seconds() if first and second else None


class _JobSchema(Schema):
    """Keys every job may have; the trigger's own keys are checked by the trigger schemas."""

    name = fields.String(validate=validate.Length(min=1))
    func = fields.String(required=True, validate=validate.Regexp(
        r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$", error='must look like "package.module:callable"'))
    trigger = fields.String(required=True)
    critical = fields.Boolean(load_default=False)
    paused = fields.Boolean(load_default=False)
    misfire_grace_time = fields.Integer(load_default=DEFAULT_MISFIRE_GRACE_TIME, allow_none=True,
                                        validate=validate.Range(min=1, error="must be 1 or more seconds"))
    max_instances = fields.Integer(load_default=1, validate=validate.Range(min=1, error="must be 1 or more"))
    coalesce = fields.Boolean(load_default=True)
    max_runtime = fields.Float(load_default=None, allow_none=True,
                               validate=validate.Range(min=0, min_inclusive=False, error="must be more than 0 seconds"))
    executor = fields.String(load_default="default", validate=validate.OneOf(["default"], error='must be "default"'))
    args = fields.List(fields.Raw(), load_default=list)
    kwargs = fields.Dict(keys=fields.String(), load_default=dict)
    alert = fields.Boolean(load_default=True)
    alert_after_failures = fields.Integer(load_default=None, allow_none=True,
                                          validate=validate.Range(min=1, error="must be 1 or more"))
    alert_after_recoveries = fields.Integer(load_default=1, validate=validate.Range(min=1, error="must be 1 or more"))
    run_on = fields.String(load_default=None, validate=validate.OneOf(
        RUN_ON_CHOICES, error='must be "any", "leader" or "every-host"'))
    retry_lost = fields.Boolean(load_default=False)


_not_negative = validate.Range(min=0, error="must not be negative")
_CronField = lambda: fields.Raw(validate=lambda v: isinstance(v, (int, str)) or _raise("must be a string or integer"))  # noqa: E731


def _raise(message: str) -> bool:
    raise ValidationError(message)


class _IntervalSchema(Schema):
    class Meta:
        unknown = RAISE

    weeks = fields.Float(validate=_not_negative)
    days = fields.Float(validate=_not_negative)
    hours = fields.Float(validate=_not_negative)
    minutes = fields.Float(validate=_not_negative)
    seconds = fields.Float(validate=_not_negative)
    start_date = fields.Raw()
    end_date = fields.Raw()
    jitter = fields.Integer(validate=_not_negative)


class _CronSchema(Schema):
    class Meta:
        unknown = RAISE

    year = _CronField()
    month = _CronField()
    day = _CronField()
    week = _CronField()
    day_of_week = _CronField()
    hour = _CronField()
    minute = _CronField()
    second = _CronField()
    start_date = fields.Raw()
    end_date = fields.Raw()
    jitter = fields.Integer(validate=_not_negative)


class _DateSchema(Schema):
    class Meta:
        unknown = RAISE

    run_date = fields.Raw(required=True)


_TRIGGER_SCHEMAS = {"interval": _IntervalSchema, "cron": _CronSchema, "date": _DateSchema}
_COMMON_KEYS = set(_JobSchema().fields)


def load_jobs_file(path: str, timezone: str = "UTC") -> list[JobSpec]:
    """Parse and validate ``path``; return the jobs in file order or raise :class:`JobsFileError`."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as error:
        raise JobsFileError(f"jobs file {path}: cannot read it: {error.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise JobsFileError(f"jobs file {path}: is not UTF-8 text") from None
    return parse_jobs(text, path, timezone)


def parse_jobs(text: str, path: str = "<jobs file>", timezone: str = "UTC") -> list[JobSpec]:
    """Validate the TOML ``text``; ``path`` only names it in error messages."""
    _reject_duplicate_ids(text, path)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise JobsFileError(f"jobs file {path}: TOML syntax error: {error}") from None
    unknown = sorted(set(document) - {"jobs"})
    if unknown:
        raise JobsFileError(f"jobs file {path}: unknown top-level key {unknown[0]!r} (only [jobs.<id>] tables)")
    jobs = document.get("jobs", {})
    if not isinstance(jobs, dict):
        raise JobsFileError(f"jobs file {path}: 'jobs' must be a table of [jobs.<id>] tables")
    tz = zoneinfo.ZoneInfo(timezone)
    return [_load_job(job_id, table, tz, path) for job_id, table in jobs.items()]


def _reject_duplicate_ids(text: str, path: str) -> None:
    # tomllib does reject a repeated table, but its message names no job; this one does.
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        match = _HEADER.match(line)
        if not match:
            continue
        job_id = next(group for group in match.groups() if group)
        if job_id in seen:
            raise JobsFileError(
                f"jobs file {path}: job {job_id!r}: duplicate job id (lines {seen[job_id]} and {number})"
            )
        seen[job_id] = number


def _load_job(job_id: str, table: Any, tz: zoneinfo.ZoneInfo, path: str) -> JobSpec:
    where = f"jobs file {path}: job {job_id!r}"
    if not _JOB_ID.match(job_id):
        raise JobsFileError(f"{where}: invalid job id (use letters, digits, '_', '.', '-')")
    if not isinstance(table, dict):
        raise JobsFileError(f"{where}: must be a table [jobs.{job_id}]")
    trigger_kind = table.get("trigger")
    if trigger_kind not in TRIGGERS:
        shown = "missing" if trigger_kind is None else repr(trigger_kind)
        raise JobsFileError(f"{where}: unknown trigger {shown} (expected interval, cron or date)")
    trigger_keys = set(_TRIGGER_SCHEMAS[trigger_kind]().fields)
    for key in table:
        if key not in _COMMON_KEYS and key not in trigger_keys:
            allowed = ", ".join(sorted(_COMMON_KEYS | trigger_keys))
            article = "an" if trigger_kind == "interval" else "a"
            raise JobsFileError(f"{where}: unknown key {key!r} for {article} {trigger_kind} job (allowed: {allowed})")
    common = {key: value for key, value in table.items() if key in _COMMON_KEYS}
    trigger_args = {key: value for key, value in table.items() if key not in _COMMON_KEYS}
    try:
        options = _JobSchema().load(common)
        trigger_args = _TRIGGER_SCHEMAS[trigger_kind]().load(trigger_args)
    except ValidationError as error:
        raise JobsFileError(f"{where}: {_first_problem(error.normalized_messages())}") from None
    trigger = _build_trigger(trigger_kind, trigger_args, tz, where)
    func = _import(options["func"], where)
    return JobSpec(
        id=job_id, name=options.get("name", job_id), func_ref=options["func"], func=func,
        trigger_kind=trigger_kind, trigger=trigger, critical=options["critical"], paused=options["paused"],
        misfire_grace_time=options["misfire_grace_time"], max_instances=options["max_instances"],
        coalesce=options["coalesce"], executor=options["executor"], args=tuple(options["args"]),
        kwargs=dict(options["kwargs"]), max_runtime=options["max_runtime"], alert=options["alert"],
        alert_after_failures=options["alert_after_failures"], alert_after_recoveries=options["alert_after_recoveries"],
        run_on=options["run_on"], retry_lost=options["retry_lost"],
    )


def _first_problem(messages: dict[str, Any]) -> str:
    key, errors = next(iter(sorted(messages.items())))
    if isinstance(errors, dict):
        return f"{key}: {_first_problem(errors)}"
    return f"{key} {plain(errors[0] if isinstance(errors, list) else errors)}"


def _build_trigger(kind: str, args: dict[str, Any], tz: zoneinfo.ZoneInfo, where: str) -> Any:
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.date import DateTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    try:
        if kind == "interval":
            if not any(args.get(unit) for unit in ("weeks", "days", "hours", "minutes", "seconds")):
                raise JobsFileError(f"{where}: an interval needs a positive weeks, days, hours, minutes or seconds")
            units = {unit: args.pop(unit) for unit in ("weeks", "days", "hours", "minutes", "seconds") if unit in args}
            seconds = dt.timedelta(**units).total_seconds()
            return IntervalTrigger(seconds=seconds, timezone=tz, **args)
        if kind == "cron":
            return CronTrigger(timezone=tz, **args)
        return DateTrigger(run_date=args["run_date"], timezone=tz)
    except JobsFileError:
        raise
    except (ValueError, TypeError, OverflowError) as error:
        if kind == "cron":
            raise JobsFileError(f"{where}: bad cron field {_bad_cron_field(args, tz)}: {error}") from None
        raise JobsFileError(f"{where}: bad {kind} trigger: {error}") from None


def _bad_cron_field(args: dict[str, Any], tz: zoneinfo.ZoneInfo) -> str:
    """Name the cron field APScheduler rejected (its message only quotes the value)."""
    from apscheduler.triggers.cron import CronTrigger

    for key, value in args.items():
        try:
            CronTrigger(timezone=tz, **{key: value})
        except (ValueError, TypeError):
            return f"{key}={value!r}"
    return "combination"


def _import(reference: str, where: str) -> Callable[..., Any]:
    module_name, _, attribute = reference.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as error:  # an import may raise anything; report it on one line
        raise JobsFileError(f"{where}: cannot import func {reference!r}: {type(error).__name__}: {error}") from None
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise JobsFileError(f"{where}: cannot import func {reference!r}: {module_name} has no {attribute!r}")
        target = getattr(target, part)
    if not callable(target):
        raise JobsFileError(f"{where}: func {reference!r} is not callable")
    return target
