"""Every host tells the fleet's truth: /health's scheduler, /status's fleet block, /metrics and the status table.

Fleet mode runs on a real PostgreSQL store on a scratch schema (apps built with STATE_DATABASE_URL, as hosts are);
the lease is taken with the real PostgresLease under other host names. "This host cannot reach the state database"
is a real TcpProxy between the app and PostgreSQL, cut (refused) or frozen (silent). One host is the SQLite store.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid

import pytest

from common.helpers.health import format_timestamp
from tests.support.pg import DATABASE_URL, FAST_URL, scratch_schema
from tests.support.servers import wait_until
from tests.support.tcp_proxy import TcpProxy
from worker_service.cli.status_table import render
from worker_service.host_identity import host_id
from worker_service.scheduler.heartbeat import LEADERS

HOST_B = "host-b.fleet.test"  # another host: never this one
FLEET = {"HEALTH_CACHE_TTL": 0, "STATUS_CACHE_TTL": 0, "SCHEDULER_HEARTBEAT_INTERVAL": 1.0,
         "SCHEDULER_LEASE_TTL": 2.0, "STATE_DATABASE_TIMEOUT": 0.5, "HEALTH_CRITICAL_COMPONENTS": "scheduler"}


@pytest.fixture(autouse=True)
def forget_leaders():
    """The last leader a process read is process-wide (as in a worker); each test starts with none."""
    LEADERS.note(None)
    yield
    LEADERS.note(None)


@pytest.fixture
def fleet_app(make_app):
    """``fleet_app(url=..., **settings)``: a "host" on one scratch schema (each app its own store and connections)."""
    with scratch_schema() as schema:
        def build(url: str = FAST_URL, **settings):
            return make_app(STATE_DATABASE_URL=url, STATE_DATABASE_SCHEMA=schema, **{**FLEET, **settings})

        yield build


def lead(store, host: str = HOST_B, pid: int = 4242, ttl: float = 30.0, beat: bool = True):
    """Take the fleet's lease as ``host`` pid ``pid`` (a real acquire) and, with ``beat``, write its heartbeat."""
    from worker_service.state.pg_lease import PostgresLease

    session = uuid.uuid4().hex
    lease = PostgresLease(store, ttl)
    grant = lease.acquire(host, pid, session)
    assert grant is not None and grant.expires_in > 0, grant
    if beat:
        store.fenced(grant.epoch).beat(pid, host, "running", "UTC", time.time() - 60, session)
    return lease, grant


def scheduler(client):
    body = client.get("/health/scheduler?verbose").get_data(as_text=True)
    status = client.get("/status").json["metrics"]["dependencies"]["scheduler"]
    return status["status"], status["reason"], body


# -- /health's scheduler component -------------------------------------------------------------------------------


def test_the_scheduler_is_available_when_another_hosts_leader_holds_a_live_lease_and_beats(fleet_app):
    app = fleet_app()
    _, record = lead(app.extensions["store"])
    client = app.test_client()
    health = client.get("/health")
    assert (health.status_code, health.json["components"]["scheduler"]) == (200, "available")
    assert set(health.json) == {"status", "components", "timestamp", "service"}  # the seed's body, unchanged
    metrics = client.get("/status").json["metrics"]
    assert metrics["scheduler_status"]["hostname"] == HOST_B and metrics["scheduler_status"]["pid"] == 4242
    assert metrics["scheduler_status"]["running"] is True
    leader = metrics["fleet"]["leader"]
    assert (metrics["fleet"]["mode"], leader["host"], leader["pid"], leader["epoch"]) == ("fleet", HOST_B, 4242,
                                                                                          record.epoch)
    assert 25 < leader["lease_expires_in_seconds"] <= 30


def test_no_live_lease_is_unavailable_and_names_the_last_holder_and_how_long_ago(fleet_app):
    app = fleet_app()
    store, client = app.extensions["store"], app.test_client()
    assert scheduler(client)[:2] == ("unavailable", "no host has led the fleet yet (the scheduler lease was never taken)")

    _, record = lead(store, ttl=0.3)
    # Both views must have seen the expiry (the /health body is read a moment before /status).
    expired = wait_until(lambda: (s := scheduler(client))[0] == "unavailable" and "[-]" in s[2] and s, timeout=3,
                         what="the lease to expire")
    assert re.fullmatch(rf"no host leads the fleet: the scheduler lease of {re.escape(HOST_B)} pid 4242 "
                        rf"\(epoch {record.epoch}\) expired \d+ s ago", expired[1]), expired
    assert "[-]scheduler failed: no host leads the fleet" in expired[2]
    assert client.get("/health").status_code == 503


