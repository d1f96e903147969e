"""Configuration from environment variables, validated at start-up.

Every variable is a field of :class:`SettingsSchema`; its ``metadata`` holds
the help text the README repeats. A bad value raises :class:`ConfigError`,
whose message is one line naming the variable and what is wrong, and never
echoes the value of a secret.
"""

from __future__ import annotations

import contextlib
import os
import zoneinfo
from collections.abc import Mapping
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate

from common.helpers.health import register_secret, register_url_secrets

from .channel_urls import register_channel_secrets
from .messages import plain
from .state_dir import default_state_dir

COMPONENTS = ("cache", "database", "scheduler")
# The crash policy's defaults (JOB_CRASH_LIMIT, JOB_CRASH_BACKOFF), for settings that never went through the schema.
CRASH_LIMIT_DEFAULT = 3
CRASH_BACKOFF_DEFAULT = 10.0
# The same for the fleet's lease and clock bound, and a host's job threads.
LEASE_TTL_DEFAULT = 10.0
MAX_CLOCK_SKEW_DEFAULT = 2.0
EXECUTOR_THREADS_DEFAULT = 10
BUILTIN_JOBS_FILE = str(resources.files("worker_service.jobs").joinpath("builtin.toml"))

_positive = validate.Range(min=0, min_inclusive=False, error="must be greater than 0")
_not_negative = validate.Range(min=0, error="must be 0 or more")


class ConfigError(Exception):
    """The configuration is unusable; ``str(error)`` is one line meant for an operator."""


def _url(*schemes: str):
    def check(value: str) -> None:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            # The parser's own message can quote part of a password: never show it.
            raise ValidationError(
                "is not a valid URL (a bad port, or a password with an unencoded @ / # ?: percent-encode the password)"
            ) from None
        if parts.scheme not in schemes:
            raise ValidationError(f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}")
        if parts.scheme != "unix" and not parts.hostname:
            raise ValidationError("has no host name")

    return check


def _postgres_url(value: str) -> None:
    """A PostgreSQL URL that libpq reads as a URL parser does: the same password, no user part in the host.

    libpq ends the user part at the *first* ``@`` (Python's parser, and so the
    redactor, at the last): with ``u:Db@Canary_22@host`` it sends ``Db`` as the
    password and resolves ``Canary_22@host``, and every "failed to resolve
    host" reason, log line and job error then shows the password's tail. Such
    a URL is refused here, before anything connects, without echoing it.
    """
    _url("postgres", "postgresql")(value)
    from psycopg import Error
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(value)
    except Error:  # libpq's message may quote the password
        raise ValidationError("is not a valid PostgreSQL URL") from None
    # libpq's user part and hosts end at the first "/": a password's "/" puts its tail and the host in the path.
    authority, _, path = value.partition("://")[2].split("?", 1)[0].partition("/")
    if authority.count("@") > 1 or "@" in str(params.get("host") or ""):
        user = authority.rpartition("@")[0].partition(":")[0]
        if "@" in user:  # "user@server:password@host", as Azure spells its user names
            raise ValidationError("has an unencoded @ in its user name (PostgreSQL clients take the host from the "
                                  "first @): percent-encode the password and the user name (@ as %40)")
        raise ValidationError("has an unencoded @ in its password (PostgreSQL clients take the host from the "
                              "first @): percent-encode the password (@ as %40)")
    if "@" in path:
        raise ValidationError("has an unencoded / or @ in its password or database name: percent-encode the "
                              "password (/ as %2F, @ as %40)")


def _postgres_password(url: str | None) -> str | None:
    """The password libpq sends for ``url`` (decoded), whatever a URL parser makes of it; ``None`` if none."""
    if not url:
        return None
    from psycopg import Error
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(url).get("password") or None
    except Error:
        return None


def _timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError("is not a known time zone (e.g. UTC, Europe/Madrid)") from None


