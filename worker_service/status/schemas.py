"""Marshmallow schemas of the /status payload: the seed's fields, plus what operators need beyond it."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from ..control.health_entry import JOB_STATES, JobHealthSchema
from ..health.schemas import STATUS_WORDS, ComponentsSchema
from ..vocabulary import HostState, RunState, SchedulerState

LEADERSHIP_REASONS = ["first", "released", "handover", "expired", "lost"]
_status = fields.String(required=True, validate=validate.OneOf(STATUS_WORDS))


def _seconds(**kwargs):
    return fields.Float(metadata={"description": "seconds", **kwargs.pop("metadata", {})}, **kwargs)


class ClockJumpSchema(Schema):
    seconds = _seconds(required=True, metadata={"description": "negative: the clock went back"})
    at = fields.String(required=True)


class SchedulerStatusSchema(Schema):
    running = fields.Boolean(required=True)
    timezone = fields.String(required=True)
    state = fields.String(required=True,
                          validate=validate.OneOf([state.value for state in SchedulerState]),
                          metadata={"description": "stopping: shutting down while running jobs finish; "
                                                   "replanning: re-planning the jobs after a wall-clock jump; "
                                                   "unknown: the state store could not be read (the reason is in "
                                                   "dependencies.scheduler.reason)"})
    pid = fields.Integer(allow_none=True, metadata={"description": "process that runs the scheduler: the fleet's "
                                                                  "leader, on whichever host it runs (hostname)"})
    hostname = fields.String(allow_none=True)
    heartbeat_age_seconds = _seconds(allow_none=True)
    started_at = fields.String(allow_none=True)
    last_clock_jump = fields.Nested(ClockJumpSchema, allow_none=True,
                                    metadata={"description": "the last wall-clock jump the leader saw"})


class FleetLeaderSchema(Schema):
    host = fields.String(allow_none=True, required=True)
    pid = fields.Integer(allow_none=True, required=True)
    epoch = fields.Integer(allow_none=True, required=True,
                           metadata={"description": "the lease's fencing token; null on one host (no lease)"})
    lease_expires_at = fields.String(allow_none=True, required=True,
                                     metadata={"description": "by the database's clock; null on one host"})
    lease_expires_in_seconds = _seconds(allow_none=True, required=True,
                                        metadata={"description": "on the database's clock, when the report was built"})
    since = fields.String(allow_none=True, required=True,
                          metadata={"description": "when it took the lease (on one host: when its scheduler started)"})


class FleetProcessSchema(Schema):
    host = fields.String(allow_none=True, required=True)
    pid = fields.Integer(allow_none=True, required=True)


class LeadershipChangeSchema(Schema):
    at = fields.String(required=True)
    epoch = fields.Integer(required=True, metadata={"description": "the lease's epoch from this change on"})
    reason = fields.String(required=True, validate=validate.OneOf(LEADERSHIP_REASONS),
                           metadata={"description": "first: nobody held it before; released: a graceful stop gave it "
                                                    "up; handover: the holder asked another host to take over; "
                                                    "expired: its holder stopped renewing; lost: a holder found it "
                                                    "taken while it could not renew"})
    from_ = fields.Nested(FleetProcessSchema, attribute="from", data_key="from", allow_none=True, required=True)
    to = fields.Nested(FleetProcessSchema, allow_none=True, required=True)


class FleetSchema(Schema):
    """Who leads the fleet's scheduler: the same from every worker of every host."""

    mode = fields.String(required=True, validate=validate.OneOf(["fleet", "single-host"]),
                         metadata={"description": "fleet: hosts share STATE_DATABASE_URL and one scheduler lease"})
    leader = fields.Nested(FleetLeaderSchema, allow_none=True, required=True,
                           metadata={"description": "null: no host holds a live lease (one host: no fresh "
                                                    "heartbeat), or the store could not be read (see error)"})
    changes = fields.List(fields.Nested(LeadershipChangeSchema), required=True,
                          metadata={"description": "the last 10 changes of leader, newest first ([] on one host)"})
    error = fields.String(allow_none=True, required=True,
                          metadata={"description": "why the state store could not be read from this worker"})