def test_a_released_lease_is_unavailable_and_says_who_released_it(fleet_app):
    app = fleet_app()
    store, client = app.extensions["store"], app.test_client()
    lease, record = lead(store)
    assert scheduler(client)[0] == "available"
    lease.release(record)
    status, reason, _ = scheduler(client)
    assert status == "unavailable"
    assert re.fullmatch(rf"no host leads the fleet: {re.escape(HOST_B)} pid 4242 \(epoch {record.epoch}\) released "
                        r"the scheduler lease \d+ s ago", reason), reason


def test_a_live_lease_whose_scheduler_does_not_beat_is_unavailable(fleet_app):
    # Stale after 3 intervals (3 s): the check right after the beat must fit well inside that on a loaded host.
    app = fleet_app(SCHEDULER_HEARTBEAT_INTERVAL=1.0)
    store, client = app.extensions["store"], app.test_client()
    _, record = lead(store, beat=False)
    status, reason, _ = scheduler(client)
    assert (status, reason) == ("unavailable", f"{HOST_B} pid 4242 (epoch {record.epoch}) holds the scheduler lease, "
                                               "but no scheduler heartbeat was written")
    store.fenced(record.epoch).beat(4242, HOST_B, "running", "UTC", time.time(), "s")
    assert scheduler(client)[0] == "available"
    stale = wait_until(lambda: (s := scheduler(client))[0] == "unavailable" and s, timeout=6, what="a stale heartbeat")
    assert re.search(r"holds the scheduler lease, but no scheduler heartbeat for \d+ s", stale[1]), stale


def test_the_heartbeat_is_judged_on_the_databases_clock_not_this_hosts(fleet_app):
    from worker_service.health.scheduler_check import SchedulerCheck

    app = fleet_app()
    lead(app.extensions["store"])
    # This host's wall clock an hour ahead (a broken NTP): the leader still beats by the database's clock, so the
    # scheduler is not called stale; the host only says its own clock keeps it from leading (degraded).
    check = SchedulerCheck(app.extensions["store"], app.config, wall=lambda: time.time() + 3600)
    result = check.run("scheduler")
    assert result.status.value == "degraded" and "clock is 3600" in result.reason and "ahead" in result.reason
    assert SchedulerCheck(app.extensions["store"], app.config).run("scheduler").status.value == "available"


def test_jobs_are_judged_on_the_databases_clock_not_this_hosts(fleet_app, monkeypatch):
    import types

    from worker_service.health.scheduler_check import SchedulerCheck
    from worker_service.reporting import snapshot
    from worker_service.scheduler.job_health import JobPolicy
    from worker_service.state.records import JobDefinition

    app = fleet_app()
    store = app.extensions["store"]
    _, grant = lead(store)
    # A critical job due in a minute by the database's clock: a host an hour ahead would call it overdue.
    store.fenced(grant.epoch, grant.session).publish_jobs([JobDefinition(
        "sync", "Sync", "interval[0:01:00]", time.time() + 60, 30.0, 1, "default", False, True, 60.0)])
    ahead = time.time() + 3600
    check = SchedulerCheck(store, app.config, wall=lambda: ahead)
    result = check.run("scheduler")  # not overdue: degraded only for this host's own clock
    assert result.status.value == "degraded" and "overdue" not in result.reason and "SCHEDULER_MAX_CLOCK_SKEW" in result.reason
    real = time.time
    monkeypatch.setattr(snapshot, "time", types.SimpleNamespace(time=lambda: real() + 3600, perf_counter=time.perf_counter))
    policy = JobPolicy.from_settings(app.config)
    taken = snapshot.take_snapshot(store, policy, fleet=True)
    assert [verdict.state.value for verdict in taken.verdicts] == ["pending"], taken.verdicts  # not run yet, on time
    assert policy.judge_all(taken.records, ahead)[0].state.value == "unhealthy"  # what this host's clock would say


# -- this host cannot reach the state database --------------------------------------------------------------------


@pytest.fixture
def proxy():
    host, port = re.search(r"@([^:/]+):(\d+)/", DATABASE_URL).groups()
    with TcpProxy(host, int(port)) as running:
        yield running


