"""Alerts end to end: a real gunicorn (three workers, one leader) and a real receiver, webhook and Apprise json://.

One service for the module: each test watches its own job, so they share the
service (and its ~3 s start) without reading each other's alerts. The
receiver's answer depends on the subject: ``refused`` is refused once (503),
``gone`` for good (410), ``hung`` never answered (the service's
``ALERT_TIMEOUT`` is 1 s), anything else accepted.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import subprocess
import time
from pathlib import Path

import jsonschema_rs
import pytest

from tests.support.alert_receiver import AlertReceiver
from tests.support.runs import jobs_file
from tests.support.servers import BIN, Gunicorn, base_env, wait_until
from tests.support.tcp_proxy import TcpProxy

SIGNING = "signing-secret-for-tests"
HOOK_TOKEN = "hooktoken-canary-7f3a9c"
JOB_SECRET = "canary-alert-secret-0001"  # in the failing jobs' messages (sample_jobs.fail_while)


def _decide(path: str, payload: dict, tries: int) -> int | None:
    subject = payload.get("subject") or ""
    if path.startswith("/refuse"):
        return 404
    if not path.startswith("/hook") or subject not in ("refused", "gone", "hung"):
        return 200  # Apprise's json:// posts, and every other subject
    return {"refused": 503 if tries == 0 else 200, "gone": 410, "hung": None}[subject]


@pytest.fixture(scope="module")
def receiver():
    server = AlertReceiver(_decide)
    yield server
    server.close()


@pytest.fixture(scope="module")
def redis_proxy():
    """Redis for the module's service, through a proxy a test can cut (the cache component's outage)."""
    with TcpProxy("127.0.0.1", 6379) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def service(tmp_path_factory, receiver, redis_proxy):
    workdir = tmp_path_factory.mktemp("alerts")
    flags = {name: workdir / f"{name}.flag" for name in ("flappy", "flapper", "hung", "refused", "gone")}
    for name in ("flappy", "hung", "refused", "gone"):
        flags[name].write_text("fail")
    sleep = workdir / "slowly.seconds"
    sleep.write_text("0")
    jobs = [f'''
[jobs.{name}]
func = "tests.support.sample_jobs:fail_while"
trigger = "interval"
seconds = 0.3
args = ["{flags[name]}"]
''' for name in flags]
    jobs[0] += "alert_after_failures = 3\nalert_after_recoveries = 2\n"
    jobs.append(f'''
[jobs.quiet]
func = "tests.support.sample_jobs:always_fail"
trigger = "interval"
seconds = 0.3
alert = false

[jobs.slowly]
func = "tests.support.sample_jobs:sleep_from"
trigger = "interval"
seconds = 1
max_runtime = 1.0
args = ["{sleep}"]

[jobs.ticker]
func = "tests.support.sample_jobs:noop"
trigger = "interval"
seconds = 0.2
''')
    path = jobs_file(workdir / "jobs.toml", "".join(jobs))
    disk = _small_tmpfs(workdir / "disk")  # the disk rule's own filesystem, 1 MB, or None (not root)
    disk_settings = {"STATUS_DISK_PATH": str(disk), "ALERT_DISK_PERCENT": "50"} if disk else {"ALERT_DISK_PERCENT": "0"}
    env = base_env(workdir / "state", WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="3", SCHEDULER_HEARTBEAT_INTERVAL="0.5",
                   HEALTH_CACHE_TTL="0", STATUS_CACHE_TTL="0", JOB_FAILURE_THRESHOLD="2",
                   REDIS_URL=f"redis://127.0.0.1:{redis_proxy.port}/0",
                   ALERT_WEBHOOK_URLS=f"{receiver.url}/hook/{HOOK_TOKEN}", ALERT_WEBHOOK_SECRET=SIGNING,
                   ALERT_APPRISE_URLS=f"json://127.0.0.1:{receiver.port}/apprise", ALERT_INTERVAL="0.2",
                   ALERT_TIMEOUT="1", ALERT_HOLD="0.3", ALERT_MEMORY_PERCENT="0", **disk_settings,
                   ALERT_ERROR_RATE_PERCENT="0", ALERT_PUBLIC_URL="https://ops.example.com/worker")
    gunicorn = Gunicorn(env, workdir).start()
    gunicorn.flags, gunicorn.sleep, gunicorn.disk = flags, sleep, disk
    try:
        yield gunicorn
    finally:
        gunicorn.stop()
        if disk is not None:
            subprocess.run(["umount", str(disk)], check=False, timeout=10)
    assert HOOK_TOKEN not in gunicorn.stderr() + gunicorn.stdout()
    assert JOB_SECRET not in gunicorn.stderr() + gunicorn.stdout()


def _small_tmpfs(where: Path) -> Path | None:
    """A 1 MB tmpfs mounted at ``where`` (a disk a test can fill), or ``None`` where mounting is not allowed."""
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True,
                             timeout=10, check=False)
    return where if mounted.returncode == 0 else None


def _status(service: Gunicorn) -> dict:
    code, _, body = service.get("/status")
    assert code in (200, 503)
    return body


def _job(service: Gunicorn, job_id: str) -> dict:
    return next(job for job in _status(service)["metrics"]["scheduled_jobs"] if job["id"] == job_id)


def _deliveries(service: Gunicorn, subject: str, channel: str = "webhook") -> list:
    """The outbox rows of ``subject``'s alerts to ``channel`` (newest first), read from the service's state file."""
    from worker_service.state import SqliteStateStore
    from worker_service.state.setup import STATE_FILE

    store = SqliteStateStore(str(Path(service.env["WORKER_STATE_DIR"]) / STATE_FILE))
    return [d for d in store.deliveries(500) if d.key == f"job:{subject}" and d.channel.startswith(channel)]


def test_a_failing_job_alerts_once_per_channel_signed_redacted_and_resolves_after_its_recoveries(service, receiver):
    [firing] = receiver.wait_for(1, 20, "/hook", subject="flappy", status="firing")
    assert firing["kind"] == "job" and firing["state"] == "unhealthy" and firing["version"] == "1"
    failures = int(firing["reason"].split()[0])  # "3 consecutive failures (last: RuntimeError)"
    assert failures >= 3 and "consecutive failures" in firing["reason"]  # alert_after_failures = 3, not the threshold 2
    assert firing["dedup_key"] == "worker-service/job:flappy"
    assert firing["url"] == "https://ops.example.com/worker/status#job=flappy"
    assert set(firing) >= {"version", "id", "status", "kind", "subject", "state", "previous_state", "reason",
                           "dedup_key", "service", "host", "at", "url"}
    _, _, document = service.get("/openapi.json")
    assert document["openapi"].startswith("3.1") and "alert" in document["webhooks"]
    jsonschema_rs.validate(document["components"]["schemas"]["AlertPayload"], firing)  # the payload is what the OpenAPI document's webhooks section says
    [(_, headers, _, _)] = receiver.requests("/hook", subject="flappy", status="firing")
    expected = "sha256=" + hmac.new(SIGNING.encode(), headers["x-raw-body"].encode(), hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-worker-service-signature-256"], expected)
    apprise = wait_until(lambda: [p for p in receiver.accepted("/apprise") if "job flappy is unhealthy" in p["title"]],
                         timeout=10, what="the Apprise json:// notification")
    assert len(apprise) == 1 and apprise[0]["type"] == "failure"

    service.flags["flappy"].unlink()  # it succeeds from now on: resolved after 2 good runs
    [resolved] = receiver.wait_for(1, 20, "/hook", subject="flappy", status="resolved")
    assert resolved["previous_state"] == "unhealthy" and resolved["dedup_key"] == firing["dedup_key"]
    runs_then = _job(service, "flappy")["success_count"]
    assert runs_then >= 2
    wait_until(lambda: _job(service, "flappy")["success_count"] >= runs_then + 3, timeout=10,
               what="three more runs (each one a look of the leader's monitor)")
    assert len(receiver.accepted("/hook", subject="flappy")) == 2  # once each, though 3 workers and many looks
    assert not [p for p in receiver.received if p[2].get("subject") == "quiet"]  # alert = false
    assert not [p for p in receiver.received if JOB_SECRET in json.dumps(p[2]) or HOOK_TOKEN in json.dumps(p[2])]


def test_a_flapping_job_sends_one_pair_per_crossing(service, receiver):
    flag = service.flags["flapper"]
    for crossing in range(1, 3):
        flag.write_text("fail")
        receiver.wait_for(crossing, 20, "/hook", subject="flapper", status="firing")
        flag.unlink()
        receiver.wait_for(crossing, 20, "/hook", subject="flapper", status="resolved")
    runs_then = _job(service, "flapper")["success_count"]
    wait_until(lambda: _job(service, "flapper")["success_count"] >= runs_then + 3, timeout=10, what="three more runs")
    sent = [p["status"] for p in receiver.accepted("/hook", subject="flapper")]
    assert sent == ["firing", "resolved"] * 2


def test_a_receiver_that_refuses_the_first_try_gets_the_alert_once_on_the_retry(service, receiver):
    receiver.wait_for(1, 20, "/hook", subject="refused", status="firing")
    tries = receiver.requests("/hook", subject="refused")
    assert [status for *_, status in tries] == [503, 200]
    assert tries[0][2]["id"] == tries[1][2]["id"]  # the same notification, retried
    [row] = wait_until(lambda: [d for d in _deliveries(service, "refused") if d.outcome == "sent"], timeout=5,
                       what="the delivery recorded as sent")
    assert row.attempts == 2 and row.last_error == "HTTP 503"


def test_a_4xx_is_not_retried_and_is_counted_as_failed(service, receiver):
    [row] = wait_until(lambda: [d for d in _deliveries(service, "gone") if d.outcome == "failed"], timeout=20,
                       what="the alert to a 410 given up")
    assert row.attempts == 1 and "HTTP 410" in row.last_error
    assert len(receiver.requests("/hook", subject="gone")) == 1
    _, _, text = service.get("/metrics")
    assert 'worker_service_alerts_sent_total{channel="webhook-' in text and 'outcome="failed"} ' in text


def test_a_hung_receiver_delays_neither_health_nor_runs(service, receiver):
    wait_until(lambda: receiver.requests("/hook", subject="hung"), timeout=20, what="a try to the hung receiver")
    ticks = _job(service, "ticker")["success_count"]
    started = time.monotonic()
    slowest = 0.0
    while time.monotonic() - started < 2.5:  # tries of 1 s each keep hanging meanwhile
        began = time.monotonic()
        code, _, _ = service.get("/health", timeout=2)
        slowest = max(slowest, time.monotonic() - began)
        assert code in (200, 503)
    assert slowest < 1.0  # a probe that waited on a try would take ALERT_TIMEOUT (1 s) at least
    assert _job(service, "ticker")["success_count"] >= ticks + 5  # every 0.2 s: 12 in 2.5 s, unhindered
    assert not receiver.accepted("/hook", subject="hung")


def test_a_job_whose_runs_grow_past_80_percent_of_max_runtime_warns_before_it_is_killed(service, receiver):
    service.sleep.write_text("0.85")
    [warning] = receiver.wait_for(1, 20, "/hook", subject="slowly", status="firing")
    assert warning["kind"] == "metric" and warning["rule"] == "duration"
    assert "of max_runtime 1 s (threshold 80 %)" in warning["reason"]
    assert not receiver.accepted("/hook", subject="slowly", kind="job")  # before: not yet running too long
    service.sleep.write_text("0")


def test_a_component_that_becomes_unavailable_alerts_and_resolves_when_it_is_back(service, receiver, redis_proxy):
    redis_proxy.cut()
    try:
        [firing] = receiver.wait_for(1, 20, "/hook", kind="component", subject="cache", status="firing")
    finally:
        redis_proxy.restore()
    assert firing["state"] == "unavailable" and firing["previous_state"] == "available" and firing["reason"]
    [resolved] = receiver.wait_for(1, 20, "/hook", kind="component", subject="cache", status="resolved")
    assert resolved["state"] == "available"
    assert len(receiver.accepted("/hook", kind="component")) == 2  # and nothing for the database (embedded SQLite)


def test_a_disk_filled_to_the_threshold_fires_after_the_hold_and_resolves_when_freed(service, receiver):
    if service.disk is None:
        pytest.skip("mounting a small tmpfs needs root")
    filler = service.disk / "filler"
    filled_at = time.time()
    filler.write_bytes(b"x" * 600_000)  # 1 MB disk, threshold 50 %
    [firing] = receiver.wait_for(1, 20, "/hook", subject="disk", status="firing")
    assert firing["kind"] == "metric" and firing["rule"] == "disk" and "(threshold 50 %)" in firing["reason"]
    [(_, headers, _, _)] = receiver.requests("/hook", id=firing["id"])
    assert float(headers["x-received-at"]) - filled_at >= 0.3  # ALERT_HOLD: a spike shorter than that never fires
    filler.unlink()
    receiver.wait_for(1, 20, "/hook", subject="disk", status="resolved")
    assert len(receiver.accepted("/hook", subject="disk")) == 2


def test_status_metrics_and_the_cli_show_alerts_with_urls_masked(service, receiver):
    receiver.wait_for(1, 20, "/hook", subject="refused", status="firing")
    body = _status(service)
    alerts = body["metrics"]["alerts"]
    assert alerts["enabled"] and alerts["sent"] >= 1
    assert [c["url"] for c in alerts["channels"]] == [f"{receiver.url}/***", f"json://127.0.0.1:{receiver.port}/***"]
    text = json.dumps(body)
    assert HOOK_TOKEN not in text and SIGNING not in text
    _, _, metrics = service.get("/metrics")
    assert "worker_service_alerts_pending " in metrics and HOOK_TOKEN not in metrics
    listed = subprocess.run([str(BIN / "worker-service"), "alerts", "--url", service.url], capture_output=True,
                            text=True, timeout=30)
    assert listed.returncode == 0, listed.stderr
    assert "refused" in listed.stdout and HOOK_TOKEN not in listed.stdout


@pytest.mark.parametrize(("hook", "code"), [("/hook/tokenA1", 0), ("/refuse/tokenB2", 2)])
def test_alerts_test_sends_through_every_channel_and_says_how_each_went(receiver, tmp_path, hook, code):
    env = base_env(tmp_path, ALERT_WEBHOOK_URLS=f"{receiver.url}{hook}",
                   ALERT_APPRISE_URLS=f"json://127.0.0.1:{receiver.port}/apprise-test")
    done = subprocess.run([str(BIN / "worker-service"), "alerts", "test"], capture_output=True, text=True, env=env,
                          timeout=30)
    assert done.returncode == code, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and lines[1].endswith("accepted (accepted)")
    assert ("accepted" if code == 0 else "FAILED (HTTP 404") in lines[0]
    assert hook.rpartition("/")[2] not in done.stdout  # the webhook's path is masked
    sent = receiver.requests(hook)
    assert sent and sent[-1][2]["test"] is True and sent[-1][2]["kind"] == "test"


def test_the_shipped_prometheus_alert_rules_pass_promtool():
    import shutil

    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    rules = Path(__file__).resolve().parent.parent / "deploy" / "prometheus" / "alerts.yml"
    checked = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_the_status_page_lists_the_recent_alerts_and_an_alerts_link_shows_its_job(service, receiver, tmp_path):
    from tests.support.browser import chromium, missing_browser, severe_console_entries

    if (why := missing_browser()) is not None:
        pytest.skip(why)
    from selenium.webdriver.support.wait import WebDriverWait

    [firing] = receiver.wait_for(1, 20, "/hook", subject="refused", status="firing")
    with chromium(workdir=tmp_path) as driver:
        driver.get(service.url + firing["url"].removeprefix("https://ops.example.com/worker"))
        WebDriverWait(driver, 5).until(lambda d: d.find_elements("css selector", "#alerts > tbody > tr"))
        assert driver.find_element("id", "alerts-section").is_displayed()
        rows = [row.text for row in driver.find_elements("css selector", "#alerts > tbody > tr")]
        assert len(rows) == 10 and all("firing" in row or "resolved" in row for row in rows)
        assert HOOK_TOKEN not in driver.page_source
        shown = [r.get_attribute("data-job-id") for r in driver.find_elements("css selector", "#jobs > tbody > tr")
                 if r.is_displayed() and r.get_attribute("data-job-id")]
        assert shown == ["refused"]  # the alert's link filters the page to its job
        assert not severe_console_entries(driver)


def test_a_frozen_leader_is_told_by_another_worker_and_resolved_when_it_beats_again(service, receiver):
    """The last test on the module's service: its leader is frozen (SIGSTOP) for seconds, every job stalls meanwhile."""
    import os
    import signal

    leader = _status(service)["metrics"]["scheduler_status"]["pid"]
    assert leader in service.worker_pids()
    os.kill(leader, signal.SIGSTOP)
    try:
        [firing] = receiver.wait_for(1, 20, "/hook", kind="scheduler", status="firing")
    finally:
        os.kill(leader, signal.SIGCONT)
    assert firing["state"] == "unavailable" and "heartbeat is" in firing["reason"]
    [resolved] = receiver.wait_for(1, 20, "/hook", kind="scheduler", status="resolved")
    assert resolved["dedup_key"] == firing["dedup_key"] == "worker-service/scheduler"
    assert len(receiver.accepted("/hook", kind="scheduler")) == 2  # two watching workers, one alert


