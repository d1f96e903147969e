"""The status page, in a real headless Chromium against a real gunicorn, read through the status token (HTTP Basic),
and controlled through the admin token (its buttons).

One gunicorn and one browser serve the module. The failing and the overrunning
jobs fire at three set seconds of the minute only (cron triggers), so their
run histories hold still while the tests compare the page with GET /jobs/<id>.
The button tests run the "long" job and pause "nightly", neither of which
fires by itself, so they come last and leave the other jobs alone.
"""

from __future__ import annotations

import datetime
import re
import time
import urllib.request

import pytest

from tests.support.browser import chromium, missing_browser, severe_console_entries
from tests.support.runs import jobs_file
from tests.support.servers import Gunicorn, base_env, wait_until

pytestmark = pytest.mark.skipif(missing_browser() is not None, reason=str(missing_browser()))

TOKEN = "canary-page-token-5e1d9"
ADMIN = "canary-page-admin-token-7c2a4f"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
FAILING_RUNS = 3
RED, GREEN = "rgba(180, 35, 24, 1)", "rgba(6, 118, 71, 1)"  # as Chromium reports a computed colour


def jobs_toml(first_second: int) -> str:
    """From ``first_second`` (epoch): a job failing FAILING_RUNS times, one that overruns its second firing (skipped
    at max_instances: a run without a duration); a healthy job, and one not run yet."""
    seconds = ",".join(str((first_second + i) % 60) for i in range(FAILING_RUNS))
    return f"""
[jobs.healthy]
name = "Healthy job"
func = "tests.support.sample_jobs:slow"
trigger = "interval"
seconds = 1
kwargs = {{ seconds = 0.02 }}

[jobs.nightly]
name = "Nightly report"
func = "tests.support.sample_jobs:noop"
trigger = "cron"
hour = 3

[jobs.long]
name = "Long report"
func = "tests.support.sample_jobs:slow"
trigger = "cron"
hour = 3
kwargs = {{ seconds = 2.5 }}

[jobs.failing]
name = "Always fails"
func = "tests.support.sample_jobs:always_fail"
trigger = "cron"
second = "{seconds}"
coalesce = false
critical = true

[jobs.overrun]
name = "Overrunning job"
func = "tests.support.sample_jobs:slow"
trigger = "cron"
second = "{seconds}"
coalesce = false
kwargs = {{ seconds = 1.5 }}
"""


def scheduled(server: Gunicorn, job_id: str) -> dict | None:
    """The job's /status entry once the scheduler has given it a next run time."""
    jobs = {job["id"]: job for job in server.get("/status", headers=BEARER)[2]["metrics"]["scheduled_jobs"]}
    return jobs[job_id] if jobs.get(job_id, {}).get("next_run_time") else None


def start_in_time(tmp_path_factory, attempts: int = 3) -> Gunicorn:
    """gunicorn whose scheduler started before the failing job's first set second.

    A cron job added after its seconds went by waits for the next minute; on a
    loaded machine gunicorn may take longer than the margin to start, so that
    is checked (the job's next run time) and the start tried again, later.
    """
    for attempt in range(attempts):
        workdir = tmp_path_factory.mktemp("status-page")
        first = int(time.time()) + 3 + 3 * attempt
        path = jobs_file(workdir / "jobs.toml", jobs_toml(first))
        env = base_env(workdir / "state", WORKER_JOBS_FILE=str(path), WEB_CONCURRENCY="2",
                       SCHEDULER_HEARTBEAT_INTERVAL="1", STATUS_CACHE_TTL="0", JOB_FAILURE_THRESHOLD="2",
                       STATUS_TOKEN=TOKEN, ADMIN_TOKEN=ADMIN)
        gunicorn = Gunicorn(env, workdir).start()
        try:
            failing = wait_until(lambda server=gunicorn: scheduled(server, "failing"), timeout=15,
                                 what="the failing job scheduled")
        except BaseException:
            gunicorn.stop()
            raise
        next_run = datetime.datetime.fromisoformat(failing["next_run_time"].replace("Z", "+00:00")).timestamp()
        ran = failing["error_count"]  # set seconds already gone by, each run (and failed) in time
        if next_run <= first + ran:  # every set second ran or is still ahead
            return gunicorn
        gunicorn.stop()  # started after the set seconds: its first run is a minute away
    pytest.fail(f"gunicorn never started within its margin in {attempts} attempts")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    gunicorn = start_in_time(tmp_path_factory)

    def settled():
        jobs = {job["id"]: job for job in gunicorn.get("/status", headers=BEARER)[2]["metrics"]["scheduled_jobs"]}
        overrun = jobs["overrun"]
        return (jobs["failing"]["error_count"] >= FAILING_RUNS and jobs["healthy"]["success_count"] >= 2
                and overrun["success_count"] + overrun["max_instances_count"] >= FAILING_RUNS)

    try:
        wait_until(settled, timeout=20, what="the failing and overrunning jobs' runs")
        yield gunicorn
    finally:
        gunicorn.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with chromium(1280, 800, workdir=tmp_path_factory.mktemp("chromium")) as driver:
        yield driver