class CommaList(fields.Field):
    """A comma-separated string, loaded as a list of stripped, non-empty items."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> list[str]:
        if isinstance(value, (list, tuple)):
            return [str(item).strip() for item in value if str(item).strip()]
        if not isinstance(value, str):
            raise ValidationError("must be a comma-separated list")
        return [item.strip() for item in value.split(",") if item.strip()]


def _apprise_url(value: str) -> None:
    scheme, separator, rest = value.partition("://")
    if not separator or not scheme.isascii() or not scheme.replace("+", "").isalnum() or not rest:
        raise ValidationError("must be Apprise URLs such as slack://..., mailto://..., json://host/path")


def _components(value: list[str]) -> None:
    if not value:  # "," or " , " would make a service that can never report unavailable
        raise ValidationError(f"must name at least one component (known: {', '.join(COMPONENTS)})")
    unknown = [name for name in value if name not in COMPONENTS]
    if unknown:
        raise ValidationError(f"unknown component {', '.join(repr(n) for n in unknown)} (known: {', '.join(COMPONENTS)})")


def _secret(**kwargs: Any) -> dict:
    return {"secret": True, **kwargs}


class SettingsSchema(Schema):
    """The service's environment variables. Unknown variables are ignored."""

    class Meta:
        unknown = EXCLUDE

    SERVICE_NAME = fields.String(load_default="worker-service", validate=validate.Length(1, 100),
                                 metadata={"help": "Name reported as `service` in every payload."})
    LOG_LEVEL = fields.String(load_default="INFO",
                              validate=validate.OneOf(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                                                      error="must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
                              metadata={"help": "Log level of the application's loggers."})
    WORKER_STATE_DIR = fields.String(load_default=default_state_dir, validate=validate.Length(min=1),
                                     metadata={"help": "Local state: SQLite files, the scheduler lock. Created if missing. "
                                                       "Unset: systemd's $STATE_DIRECTORY, else ./var in a source "
                                                       "checkout, else ~/.local/state/worker-service."})
    STATE_DATABASE_URL = fields.String(
        load_default=None, allow_none=True, validate=_postgres_url,
        metadata=_secret(help="PostgreSQL shared by several hosts for the state store and the scheduler lease "
                              "(fleet mode). Unset: SQLite in WORKER_STATE_DIR, one host."))
    STATE_DATABASE_SCHEMA = fields.String(
        load_default="worker_service",
        validate=validate.Regexp(r"^[a-z_][a-z0-9_]{0,62}$", error="must be a lower-case schema name"),
        metadata={"help": "Schema of the state store in STATE_DATABASE_URL (created and migrated at start)."})
    STATE_DATABASE_TIMEOUT = fields.Float(
        load_default=2.0, validate=[_positive, validate.Range(max=30, error="must be 30 or less")],
        metadata={"help": "Seconds one state-store call may take in fleet mode (connect, pooled connection, statement)."})
    SCHEDULER_LEASE_TTL = fields.Float(
        load_default=LEASE_TTL_DEFAULT, validate=validate.Range(min=2, max=300, error="must be between 2 and 300"),
        metadata={"help": "Seconds the fleet's scheduler lease lasts without a renewal; renewed every third of it."})
    SCHEDULER_MAX_CLOCK_SKEW = fields.Float(
        load_default=MAX_CLOCK_SKEW_DEFAULT, validate=validate.Range(min=0.1, max=3600, error="must be between 0.1 and 3600"),
        metadata={"help": "Seconds a fleet host's wall clock may differ from the state database's and still lead."})

    REDIS_URL = fields.String(load_default=None, allow_none=True, validate=_url("redis", "rediss", "unix"),
                              metadata=_secret(help="Redis for the cache. Unset: an in-process cache."))
    CACHE_SOCKET_TIMEOUT = fields.Float(load_default=2.0, validate=_positive,
                                        metadata={"help": "Seconds a cache operation of a job may take."})

    SUPABASE_URL = fields.String(load_default=None, allow_none=True, validate=_url("http", "https"),
                                 metadata=_secret(help="Supabase project URL (wins over DATABASE_URL)."))
    SUPABASE_KEY = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=1),
                                 metadata=_secret(help="Supabase API key (anon or service role)."))
    SUPABASE_HEALTH_TABLE = fields.String(load_default="accounts", validate=validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_]*$", error="must be a table name"),
                                          metadata={"help": "Small table the Supabase check sends HEAD ... limit=1 to."})
    DATABASE_URL = fields.String(load_default=None, allow_none=True, validate=_postgres_url,
                                 metadata=_secret(help="PostgreSQL connection URL (psycopg 3)."))
    DATABASE_TIMEOUT = fields.Float(load_default=5.0, validate=_positive,
                                    metadata={"help": "Seconds a database call of a job may take."})
    ACCOUNTS_TABLE = fields.String(load_default="accounts", validate=validate.Regexp(r"^[A-Za-z_][A-Za-z0-9_]*$", error="must be a table name"),
                                   metadata={"help": "Table the built-in account jobs read."})

    HEALTH_CHECK_TIMEOUT = fields.Float(load_default=0.5, validate=[_positive, validate.Range(max=30, error="must be 30 or less")],
                                        metadata={"help": "Seconds one component check may take before it counts as unavailable."})
    HEALTH_CACHE_TTL = fields.Float(load_default=2.0, validate=_not_negative,
                                    metadata={"help": "Seconds a check result is reused; 0 checks on every request."})
    HEALTH_CRITICAL_COMPONENTS = CommaList(load_default=lambda: list(COMPONENTS), validate=_components,
                                           metadata={"help": "Components whose failure makes the service unavailable."})

    STATUS_TOKEN = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=8, error="must be at least 8 characters"),
                                 metadata=_secret(help="If set, /status, /metrics and /jobs need `Authorization: Bearer <token>` (or HTTP Basic with the token as the password)."))
    ADMIN_TOKEN = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=16, error="must be at least 16 characters"),
                                metadata=_secret(help="Needed for job control (POST /jobs/<id>/run|pause|resume); it also reads. Unset: control is off."))
    STATUS_DISK_PATH = fields.String(load_default=None, allow_none=True,
                                     metadata={"help": "Filesystem reported under disk in /status. Default: the state directory."})
    STATUS_CACHE_TTL = fields.Float(load_default=1.0, validate=_not_negative,
                                    metadata={"help": "Seconds a /status report is reused by a worker; 0 builds it every time."})

    WORKER_JOBS_FILE = fields.String(load_default=BUILTIN_JOBS_FILE,
                                     metadata={"help": "TOML file declaring the jobs. Default: the built-in jobs."})
    SCHEDULER_TIMEZONE = fields.String(load_default="UTC", validate=_timezone,
                                       metadata={"help": "Time zone of cron and date triggers."})
    SCHEDULER_AUTOSTART = fields.Boolean(load_default=False,
                                         metadata={"help": "Outside gunicorn (flask run), start the scheduler in create_app."})
    SCHEDULER_HEARTBEAT_INTERVAL = fields.Float(load_default=5.0, validate=_positive,
                                                metadata={"help": "Seconds between the scheduler's heartbeats; stale after 3 of them."})
    JOB_FAILURE_THRESHOLD = fields.Integer(load_default=3, validate=validate.Range(min=1, error="must be 1 or more"),
                                           metadata={"help": "Consecutive failures that make a job unhealthy."})
    JOB_OVERDUE_GRACE = fields.Float(load_default=60.0, validate=_not_negative,
                                     metadata={"help": "Seconds past its next run time before a job counts as overdue."})
    JOB_HISTORY_SIZE = fields.Integer(load_default=50, validate=validate.Range(min=1, max=10000, error="must be between 1 and 10000"),
                                      metadata={"help": "Runs kept per job in the history."})
    JOB_CRASH_LIMIT = fields.Integer(load_default=CRASH_LIMIT_DEFAULT, validate=validate.Range(min=1, max=100, error="must be between 1 and 100"),
                                     metadata={"help": "Crashes of its worker in a row (a job that kills its process) before a job is quarantined."})
    JOB_CRASH_BACKOFF = fields.Float(load_default=CRASH_BACKOFF_DEFAULT, validate=_positive,
                                     metadata={"help": "Seconds a job is held back after it crashed its worker; doubles with each crash in a row."})
    JOB_EXECUTOR_THREADS = fields.Integer(load_default=EXECUTOR_THREADS_DEFAULT, validate=validate.Range(min=1, max=500, error="must be between 1 and 500"),
                                          metadata={"help": "Threads that run jobs on this host (1 to 500). A run due while all are busy waits for one, within its misfire_grace_time."})
    CLEANUP_DIR = fields.String(load_default=None, allow_none=True,
                                metadata={"help": "Directory cleanup_temporary_files empties. Default: <state dir>/tmp."})
    CLEANUP_MAX_AGE = fields.Float(load_default=86400.0, validate=_not_negative,
                                   metadata={"help": "Age in seconds past which cleanup_temporary_files deletes a file."})

    ALERT_WEBHOOK_URLS = CommaList(load_default=list, validate=lambda urls: [_url("http", "https")(u) for u in urls],
                                   metadata=_secret(help="Comma-separated URLs each alert is POSTed to as JSON (README, Alerts). Unset: no webhook."))
    ALERT_WEBHOOK_SECRET = fields.String(load_default=None, allow_none=True, validate=validate.Length(min=8, error="must be at least 8 characters"),
                                         metadata=_secret(help="If set, each webhook carries X-Worker-Service-Signature-256: sha256=<HMAC-SHA256 of the body>."))
    ALERT_APPRISE_URLS = CommaList(load_default=list, validate=lambda urls: [_apprise_url(u) for u in urls],
                                   metadata=_secret(help="Comma-separated Apprise URLs (slack://, msteams://, mailto://, pagerduty://, tgram://, ntfy://, ...)."))
    ALERT_ON = fields.String(load_default="unhealthy", validate=validate.OneOf(["unhealthy", "warning"]),
                             metadata={"help": "A job alerts when it becomes unhealthy, or (warning) already when it becomes warning."})
    ALERT_REPEAT = fields.Float(load_default=0.0, validate=_not_negative,
                                metadata={"help": "Seconds between repeats of an alert that is still firing; 0: never repeated."})
    ALERT_TIMEOUT = fields.Float(load_default=5.0, validate=[_positive, validate.Range(max=60, error="must be 60 or less")],
                                 metadata={"help": "Seconds one delivery attempt may take (connect and answer)."})
    ALERT_RETRY_FOR = fields.Float(load_default=1200.0, validate=validate.Range(min=1, error="must be 1 or more"),
                                   metadata={"help": "Seconds a notification is retried (exponential backoff with jitter) before it is given up."})
    ALERT_HOLD = fields.Float(load_default=60.0, validate=_not_negative,
                              metadata={"help": "Seconds a metric rule must hold (over or back under its threshold) before it fires or resolves."})
    ALERT_INTERVAL = fields.Float(load_default=1.0, validate=[_positive, validate.Range(max=60, error="must be 60 or less")],
                                  metadata={"help": "Seconds between the leader's looks at the jobs, components and metrics."})
    ALERT_DISK_PERCENT = fields.Float(load_default=90.0, validate=validate.Range(min=0, max=100, error="must be between 0 and 100"),
                                      metadata={"help": "Alert when STATUS_DISK_PATH is this full (percent); 0: off."})
    ALERT_MEMORY_PERCENT = fields.Float(load_default=90.0, validate=validate.Range(min=0, max=100, error="must be between 0 and 100"),
                                        metadata={"help": "Alert when the host's memory is this used (percent); 0: off."})
    ALERT_DURATION_PERCENT = fields.Float(load_default=80.0, validate=validate.Range(min=0, max=100, error="must be between 0 and 100"),
                                          metadata={"help": "Alert when a job's p95 duration reaches this share of its max_runtime (percent); 0: off."})
    ALERT_ERROR_RATE_PERCENT = fields.Float(load_default=50.0, validate=validate.Range(min=0, max=100, error="must be between 0 and 100"),
                                            metadata={"help": "Alert when this share of a job's last 20 runs failed while it is under its failure threshold (percent); 0: off."})
    ALERT_PUBLIC_URL = fields.String(load_default=None, allow_none=True, validate=_url("http", "https"),
                                     metadata={"help": "Base URL of the service as operators reach it, for the url field of alerts. Unset: a path (/status#job=<id>: the status page, filtered to the job)."})

    @post_load
    def _derive(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        if bool(data["SUPABASE_URL"]) != bool(data["SUPABASE_KEY"]):
            missing = "SUPABASE_KEY" if data["SUPABASE_URL"] else "SUPABASE_URL"
            raise ValidationError("is required when the other Supabase variable is set", missing)
        if data["STATE_DATABASE_URL"] and data["STATE_DATABASE_TIMEOUT"] * 4 > data["SCHEDULER_LEASE_TTL"]:
            # A renewal (every TTL/3) that may take the whole timeout must still land well before the lease ends.
            raise ValidationError(f"must be at most a quarter of SCHEDULER_LEASE_TTL ({data['SCHEDULER_LEASE_TTL']:g})",
                                  "STATE_DATABASE_TIMEOUT")
        if data["ADMIN_TOKEN"] and data["ADMIN_TOKEN"] == data["STATUS_TOKEN"]:
            raise ValidationError("must differ from STATUS_TOKEN (a reader could run jobs)", "ADMIN_TOKEN")
        state_dir = os.path.abspath(data["WORKER_STATE_DIR"])
        # Whether the directory is usable is checked by `check-config` (state.setup.check_state_store), not
        # here: every worker loads the settings, and a worker must degrade, never die, when its disk goes bad.
        with contextlib.suppress(OSError):
            os.makedirs(state_dir, exist_ok=True)
        data["WORKER_STATE_DIR"] = state_dir
        data["STATUS_DISK_PATH"] = data["STATUS_DISK_PATH"] or state_dir
        data["CLEANUP_DIR"] = os.path.abspath(data["CLEANUP_DIR"] or os.path.join(state_dir, "tmp"))
        if os.path.commonpath([data["CLEANUP_DIR"], state_dir]) == data["CLEANUP_DIR"]:
            # The cleanup job deletes old files: in the state dir that would be the scheduler lock (two leaders).
            raise ValidationError("must not be the state directory or contain it (WORKER_STATE_DIR)", "CLEANUP_DIR")
        return data


def check_cleanup_dir(settings: Mapping[str, Any]) -> str | None:
    """One line if ``CLEANUP_DIR`` names a directory that is not there, else ``None``.

    At the start only (``check-config``, gunicorn's ``on_starting``), like the
    state directory's check: a directory that goes away later fails the
    cleanup job's runs, never a worker. The default, ``<state dir>/tmp``, is the
    service's own and is created by the job.
    """
    directory = settings["CLEANUP_DIR"]
    if directory == os.path.join(settings["WORKER_STATE_DIR"], "tmp") or os.path.isdir(directory):
        return None
    problem = "is not a directory" if os.path.exists(directory) else "does not exist (create it, or leave CLEANUP_DIR unset)"
    return f"configuration error: CLEANUP_DIR={directory!r} {problem}"


def fleet_mode(settings: Mapping[str, Any]) -> bool:
    """Whether the hosts share a state database and one scheduler lease (``STATE_DATABASE_URL`` is set).

    The one statement of the rule; the process's resources carry it as
    :attr:`worker_service.resources.Coordination.is_fleet`.
    """
    return bool(settings.get("STATE_DATABASE_URL"))


_POSTGRES_URLS = ("DATABASE_URL", "STATE_DATABASE_URL")
SECRET_VARIABLES = tuple(name for name, field in SettingsSchema().fields.items() if field.metadata.get("secret"))


def load_settings(environ: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read the variables from ``environ`` (default ``os.environ``), apply ``overrides`` and validate.

    Empty strings count as unset. Raises :class:`ConfigError` with one line.
    """
    environ = os.environ if environ is None else environ
    names = SettingsSchema().fields
    raw: dict[str, Any] = {name: environ[name] for name in names if environ.get(name, "") != ""}
    raw.update({key: value for key, value in (overrides or {}).items() if key in names and value is not None})
    raw.setdefault("WORKER_STATE_DIR", default_state_dir(environ))  # from the environment given, as the rest
    try:
        settings = SettingsSchema().load(raw)
    except ValidationError as error:
        raise ConfigError(_one_line(error.normalized_messages(), raw)) from None
    _register_secrets(settings)
    return settings


def _register_secrets(settings: Mapping[str, Any]) -> None:
    """Tell the redactor every secret value, so no log line or payload can show one."""
    for name in SECRET_VARIABLES:
        value = settings.get(name)
        if name.endswith("_URL"):
            register_url_secrets(value)
            if name in _POSTGRES_URLS:  # what libpq sends, where a URL parser reads it otherwise ("p#w@h")
                register_secret(_postgres_password(value))
        elif name.endswith("_URLS"):
            for url in value or ():
                register_channel_secrets(url)
        elif value:
            register_secret(value)


def _one_line(messages: dict[str, Any], raw: Mapping[str, Any]) -> str:
    problems = []
    for name, errors in sorted(messages.items()):
        text = "; ".join(plain(e) for e in (errors if isinstance(errors, list) else [errors]))
        if name in SECRET_VARIABLES or name not in raw:
            problems.append(f"{name} {text}")
        else:
            problems.append(f"{name}={str(raw[name])[:80]!r} {text}")
    return "configuration error: " + "; ".join(problems)