def test_a_full_state_disk_is_told_directly_and_resolved_through_the_outbox_once_it_records_again(receiver, tmp_path):
    """The outbox lives in the store: while the store cannot be written, its own alert goes around it."""
    disk = _small_tmpfs(tmp_path / "state")
    if disk is None:
        pytest.skip("mounting a small tmpfs needs root")
    path = jobs_file(tmp_path / "jobs.toml", '''
[jobs.tick]
func = "tests.support.sample_jobs:noop"
trigger = "interval"
seconds = 0.2
''')
    env = base_env(disk, WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="1", SCHEDULER_HEARTBEAT_INTERVAL="0.5",
                   SERVICE_NAME="full-disk", ALERT_WEBHOOK_URLS=f"{receiver.url}/hook/store", ALERT_TIMEOUT="1",
                   ALERT_DISK_PERCENT="0", ALERT_MEMORY_PERCENT="0", ALERT_ERROR_RATE_PERCENT="0")
    gunicorn = Gunicorn(env, tmp_path).start()
    try:
        wait_until(lambda: _status(gunicorn)["metrics"]["scheduler_status"]["running"], timeout=10, what="a leader")
        filler = disk / "filler"
        with open(filler, "wb", buffering=0) as out, contextlib.suppress(OSError):
            while True:
                out.write(b"\0" * 4096)
        [firing] = receiver.wait_for(1, 20, "/hook/store", kind="store", status="firing")
        assert firing["state"] == "unavailable" and "disk full" in firing["reason"]
        filler.unlink()
        [resolved] = receiver.wait_for(1, 20, "/hook/store", kind="store", status="resolved")
        assert resolved["dedup_key"] == firing["dedup_key"] == "full-disk/store"
        assert len(receiver.accepted("/hook/store", kind="store")) == 2
    except AssertionError as error:
        raise AssertionError(f"{error}\n{gunicorn.stderr()[-3000:]}") from None
    finally:
        gunicorn.stop()
        subprocess.run(["umount", "-l", str(disk)], check=False, timeout=10)