def signed_in_url(server: Gunicorn, path: str, token: str = TOKEN) -> str:
    """The page's URL with the token as Basic credentials: what the browser's prompt would send."""
    return server.url.replace("http://", f"http://ops:{token}@") + path


def open_page(driver, server: Gunicorn, query: str = "", token: str = TOKEN):
    """Load the page and wait until the table shows every job of /status; return the /status JSON."""
    from selenium.webdriver.support.wait import WebDriverWait

    report = server.get("/status", headers=BEARER)[2]
    driver.get(signed_in_url(server, "/status" + query, token))
    WebDriverWait(driver, 5).until(lambda d: len(job_rows(d)) == report["metrics"]["jobs_analysis"]["total_jobs"])
    return report


def job_rows(driver) -> list:
    return driver.find_elements("css selector", "#jobs > tbody > tr[data-job-id]")


def row_ids(driver) -> list[str]:
    """The job ids of the rows, read at once (a row the page removes meanwhile cannot go stale under the test)."""
    return driver.execute_script(
        "return [...document.querySelectorAll('#jobs > tbody > tr[data-job-id]')].map((r) => r.dataset.jobId)")


def row(driver, job_id: str):
    return driver.find_element("css selector", f'#jobs > tbody > tr[data-job-id="{job_id}"]')


def assert_no_console_errors(driver) -> None:
    assert severe_console_entries(driver) == []