def through(proxy: TcpProxy) -> str:
    """The test database's URL through ``proxy``, with a password (trust auth ignores it) that must never show."""
    return re.sub(r"//([^@:/]+)(:[^@]*)?@[^/]+/", rf"//\1:secret-pw-1@127.0.0.1:{proxy.port}/", DATABASE_URL)


def test_an_unreachable_database_is_degraded_while_another_host_led_a_moment_ago(fleet_app, proxy):
    # The store may wait 2 s for the database; the engine gives a check 1 s, the check gives its reads 0.8 s.
    # (A 2 s store timeout needs a lease TTL of 8 s at least: a quarter of it.)
    app = fleet_app(url=through(proxy), HEALTH_CHECK_TIMEOUT=1.0, STATE_DATABASE_TIMEOUT=2, SCHEDULER_LEASE_TTL=8)
    _, record = lead(fleet_app().extensions["store"])  # the leader's host, straight to the database
    client = app.test_client()
    assert scheduler(client)[0] == "available"
    leader = rf"the fleet's leader was {re.escape(HOST_B)} pid 4242 \(epoch {record.epoch}\) \d s ago"

    proxy.freeze()  # silent: the check answers before the engine's deadline, degraded, not "timed out"
    started = time.monotonic()
    health = client.get("/health/scheduler?verbose")
    # The check's 0.8 s and overhead: under the engine's longest wait and the store's own timeout (both 2 s).
    assert time.monotonic() - started < 2.0
    text = health.get_data(as_text=True)
    assert health.status_code == 200 and re.search(
        rf"^\[\+\]scheduler degraded: cannot reach the state database \(no answer within 0\.8 s\); {leader}$", text,
        re.M), text

    proxy.cut()  # refused
    health = client.get("/health/scheduler")
    assert (health.status_code, health.json["status"]) == (200, "degraded")
    status, reason, _ = scheduler(client)
    assert status == "degraded", reason
    assert re.fullmatch(rf"cannot reach the state database \((?!state ).+\); {leader}", reason), reason
    assert "postgres@" not in reason and "secret" not in reason
    body = client.get("/status").json
    fleet = body["metrics"]["fleet"]
    assert (fleet["leader"], fleet["changes"], body["metrics"]["scheduler_status"]["state"]) == (None, [], "unknown")
    assert fleet["error"].startswith("state ") and "secret" not in fleet["error"]
    assert "leader: unknown" in render(body, colour=False)
    text = client.get("/metrics").get_data(as_text=True)  # nothing known of the lease: its families stay empty
    assert not re.search(r"^worker_service_scheduler_lease_\w+(\{.*\})? ", text, re.M)
    assert re.search(r"^worker_service_scheduler_running 0.0$", text, re.M)
    _promtool(text)

    # No successful read for a whole lease TTL (8 s): nobody can say a leader runs any more.
    late = wait_until(lambda: (r := client.get("/health/scheduler")).status_code == 503 and r, timeout=12,
                      what="the last leader read to be a TTL old")
    assert late.json["status"] == "unavailable"
    assert re.search(r"cannot reach the state database \(.+\); no live leader read in the last 8 s$",
                     scheduler(client)[1])


def test_an_unreachable_database_is_unavailable_when_the_leader_was_on_this_host(fleet_app, proxy):
    app = fleet_app(url=through(proxy))
    lead(fleet_app().extensions["store"], host=host_id(), pid=os.getpid())
    client = app.test_client()
    assert scheduler(client)[0] == "available"
    proxy.cut()
    status, reason, _ = scheduler(client)
    assert status == "unavailable" and "on this host, which cannot renew its lease either" in reason, reason


# -- /status's fleet block, /metrics and the table ----------------------------------------------------------------