class JobsAnalysisSchema(Schema):
    total_jobs = fields.Integer(required=True)
    active_jobs = fields.Integer(required=True)
    paused_jobs = fields.Integer(required=True)
    critical_jobs = fields.Integer(required=True)
    jobs_with_errors = fields.Integer(required=True)
    avg_execution_times = fields.Dict(keys=fields.String(), values=fields.Float(), required=True,
                                      metadata={"description": "seconds, for jobs that have run"})
    p95_execution_times = fields.Dict(keys=fields.String(), values=fields.Float(), required=True, metadata={
        "description": "seconds: each job's p95 duration (nearest rank) over the timed runs of its history "
                       "(its JOB_HISTORY_SIZE newest runs), for jobs that have a timed run"})
    error_rates = fields.Dict(keys=fields.String(), values=fields.Float(), required=True,
                              metadata={"description": "percent 0-100 of finished runs that failed; jobs with errors only"})
    job_health = fields.Dict(keys=fields.String(), values=fields.Nested(JobHealthSchema), required=True)


class LastErrorSchema(Schema):
    type = fields.String(required=True)
    message = fields.String(required=True)
    timestamp = fields.String(allow_none=True, required=True)


class RunningSchema(Schema):
    instances = fields.Integer(required=True)
    since = fields.String(required=True, metadata={"description": "when the oldest of them started"})