def challenges(server: Gunicorn, headers: dict[str, str], path: str = "/status") -> tuple[int, list[str]]:
    """GET ``path``; the status and every WWW-Authenticate line (a dict would keep only one)."""
    request = urllib.request.Request(server.url + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers.get_all("WWW-Authenticate") or []
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get_all("WWW-Authenticate") or []


def test_browsers_get_the_page_and_every_other_client_the_json_as_before(server):
    status, headers, body = server.get("/status", headers={**BEARER, "Accept": BROWSER_ACCEPT})
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert '<table id="jobs">' in body and 'id="initial-data"' in body
    assert "data-control-token" not in body and ADMIN not in body  # the status token's reader gets no buttons
    assert 'href="/status?admin="' in body  # but a link to sign in with the admin token, which asks for it:
    status, offered = challenges(server, {**BEARER, "Accept": BROWSER_ACCEPT}, "/status?admin")
    assert status == 401 and offered == ['Basic realm="worker-service", charset="UTF-8"']
    assert headers["Cache-Control"] == "no-store" and "Accept" in headers["Vary"]
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    for accept in ("application/json", "*/*", None, "text/html;q=0.5, application/json", "application/json, text/html"):
        status, headers, body = server.get("/status", headers={**BEARER, **({"Accept": accept} if accept else {})})
        assert status == 200 and headers["Content-Type"] == "application/json", accept
        assert list(body) == ["status", "components", "metrics", "timestamp", "service", "hosts", "running"], accept
        assert headers["Cache-Control"] == "no-store" and "Accept" in headers["Vary"], accept
    # A browser without credentials is asked for them with Basic, which it can answer (it cannot send a bearer).
    status, offered = challenges(server, {"Accept": BROWSER_ACCEPT})
    assert status == 401 and any(line.startswith("Basic ") for line in offered), offered


def test_page_lists_every_job_with_its_state_in_words_and_colour_problems_first(server, browser):
    report = open_page(browser, server)
    health = report["metrics"]["jobs_analysis"]["job_health"]
    rows = job_rows(browser)
    order = [r.get_attribute("data-job-id") for r in rows]
    rank = [{"unhealthy": 0, "warning": 1}.get(health[job_id]["status"], 2) for job_id in order]
    assert order[0] == "failing" and rank == sorted(rank), (order, rank)  # unhealthy, then warnings, then the rest
    assert {r.get_attribute("data-job-id"): r.get_attribute("data-state") for r in rows} == {
        job_id: entry["status"] for job_id, entry in health.items()}

    failing, healthy = row(browser, "failing"), row(browser, "healthy")
    badge = failing.find_element("css selector", ".badge")
    assert badge.text == "unhealthy" and badge.value_of_css_property("background-color") == RED
    assert "consecutive failures" in failing.text and "critical" in failing.text
    assert failing.find_element("css selector", ".failures").text == str(health["failing"]["consecutive_failures"])
    badge = healthy.find_element("css selector", ".badge")
    assert badge.text == "healthy" and badge.value_of_css_property("background-color") == GREEN
    assert "not run yet" in row(browser, "nightly").text  # pending, in words

    # Real table markup: a header per column, the job's name as each row's header.
    headers = browser.find_elements("css selector", "#jobs > thead th[scope=col]")
    assert len(headers) == 10 and [h.text for h in headers[5:7]] == ["Avg", "p95"]  # p95 took Max's column
    assert headers[2].text == "Recent runs" and not browser.find_elements("css selector", "button.control")
    assert all(r.find_element("css selector", "th").get_attribute("scope") == "row" for r in rows)
    components = browser.find_element("id", "components").text
    assert all(name in components for name in report["components"])
    # One host: no fleet panel (its leader is the scheduler shown); see the fleet test for the panel.
    assert report["metrics"]["fleet"]["mode"] == "single-host"
    assert not browser.find_element("id", "fleet-section").is_displayed()
    assert_no_console_errors(browser)


def test_opening_the_failing_job_shows_its_error_and_one_chart_point_per_timed_run(server, browser, tmp_path):
    from selenium.webdriver.support.wait import WebDriverWait

    open_page(browser, server)
    toggle = row(browser, "failing").find_element("css selector", "button.toggle")
    toggle.click()
    assert toggle.get_attribute("aria-expanded") == "true"
    points = WebDriverWait(browser, 5).until(lambda d: d.find_elements("css selector", "tr.detail svg.chart circle.point"))

    status, _, detail = server.get("/jobs/failing", headers=BEARER)
    assert status == 200
    timed = [run for run in detail["history"] if run["duration_seconds"] is not None]
    assert len(timed) >= FAILING_RUNS and len(points) == len(timed)
    errors = [run for run in timed if run["outcome"] == "error"]
    assert len(browser.find_elements("css selector", "tr.detail circle.point-error")) == len(errors)
    assert "error" in points[-1].find_element("css selector", "title").get_attribute("textContent")  # its tooltip

    panel = browser.find_element("css selector", "tr.detail")
    assert "RuntimeError: upstream refused" in panel.text
    assert len(panel.find_elements("css selector", ".history-table tbody tr")) == len(detail["history"])
    assert "canary-job-secret" not in browser.page_source  # the error text comes redacted
    shot = tmp_path / "status-page.png"
    assert browser.save_screenshot(str(shot)) and shot.read_bytes().startswith(b"\x89PNG")
    assert_no_console_errors(browser)


def test_a_run_skipped_at_max_instances_is_in_the_history_but_not_a_point_of_the_chart(server, browser):
    from selenium.webdriver.support.wait import WebDriverWait

    open_page(browser, server)
    row(browser, "overrun").find_element("css selector", "button.toggle").click()
    points = WebDriverWait(browser, 5).until(lambda d: d.find_elements("css selector", "tr.detail circle.point"))
    history = server.get("/jobs/overrun", headers=BEARER)[2]["history"]
    timed = [run for run in history if run["duration_seconds"] is not None]
    assert len(history) > len(timed) >= 1, history  # the skipped run has no duration
    assert len(points) == len(timed)
    assert len(browser.find_elements("css selector", "tr.detail .history-table tbody tr")) == len(history)
    assert "max_instances" in browser.find_element("css selector", "tr.detail .history-table").text
    assert_no_console_errors(browser)


def test_filter_box_asks_the_server_for_the_matching_jobs(server, browser):
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait

    open_page(browser, server)
    box = browser.find_element("id", "filter")
    box.send_keys("nightly")
    WebDriverWait(browser, 5).until(lambda d: row_ids(d) == ["nightly"])
    assert browser.find_element("id", "shown").text == "Showing 1–1 of 1 jobs matching (5 in all)"
    box.clear()
    box.send_keys("unhealthy")  # states are words the filter knows
    WebDriverWait(browser, 5).until(lambda d: row_ids(d) == ["failing"])
    box.send_keys("\b" * len("unhealthy"))
    WebDriverWait(browser, 5).until(lambda d: len(row_ids(d)) == 5)
    Select(browser.find_element("id", "state-filter")).select_by_visible_text("pending")
    WebDriverWait(browser, 5).until(lambda d: set(row_ids(d)) == {"nightly", "long"})
    assert_no_console_errors(browser)


def test_page_refreshes_in_place_keeping_open_rows_and_the_filter(server, browser):
    from selenium.webdriver.support.wait import WebDriverWait

    open_page(browser, server, "?refresh=2")
    browser.execute_script("window.notReloaded = true")
    failing = row(browser, "failing")
    failing.find_element("css selector", "button.toggle").click()
    WebDriverWait(browser, 5).until(lambda d: d.find_elements("css selector", "tr.detail circle.point"))
    browser.find_element("id", "filter").send_keys("fail")
    WebDriverWait(browser, 5).until(lambda d: row_ids(d) == ["failing"])
    before = browser.find_element("id", "updated").text

    WebDriverWait(browser, 8).until(lambda d: d.find_element("id", "updated").text != before)
    assert browser.execute_script("return window.notReloaded === true")  # no full reload
    assert failing.get_attribute("data-state") == "unhealthy"  # the same element, still in the page
    assert failing.find_element("css selector", "button.toggle").get_attribute("aria-expanded") == "true"
    assert browser.find_element("css selector", "tr.detail").is_displayed()
    assert browser.find_element("id", "filter").get_attribute("value") == "fail"
    assert row_ids(browser) == ["failing"]
    assert_no_console_errors(browser)


def test_on_one_host_the_scheduler_panel_shows_its_threads_and_what_runs_now(server, browser):
    open_page(browser, server)
    [host] = server.get("/status", headers=BEARER)[2]["hosts"]
    assert (host["state"], host["threads"], host["claims"]) == ("active", 10, None)  # JOB_EXECUTOR_THREADS default
    # One host: two lines of the Scheduler panel (a Hosts panel would push the jobs off the first screen).
    assert not browser.find_element("id", "hosts-section").is_displayed()
    facts = browser.find_element("id", "scheduler").text
    assert re.search(r"^Threads\n\d+ claimed, \d+ free of 10$", facts, re.M), facts
    assert re.search(r"^Running now\n(none|\d+ runs?: \w+)", facts, re.M), facts
    assert_no_console_errors(browser)


NIGHTLY_ONLY = """
[jobs.nightly]
name = "Nightly report"
func = "tests.support.sample_jobs:noop"
trigger = "cron"
hour = 3
"""


BUSY = """
[jobs.busy]
name = "Busy job"
func = "tests.support.sample_jobs:slow"
trigger = "interval"
seconds = 3
kwargs = { seconds = 2.5 }
"""


def test_in_a_fleet_the_page_shows_the_leader_its_lease_the_changes_of_leader_and_who_runs_what(browser, tmp_path):
    from selenium.webdriver.support.wait import WebDriverWait

    from tests.support.pg import FAST_URL, scratch_schema

    with scratch_schema() as schema:
        # One host: a short graceful timeout, or its stop waits half of it for another host to take over.
        env = base_env(tmp_path / "state", WORKER_JOBS_FILE=str(jobs_file(tmp_path / "jobs.toml", NIGHTLY_ONLY + BUSY)),
                       WEB_CONCURRENCY="1", SCHEDULER_HEARTBEAT_INTERVAL="1", STATUS_CACHE_TTL="0",
                       STATE_DATABASE_URL=FAST_URL, STATE_DATABASE_SCHEMA=schema, GUNICORN_GRACEFUL_TIMEOUT="2",
                       JOB_EXECUTOR_THREADS="3")
        server = Gunicorn(env, tmp_path).start()
        try:
            fleet = wait_until(lambda: (f := server.get("/status")[2]["metrics"]["fleet"])["leader"] and f,
                               timeout=15, what="a leader holding the lease")
            browser.get(server.url + "/status?refresh=2")
            panel = WebDriverWait(browser, 5).until(
                lambda d: (section := d.find_element("id", "fleet-section")).is_displayed() and section)
            leader = fleet["leader"]
            facts = panel.find_element("id", "fleet").text
            assert "fleet" in facts and f"{leader['host']} (pid {leader['pid']})" in facts
            assert f"Epoch\n{leader['epoch']}" in facts and "Lease expires" in facts
            assert f"Seen leading\n{leader['host']}" in facts  # the hosts known from the leadership log
            changes = panel.find_elements("css selector", "#fleet-changes tbody tr")
            assert len(changes) == len(fleet["changes"]) >= 1 and fleet["changes"][0]["reason"] in changes[0].text

            # The Hosts panel: the one host (its executing process) with its threads; the busy job's run, on it.
            hosts = WebDriverWait(browser, 5).until(
                lambda d: (section := d.find_element("id", "hosts-section")).is_displayed() and section)
            # (A starting host's row says "stopping" until its first renewal after it began claiming.)
            line = WebDriverWait(browser, 10, poll_frequency=0.1).until(lambda d: [
                r for r in hosts.find_elements("css selector", "#hosts tbody tr") if "active" in r.text])[0]
            [host] = server.get("/status")[2]["hosts"]
            assert line.text.startswith(f"{host['host']} (pid {host['pid']})")
            assert line.find_element("css selector", "th").get_attribute("title") == host["id"]
            assert "claimed" in line.text and "free" in line.text
            assert line.find_elements("css selector", "td")[0].get_attribute("title") == "3 threads"
            hosts.find_element("css selector", "#running-now summary").click()  # "Running now: 1 run", opened
            running = WebDriverWait(browser, 10, poll_frequency=0.1).until(lambda d: [
                r.text for r in d.find_elements("css selector", "#running tbody tr") if r.text.startswith("busy")])
            assert f"busy {host['host']} (pid " in running[0] and "running" in running[0], running
            WebDriverWait(browser, 10, poll_frequency=0.1).until(lambda d: f"running on {host['host']}" in row(d, "busy").text)
            assert_no_console_errors(browser)
        finally:
            server.stop()


def marks(driver, job_id: str) -> list[tuple[str, str]]:
    """The (finished_at, outcome) of the marks in a row's strip, oldest first."""
    return [(m.get_attribute("data-finished-at"), m.get_attribute("data-outcome"))
            for m in row(driver, job_id).find_elements("css selector", "svg.strip rect.mark")]


def history(server: Gunicorn, job_id: str) -> list[dict]:
    return server.get(f"/jobs/{job_id}", headers=BEARER)[2]["history"]


def test_each_rows_strip_and_the_hour_chart_show_the_runs_in_the_store(server, browser):
    for _ in range(3):  # the cron jobs fire at set seconds: read again if one fired while the page loaded
        before = {job_id: history(server, job_id) for job_id in ("failing", "overrun", "nightly")}
        open_page(browser, server)
        shown = {job_id: marks(browser, job_id) for job_id in before}
        chart_start = browser.execute_script(
            "return JSON.parse(document.getElementById('initial-data').textContent).chart.start")
        bars = [(int(b.get_attribute("data-minute")), int(b.get_attribute("data-runs")))
                for b in browser.find_elements("css selector", "#run-chart rect.bar[data-outcome=error]")]
        if before == {job_id: history(server, job_id) for job_id in before}:
            break
    for job_id, runs in before.items():  # the newest 20, oldest on the left
        assert shown[job_id] == [(run["finished_at"], run["outcome"]) for run in reversed(runs[:20])], job_id
    assert shown["nightly"] == [] and {outcome for _, outcome in shown["overrun"]} >= {"max_instances"}
    tip = row(browser, "failing").find_elements("css selector", "svg.strip rect.mark")[-1].find_element(
        "css selector", "title").get_attribute("textContent")
    newest = before["failing"][0]
    assert newest["finished_at"][:19].replace("T", " ") in tip and "error" in tip
    assert "RuntimeError: upstream refused" in tip and " ms" in tip  # time, outcome, duration, error
    # The chart's failed runs per minute are the failing job's errors in the store (no other job fails).
    start = datetime.datetime.fromisoformat(chart_start.replace("Z", "+00:00")).timestamp()
    expected: dict[int, int] = {}
    for run in before["failing"]:
        at = datetime.datetime.fromisoformat(run["finished_at"].replace("Z", "+00:00")).timestamp()
        expected[int((at - start) // 60)] = expected.get(int((at - start) // 60), 0) + 1
    assert dict(bars) == expected and sum(expected.values()) >= FAILING_RUNS
    healthy = {run["finished_at"] for run in history(server, "healthy")}
    assert 2 <= len(marks(browser, "healthy")) <= 20 and {at for at, _ in marks(browser, "healthy")} <= healthy
    assert_no_console_errors(browser)


def test_admin_runs_a_job_now_sees_409_at_max_instances_and_the_run_in_the_history(server, browser):
    from selenium.webdriver.support.wait import WebDriverWait

    open_page(browser, server, token=ADMIN)
    headers = browser.find_elements("css selector", "#jobs > thead th[scope=col]")
    assert headers[-1].text == "Actions"
    long_row = row(browser, "long")
    run_now = long_row.find_element("css selector", "button.control[data-action=run]")
    outcome = long_row.find_element("css selector", ".control-outcome")
    run_now.click()
    WebDriverWait(browser, 10).until(lambda d: outcome.text == "run: started")
    run_now.click()  # still running (2.5 s) at max_instances = 1
    WebDriverWait(browser, 5).until(lambda d: outcome.text.startswith("run: 409, already running at max_instances"))
    assert outcome.get_attribute("data-status") == "409"
    # The first run's result replaces it when the run is in the history.
    WebDriverWait(browser, 15).until(lambda d: outcome.text.startswith("run: finished, success in 2."))
    manual = [run for run in history(server, "long") if run["trigger"] == "manual"]
    assert len(manual) == 1 and manual[0]["requested_by"] == "ops"
    WebDriverWait(browser, 5).until(lambda d: marks(d, "long") == [(manual[0]["finished_at"], "success")])
    long_row.find_element("css selector", "button.toggle").click()
    WebDriverWait(browser, 5).until(lambda d: "manual by ops" in d.find_element("css selector", "tr.detail").text)
    assert browser.find_elements("css selector", "tr.detail .detail-actions button.control")  # on the detail too
    # The one entry is the browser's note of the 409 the page showed; no script error.
    assert [(e["source"], "/jobs/long/run" in e["message"] and "409" in e["message"])
            for e in severe_console_entries(browser)] == [("network", True)]


def test_pause_asks_to_confirm_and_resume_undoes_it_in_place(server, browser):
    from selenium.webdriver.support.wait import WebDriverWait

    open_page(browser, server, token=ADMIN)
    nightly = row(browser, "nightly")
    pause = nightly.find_element("css selector", "button.control[data-action=pause]")
    resume = nightly.find_element("css selector", "button.control[data-action=resume]")
    outcome = nightly.find_element("css selector", ".control-outcome")
    assert pause.is_displayed() and not resume.is_displayed()
    pause.click()
    assert pause.text == "Confirm pause" and "Click again to confirm" in outcome.text
    assert server.get("/jobs/nightly", headers=BEARER)[2]["paused"] is False  # nothing sent yet
    pause.click()
    WebDriverWait(browser, 10).until(lambda d: outcome.text == "pause: paused")
    detail = server.get("/jobs/nightly", headers=BEARER)[2]
    assert detail["paused"] is True and detail["paused_by"]["by"] == "ops"
    WebDriverWait(browser, 10).until(lambda d: resume.is_displayed() and not pause.is_displayed())
    resume.click()
    WebDriverWait(browser, 10).until(lambda d: outcome.text == "resume: resumed")
    assert server.get("/jobs/nightly", headers=BEARER)[2]["paused"] is False
    assert_no_console_errors(browser)


def test_a_cross_origin_form_post_with_the_admins_credentials_is_refused(server, browser):
    from selenium.webdriver.support.wait import WebDriverWait

    open_page(browser, server, token=ADMIN)  # the browser now holds the admin's Basic credentials
    commands = len(server.get("/jobs/nightly", headers=BEARER)[2]["commands"])
    target = signed_in_url(server, "/jobs/nightly/pause", ADMIN)
    browser.get("data:text/html,<form id=f method=post action='" + target + "'></form><script>f.submit()</script>")
    WebDriverWait(browser, 10).until(lambda d: "another site" in d.find_element("tag name", "body").text)
    detail = server.get("/jobs/nightly", headers=BEARER)[2]
    assert detail["paused"] is False and len(detail["commands"]) == commands  # nothing queued
    browser.get_log("browser")  # the refused post's 403 is logged by the browser; not the page's error


def test_with_no_scheduler_leading_the_buttons_say_503_in_place(browser, tmp_path):
    from selenium.webdriver.support.wait import WebDriverWait

    from worker_service.resources import LOCK_FILE
    from worker_service.scheduler.election import FileLockElection
    from worker_service.state import SqliteStateStore
    from worker_service.state.records import JobDefinition
    from worker_service.state.setup import STATE_FILE

    state = tmp_path / "state"
    state.mkdir()
    held = FileLockElection(str(state / LOCK_FILE))  # this test holds the host's scheduler lock: no worker leads
    assert held.acquire(blocking=False)
    # No leader publishes the jobs: the job is published as an earlier leader left it.
    SqliteStateStore(str(state / STATE_FILE)).publish_jobs([JobDefinition(
        id="nightly", name="Nightly report", trigger="cron[hour='3']", next_run_time=None, misfire_grace_time=None,
        max_instances=1, executor="default", paused=False, critical=False)])
    env = base_env(state, WORKER_JOBS_FILE=str(jobs_file(tmp_path / "jobs.toml", NIGHTLY_ONLY)),
                   WEB_CONCURRENCY="1", STATUS_CACHE_TTL="0", ADMIN_TOKEN=ADMIN)
    server = Gunicorn(env, tmp_path).start()
    try:
        browser.get(signed_in_url(server, "/status?admin", ADMIN))
        nightly = WebDriverWait(browser, 10).until(lambda d: row(d, "nightly"))
        nightly.find_element("css selector", "button.control[data-action=run]").click()
        outcome = nightly.find_element("css selector", ".control-outcome")
        WebDriverWait(browser, 10).until(lambda d: outcome.text.startswith("run: 503, not applied: no scheduler leads"))
        assert "control-failed" in outcome.get_attribute("class")
        assert [e["source"] for e in severe_console_entries(browser)] == ["network"]  # the 503 itself
    finally:
        server.stop()
        held.release()