def test_two_hosts_show_the_same_fleet_block_with_the_last_changes_of_leader(fleet_app):
    host_a, host_b = fleet_app(), fleet_app()
    first, record_a = lead(host_a.extensions["store"], host="host-a.fleet.test", pid=11)
    first.release(record_a)
    _, record_b = lead(host_b.extensions["store"], pid=4242)
    blocks = [app.test_client().get("/status").json["metrics"]["fleet"] for app in (host_a, host_b)]
    expires = [block["leader"].pop("lease_expires_in_seconds") for block in blocks]
    assert blocks[0] == blocks[1]
    assert abs(expires[0] - expires[1]) < 1.0
    fleet = blocks[0]
    assert fleet["leader"] == {"host": HOST_B, "pid": 4242, "epoch": record_b.epoch, "since": fleet["leader"]["since"],
                               "lease_expires_at": fleet["leader"]["lease_expires_at"]}
    assert [(c["epoch"], c["reason"], c["from"], c["to"]) for c in fleet["changes"]][:2] == [
        (record_b.epoch, "released", {"host": "host-a.fleet.test", "pid": 11}, {"host": HOST_B, "pid": 4242}),
        (record_a.epoch, "first", None, {"host": "host-a.fleet.test", "pid": 11}),
    ]
    from worker_service.status.schemas import StatusSchema

    assert StatusSchema().validate(host_a.test_client().get("/status").json) == {}


def test_metrics_carry_the_lease_epoch_holder_and_expiry_and_pass_promtool(fleet_app):
    app = fleet_app()
    _, record = lead(app.extensions["store"])
    text = app.test_client().get("/metrics").get_data(as_text=True)
    epoch = re.search(r"^worker_service_scheduler_lease_epoch (\S+)$", text, re.M).group(1)
    assert float(epoch) == record.epoch  # exact: an epoch (milliseconds since 1970) is far below 2**53
    assert re.search(rf'^worker_service_scheduler_lease_holder_info\{{host="{re.escape(HOST_B)}",pid="4242"\}} 1.0$',
                     text, re.M)
    assert re.search(r"^worker_service_scheduler_lease_live 1.0$", text, re.M)
    expires = float(re.search(r"^worker_service_scheduler_lease_expires_in_seconds (\S+)$", text, re.M).group(1))
    assert 25 < expires <= 30
    assert re.search(rf'^worker_service_scheduler_leader_info\{{hostname="{re.escape(HOST_B)}",pid="4242"\}} 1.0$', text,
                     re.M)
    _promtool(text)


def test_the_status_table_shows_the_leader_and_the_last_change(fleet_app):
    app = fleet_app()
    _, record = lead(app.extensions["store"])
    table = render(app.test_client().get("/status").json, colour=False)
    assert re.search(rf"^leader: {re.escape(HOST_B)} pid 4242  epoch {record.epoch}  lease expires in \d+\.\ds ", table,
                     re.M), table
    assert re.search(rf"^last change: \d+s ago  first  - -> {re.escape(HOST_B)} pid 4242  \(epoch {record.epoch}\)$",
                     table, re.M), table


# -- who runs what: the hosts, the runs in flight, their metrics ------------------------------------------------------

HOST_C = "host-c.fleet.test"