class ScheduledJobSchema(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    next_run_time = fields.String(allow_none=True, required=True)
    trigger = fields.String(required=True)
    misfire_grace_time = fields.Float(allow_none=True, required=True)
    max_instances = fields.Integer(required=True)
    executor = fields.String(required=True)
    avg_execution_time = _seconds(allow_none=True, required=True)
    p95_execution_time = _seconds(allow_none=True, required=True, metadata={
        "description": "seconds: p95 duration (nearest rank) over the timed runs among the job's JOB_HISTORY_SIZE "
                       "newest runs, as of its last timed run; null before one"})
    min_execution_time = _seconds(allow_none=True, required=True)
    max_execution_time = _seconds(allow_none=True, required=True)
    error_count = fields.Integer(required=True)
    success_count = fields.Integer(required=True)
    missed_count = fields.Integer(required=True)
    max_instances_count = fields.Integer(required=True)
    paused = fields.Boolean(required=True)
    critical = fields.Boolean(required=True)
    max_runtime = _seconds(allow_none=True, metadata={"description": "a run going longer is running too long"})
    running = fields.Nested(RunningSchema, allow_none=True,
                            metadata={"description": "runs in progress now (null when none)"})
    crash_count = fields.Integer(metadata={"description": "runs whose worker died under them"})
    quarantined = fields.Boolean(metadata={"description": "held back for killing its worker JOB_CRASH_LIMIT "
                                                          "times in a row, until it is changed"})
    last_error = fields.Nested(LastErrorSchema, allow_none=True, required=True)


class CpuSchema(Schema):
    percent = fields.Float(required=True)
    count = fields.Integer(required=True)


class MemorySchema(Schema):
    """Total and used, in GB, and the percentage used."""

    total_gb = fields.Float(required=True)
    used_gb = fields.Float(required=True)
    percent = fields.Float(required=True)


class DiskSchema(MemorySchema):
    """The same figures for the filesystem holding ``path``."""

    path = fields.String(required=True)


class NetworkSchema(Schema):
    bytes_sent_mb = fields.Float(required=True)
    bytes_recv_mb = fields.Float(required=True)
    packets_sent = fields.Integer(required=True)
    packets_recv = fields.Integer(required=True)


class ProcessSchema(Schema):
    pid = fields.Integer(required=True)
    memory_mb = fields.Float(required=True)
    cpu_percent = fields.Float(required=True)
    threads = fields.Integer(required=True)
    open_files = fields.Integer(required=True, metadata={"description": "open file descriptors (num_fds)"})


class SystemResourcesSchema(Schema):
    cpu = fields.Nested(CpuSchema, required=True)
    memory = fields.Nested(MemorySchema, required=True)
    disk = fields.Nested(DiskSchema, required=True)
    network = fields.Nested(NetworkSchema, required=True)
    process = fields.Nested(ProcessSchema, required=True)


class DependencySchema(Schema):
    status = _status
    backend = fields.String(required=True)
    latency_seconds = _seconds(allow_none=True, required=True)
    checked_at = fields.String(required=True, metadata={"description": "when the check ended"})
    age_seconds = _seconds(required=True, metadata={
        "description": "age of the result when the report was built: at most HEALTH_CACHE_TTL + 2 x "
                       "HEALTH_CHECK_TIMEOUT for cache and database; the scheduler is judged when the report is built"})
    reason = fields.String(allow_none=True, required=True)


class AlertChannelSchema(Schema):
    id = fields.String(required=True, metadata={"description": "stable name, shows nothing of the URL (the outbox's)"})
    type = fields.String(required=True, validate=validate.OneOf(["webhook", "apprise"]))
    url = fields.String(required=True, metadata={"description": "masked: scheme and (HTTP, e-mail) host only"})


class AlertDeliverySchema(Schema):
    id = fields.Integer(required=True)
    created_at = fields.String(allow_none=True, required=True)
    status = fields.String(required=True, validate=validate.OneOf(["firing", "resolved"]))
    kind = fields.String(allow_none=True, required=True)
    subject = fields.String(allow_none=True, required=True)
    state = fields.String(allow_none=True, required=True)
    reason = fields.String(allow_none=True, required=True)
    channel = fields.String(required=True)
    outcome = fields.String(required=True, validate=validate.OneOf(["pending", "sent", "failed"]))
    attempts = fields.Integer(required=True)
    last_error = fields.String(allow_none=True, required=True, metadata={"description": "redacted"})
    finished_at = fields.String(allow_none=True, required=True)


class FiringAlertSchema(Schema):
    key = fields.String(required=True)
    kind = fields.String(required=True)
    subject = fields.String(required=True)
    state = fields.String(required=True)
    since = fields.String(allow_none=True, required=True)
    reason = fields.String(allow_none=True, required=True)


class AlertsSchema(Schema):
    enabled = fields.Boolean(required=True, metadata={"description": "a channel is configured"})
    channels = fields.List(fields.Nested(AlertChannelSchema), required=True)
    pending = fields.Integer(allow_none=True, required=True, metadata={"description": "notifications not yet sent"})
    oldest_pending_age_seconds = _seconds(allow_none=True, required=True)
    last_failure = fields.Nested(AlertDeliverySchema, allow_none=True, required=True,
                                 metadata={"description": "the last delivery whose try failed (retried or not)"})
    sent = fields.Integer(allow_none=True, required=True)
    failed = fields.Integer(allow_none=True, required=True, metadata={"description": "given up for good"})
    firing = fields.List(fields.Nested(FiringAlertSchema), required=True)
    recent = fields.List(fields.Nested(AlertDeliverySchema), required=True, metadata={"description": "newest first"})
    error = fields.String(allow_none=True, required=True, metadata={"description": "why the outbox could not be read"})


class HostSchema(Schema):
    """One executing process of the fleet (one host: the one entry its heartbeat makes)."""

    host = fields.String(required=True, metadata={"description": "the host name people read"})
    id = fields.String(required=True, metadata={"description": "the full host identity (hostname#machine.instance); "
                                                               "on one host, the host name"})
    pid = fields.Integer(required=True)
    threads = fields.Integer(required=True, metadata={"description": "JOB_EXECUTOR_THREADS of that host"})
    claimed = fields.Integer(required=True, metadata={"description": "runs it holds now"})
    free = fields.Integer(required=True, metadata={"description": "threads it could take runs with now (0 unless "
                                                                  "active)"})
    state = fields.String(required=True, validate=validate.OneOf([state.value for state in HostState]),
                          metadata={"description": "active; stopping: a stop or reload, it takes no more runs while "
                                                   "its last ones finish; expired: its row (one host: its heartbeat) "
                                                   "ran out, or a process of its machine saw it dead; its runs are "
                                                   "settled lost (or crashed)"})
    heartbeat_age_seconds = _seconds(allow_none=True, required=True,
                                     metadata={"description": "since its last renewal, on the database's clock"})
    claims = fields.Integer(allow_none=True, required=True,
                            metadata={"description": "runs it claimed since it started; null on one host"})
    claim_wait_avg_seconds = _seconds(allow_none=True, required=True, metadata={
        "description": "mean wait of its claimed runs between planned and claimed; null before a claim"})
    claim_wait_max_seconds = _seconds(allow_none=True, required=True)
    lost_runs = fields.Integer(allow_none=True, required=True,
                               metadata={"description": "its runs settled lost; null on one host"})


class RunInFlightSchema(Schema):
    """A run not finished yet, and where it runs."""

    job_id = fields.String(required=True)
    run_id = fields.Integer(required=True)
    host = fields.String(allow_none=True, required=True, metadata={"description": "null while it waits"})
    pid = fields.Integer(allow_none=True, required=True)
    state = fields.String(required=True, validate=validate.OneOf([state.value for state in RunState]),
                          metadata={"description": "running; waiting: planned, no host claimed it yet; stopping: "
                                                   "its process stops and lets it finish"})
    scheduled_at = fields.String(required=True, metadata={"description": "its slot"})
    started_at = fields.String(allow_none=True, required=True)
    trigger = fields.String(required=True, metadata={"description": "scheduled, or manual (run now)"})


class MetricsSchema(Schema):
    service_type = fields.String(required=True)
    uptime_seconds = _seconds(required=True)
    uptime_formatted = fields.String(required=True, metadata={"example": "1d 0h 0m"})
    scheduler_status = fields.Nested(SchedulerStatusSchema, required=True)
    fleet = fields.Nested(FleetSchema, required=True)
    jobs_analysis = fields.Nested(JobsAnalysisSchema, required=True)
    scheduled_jobs = fields.List(fields.Nested(ScheduledJobSchema), required=True)
    system_resources = fields.Nested(SystemResourcesSchema, required=True)
    dependencies = fields.Dict(keys=fields.String(), values=fields.Nested(DependencySchema), required=True)
    alerts = fields.Nested(AlertsSchema, required=True, metadata={"description": "README, Alerts"})


class StatusSchema(Schema):
    """``GET /status``: the seed's detailed view."""

    status = _status
    components = fields.Nested(ComponentsSchema, required=True)
    metrics = fields.Nested(MetricsSchema, required=True)
    timestamp = fields.String(required=True)
    service = fields.String(required=True)
    hosts = fields.List(fields.Nested(HostSchema), required=True, metadata={
        "description": "the executing hosts, one entry per process (a reload shows two for a moment); [] when the "
                       "store cannot be read or, on one host, before a scheduler ever ran"})
    running = fields.List(fields.Nested(RunInFlightSchema), required=True,
                          metadata={"description": "the runs in flight, oldest first"})


class OverviewJobsSchema(Schema):
    """The job counts of ``jobs_analysis``, without its maps of one entry per job, and the jobs in each state."""

    total_jobs = fields.Integer(required=True)
    active_jobs = fields.Integer(required=True)
    paused_jobs = fields.Integer(required=True)
    critical_jobs = fields.Integer(required=True)
    jobs_with_errors = fields.Integer(required=True)
    states = fields.Dict(keys=fields.String(validate=validate.OneOf(JOB_STATES)), values=fields.Integer(),
                         required=True, metadata={"description": "how many jobs are in each state (absent: none)"})


class OverviewMetricsSchema(MetricsSchema):
    """``metrics`` of the overview: as /status's, with no list or map of every job."""

    class Meta:
        exclude = ("scheduled_jobs",)

    jobs_analysis = fields.Nested(OverviewJobsSchema, required=True)


class OverviewSchema(Schema):
    """``GET /status/overview``: the /status report without its per-job parts (the status page's refresh)."""

    status = _status
    components = fields.Nested(ComponentsSchema, required=True)
    metrics = fields.Nested(OverviewMetricsSchema, required=True)
    timestamp = fields.String(required=True)
    service = fields.String(required=True)
    hosts = fields.List(fields.Nested(HostSchema), required=True)
    running = fields.List(fields.Nested(RunInFlightSchema), required=True,
                          metadata={"description": "the oldest runs in flight (at most 20)"})
    running_total = fields.Integer(required=True, metadata={"description": "all the runs in flight"})


class RunChartSchema(Schema):
    """``GET /status/runs``: runs per minute by outcome over the last hour, from the kept run history."""

    start = fields.String(required=True, metadata={"description": "the first minute (ISO-8601, UTC)"})
    minutes = fields.Integer(required=True, metadata={"description": "how many minutes each list holds"})
    counts = fields.Dict(keys=fields.String(), values=fields.List(fields.Integer()), required=True,
                         metadata={"description": "outcome -> runs finished in each minute, oldest first"})
    timestamp = fields.String(required=True)