def test_each_host_shows_its_threads_and_claims_each_run_its_host_and_metrics_add_up_the_rows_of_a_host(fleet_app):
    """Rows made with the store's own claim statements: host-b reloading (an old row stopping, a new one active),
    host-c active, host-d expired with a run settled lost; three runs claimed, one still waiting."""
    from worker_service.state.records import JobDefinition

    app = fleet_app(JOB_EXECUTOR_THREADS=4)
    store, client = app.extensions["store"], app.test_client()
    _, grant = lead(store)
    leader, now = store.fenced(grant.epoch), time.time()
    leader.publish_jobs([JobDefinition("a", "A", "interval[0:01:00]", now + 60, 60, 9, "default", False, False, 60.0)])
    b, c, d = f"{HOST_B}#mb.i1", f"{HOST_C}#mc.i1", "host-d.fleet.test#md.i1"
    store.renew_host("b-old", b, 100, 3, 30.0)
    store.renew_host("c-1", c, 200, 4, 30.0)
    store.renew_host("d-1", d, 300, 2, 0.5)
    planned = [leader.record_submitted("a", "", 0, now - 5 + i, now + 60, run_on="any") for i in range(5)]
    assert [r.run_id for r in store.claim_runs("b-old", b, 100, 1, [], now)] == planned[:1]
    assert [r.run_id for r in store.claim_runs("d-1", d, 300, 1, [], now)] == planned[1:2]
    assert [r.run_id for r in store.claim_runs("c-1", c, 200, 2, [], now)] == planned[2:4]
    store.renew_host("b-old", b, 100, 3, 30.0, stopping=True)  # a reload: the old process finishes its run...
    store.renew_host("b-new", b, 101, 3, 30.0)  # ...while the new one takes runs
    wait_until(lambda: [h for h in store.hosts() if h.session == "d-1" and not h.alive], timeout=5,
               what="host-d's row to expire")
    [lost] = leader.settle_orphans(grant_session(store), lost=lambda run: True if run.session == "d-1" else None)
    assert lost.run_id == planned[1] and lost.outcome == "lost"

    body = client.get("/status").json
    hosts = {(h["host"], h["pid"]): h for h in body["hosts"]}
    assert list(hosts) == [(HOST_B, 100), (HOST_B, 101), (HOST_C, 200), ("host-d.fleet.test", 300)]  # by host, age
    old, new, on_c, on_d = hosts.values()
    assert (old["id"], old["state"], old["threads"], old["claimed"], old["free"]) == (b, "stopping", 3, 1, 0)
    assert (new["id"], new["state"], new["threads"], new["claimed"], new["free"]) == (b, "active", 3, 0, 3)
    assert (on_c["id"], on_c["state"], on_c["threads"], on_c["claimed"], on_c["free"]) == (c, "active", 4, 2, 2)
    assert (on_d["state"], on_d["claimed"], on_d["free"], on_d["lost_runs"]) == ("expired", 0, 0, 1)
    assert (old["claims"], on_c["claims"], new["claims"], on_d["claims"]) == (1, 2, 0, 1)
    assert (new["claim_wait_avg_seconds"], new["claim_wait_max_seconds"]) == (None, None)
    assert 0 < on_c["claim_wait_avg_seconds"] <= on_c["claim_wait_max_seconds"] < 10
    assert 0 <= new["heartbeat_age_seconds"] < 2 and on_d["heartbeat_age_seconds"] >= 0.5
    running = {r["run_id"]: r for r in body["running"]}
    assert list(running) == [planned[0], *planned[2:]]  # oldest first; the lost run is settled and gone
    assert {k: running[planned[0]][k] for k in ("job_id", "host", "pid", "state")} == {
        "job_id": "a", "host": HOST_B, "pid": 100, "state": "running"}
    assert [(running[i]["host"], running[i]["pid"], running[i]["state"]) for i in planned[2:4]] == [(HOST_C, 200, "running")] * 2
    waiting = running[planned[4]]
    assert (waiting["host"], waiting["pid"], waiting["state"], waiting["started_at"]) == (None, None, "waiting", None)
    assert waiting["scheduled_at"] == format_timestamp(now - 1) and waiting["trigger"] == "scheduled"
    from worker_service.status.schemas import StatusSchema

    assert StatusSchema().validate(body) == {}

    # /metrics: one series per host name; host-b's two rows added up (threads of its live rows only).
    text = client.get("/metrics").get_data(as_text=True)
    series = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith(
        ("worker_service_host_", "worker_service_claim", "worker_service_runs_lost")))
    for host, in_flight, threads, claims, lost_runs in ((HOST_B, 1, 6, 1, 0), (HOST_C, 2, 4, 2, 0),
                                                        ("host-d.fleet.test", 0, 0, 1, 1)):
        label = f'{{host="{host}"}}'
        assert float(series[f"worker_service_host_runs_in_flight{label}"]) == in_flight, host
        assert float(series[f"worker_service_host_threads{label}"]) == threads, host
        assert float(series[f"worker_service_claims_total{label}"]) == claims, host
        assert float(series[f"worker_service_claim_wait_seconds_count{label}"]) == claims, host
        assert float(series[f"worker_service_runs_lost_total{label}"]) == lost_runs, host
    wait_c = float(series[f'worker_service_claim_wait_seconds_sum{{host="{HOST_C}"}}'])
    assert wait_c == pytest.approx(2 * on_c["claim_wait_avg_seconds"], abs=1e-5)
    assert float(series[f'worker_service_claim_wait_seconds_max{{host="{HOST_C}"}}']) == on_c["claim_wait_max_seconds"]
    _promtool(text)

    table = render(body, colour=False)
    assert re.search(rf"^{re.escape(HOST_B)} +100 +stopping +1/3 +\d+\.\ds ago$", table, re.M), table
    assert re.search(rf"^{re.escape(HOST_C)} +200 +active +2/4 ", table, re.M), table
    assert re.search(r"^host-d\.fleet\.test +300 +expired +0/2 ", table, re.M), table
    assert re.search(rf"^a +{planned[4]} +waiting +- +-$", table, re.M), table


SLOW_JOB = """
[jobs.slow]
name = "Slow job"
func = "tests.support.sample_jobs:slow"
trigger = "interval"
seconds = 1
max_instances = 6
kwargs = { seconds = 2.5 }
"""


def test_in_a_real_two_host_fleet_both_hosts_show_their_threads_and_each_running_run_the_host_that_claimed_it(tmp_path):
    """Two gunicorn masters on one PostgreSQL, 2 threads each: the slow job (about 3 runs at once, and the tick)
    needs more than one host's threads, so both claim. The simulated hosts share this machine's host name: their
    entries differ by ``id`` (the machine part is each host's), and /metrics adds them up under the one name."""
    import socket

    from tests.support.fleet import fleet

    name = socket.gethostname()
    with fleet(tmp_path, names=("a", "b"), jobs=SLOW_JOB, JOB_EXECUTOR_THREADS="2") as made:
        a, b = made["a"], made["b"]

        def both_claiming():
            body = a.server.get("/status")[2]
            active = [h for h in body["hosts"] if h["state"] == "active" and h["claims"]]
            return len(active) == 2 and body

        body = wait_until(both_claiming, timeout=30, what="both hosts active, each having claimed a run")
        by_machine = {h["id"].split("#", 1)[1].split(".", 1)[0]: h for h in body["hosts"] if h["state"] == "active"}
        assert set(by_machine) == {"test-a", "test-b"}, body["hosts"]
        for machine, host in by_machine.items():
            pids = (a if machine == "test-a" else b).pids()
            assert host["host"] == name and host["pid"] in pids and host["threads"] == 2, host
            assert host["claimed"] + host["free"] == 2 and host["lost_runs"] == 0 and 0 <= host["heartbeat_age_seconds"] < 3
            assert 0 <= host["claim_wait_avg_seconds"] <= host["claim_wait_max_seconds"] < 5, host

        def slow_runs_on_both():
            runs = [r for r in b.server.get("/status")[2]["running"] if r["job_id"] == "slow" and r["state"] == "running"]
            return {r["pid"] in a.pids() for r in runs} == {True, False} and runs

        runs = wait_until(slow_runs_on_both, timeout=30, interval=0.1, what="slow runs held by both hosts at once")
        for run in runs:
            assert run["host"] == name and run["started_at"] and run["scheduled_at"] <= run["started_at"], run

        text = b.server.get("/metrics")[2]
        threads = float(re.search(rf'^worker_service_host_threads\{{host="{re.escape(name)}"\}} (\S+)$', text, re.M).group(1))
        assert threads == 4.0  # 2 + 2: both hosts, under the one host name they share here
        claims = float(re.search(rf'^worker_service_claims_total\{{host="{re.escape(name)}"\}} (\S+)$', text, re.M).group(1))
        assert claims >= sum(h["claims"] for h in by_machine.values())
        assert re.search(rf'^worker_service_claim_wait_seconds_count\{{host="{re.escape(name)}"\}} {claims}$', text, re.M)
        _promtool(text)
        table = render(a.server.get("/status")[2], colour=False)
        assert len(re.findall(rf"^{re.escape(name)} +\d+ +active +\d/2 ", table, re.M)) == 2, table


def grant_session(store) -> str:
    """The session that holds the lease now (the leader's, as ``lead`` took it)."""
    return store.lease().holder_session


# -- one host (SQLite) ----------------------------------------------------------------------------------------------


def test_one_host_shows_its_heartbeat_as_the_leader_with_no_lease(make_app):
    app = make_app(STATUS_CACHE_TTL=0)
    client = app.test_client()
    assert client.get("/status").json["metrics"]["fleet"] == {"mode": "single-host", "leader": None, "changes": [],
                                                               "error": None}
    started = time.time() - 30
    app.extensions["store"].beat(77, "solo.test", "running", "UTC", started)
    body = client.get("/status").json
    fleet = body["metrics"]["fleet"]
    assert fleet["leader"] == {"host": "solo.test", "pid": 77, "epoch": None, "lease_expires_at": None,
                               "lease_expires_in_seconds": None, "since": body["metrics"]["scheduler_status"]["started_at"]}
    text = client.get("/metrics").get_data(as_text=True)
    assert "worker_service_scheduler_running 1.0" in text and "_scheduler_lease_" not in text
    assert "leader:" not in render(body, colour=False)
    _promtool(text)


def _promtool(text: str) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        return  # the families were checked above; promtool only adds the format's rules
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
