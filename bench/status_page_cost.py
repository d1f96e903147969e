"""What the status page costs at 1,000 jobs: its bytes, and how long a real Chromium takes to draw it.

A real gunicorn (WEB_CONCURRENCY=2, STATUS_CACHE_TTL default) serves N generated
jobs with a seeded run history (bench/lib/seed.py, as the other benches); Debian's
headless Chromium (tests/support/browser.py) loads GET /status with the browser's
Accept header, its cache off, ``--rounds`` times. Reported (median of the rounds):

* bytes: the HTML as sent, the JSON /status of the same report, and everything the
  browser downloads for the page (HTML, CSS, JS), from Resource Timing;
* time: navigation start to the load event and to the jobs table painted (the page's
  ``status-table-rendered`` mark, set after the frame that shows it), and the script's
  own part (``status-render``); one in-place refresh
  (the ``status-render`` measure after a ``?refresh=2`` tick); opening a job (its
  GET /jobs/<id> from Resource Timing, and ``status-history``: the chart and table drawn);
* the server's median time for GET /status as HTML and as JSON (same cached report).

``--screenshot PATH`` instead starts a realistic set of 10 jobs with a month-like
history (one failing, one with a recent failure, one paused, one never run) and
saves a 1280x800 screenshot with the failing job opened: docs/status-page.png.

Usage: .venv/bin/python bench/status_page_cost.py [--jobs 1000] [--rounds 5]
       .venv/bin/python bench/status_page_cost.py --screenshot docs/status-page.png
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.lib.seed import builtin_job_ids, seed_stats, write_jobs_file  # noqa: E402
from tests.support.browser import chromium, missing_browser  # noqa: E402
from tests.support.servers import Gunicorn, base_env, http_get, wait_until  # noqa: E402

BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
WIDTH, HEIGHT = 1280, 800

TIMINGS_JS = """
const nav = performance.getEntriesByType("navigation")[0];
const resources = performance.getEntriesByType("resource");
const mark = performance.getEntriesByName("status-table-rendered")[0];
return {
  html_transfer: nav.transferSize, html_body: nav.decodedBodySize,
  total_transfer: nav.transferSize + resources.reduce((sum, r) => sum + r.transferSize, 0),
  resources: resources.map((r) => r.name.replace(location.origin, "") + " " + r.transferSize),
  response_end: nav.responseEnd, rendered: mark ? mark.startTime : null,
  load: nav.loadEventEnd,
};
"""


def start_server(workdir: Path, jobs_path: Path, state: Path) -> Gunicorn:
    env = base_env(state, WORKER_JOBS_FILE=str(jobs_path), WEB_CONCURRENCY="2")
    return Gunicorn(env, workdir).start()


def curl(url: str, accept: str = "*/*") -> bytes:
    """The body of GET ``url`` as curl gets it (a new connection each time)."""
    return subprocess.run(["curl", "-s", "-H", f"Accept: {accept}", url], capture_output=True, check=True,
                          timeout=30).stdout


def median(values: list[float]) -> float:
    return statistics.median(values)


def server_time(server: Gunicorn, accept: str, repeats: int = 40) -> float:
    """Median seconds of GET /status with ``accept`` (one connection per request, like a browser's first)."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        status, _, _ = http_get(server.url + "/status", headers={"Accept": accept})
        samples.append(time.perf_counter() - started)
        assert status == 200
    return median(samples)


def measure(count: int, rounds: int) -> None:
    from selenium.webdriver.support.wait import WebDriverWait

    workdir = Path(tempfile.mkdtemp(prefix="ws-page-cost-"))
    state = workdir / "state"
    state.mkdir()
    ids = write_jobs_file(workdir / "jobs.toml", count)
    seed_stats(state, ids + builtin_job_ids())
    server = start_server(workdir, workdir / "jobs.toml", state)
    try:
        last = f'"{ids[-1]}"'.encode()  # every worker's cached report must hold the last job

        def with_every_job(accept: str) -> bytes | None:
            body = curl(server.url + "/status", accept)
            return body if last in body else None

        json_body = wait_until(lambda: with_every_job("*/*"), timeout=60, what=f"{count} jobs published")
        html = wait_until(lambda: with_every_job(BROWSER_ACCEPT), timeout=10, what="the page with every job")
        rows: list[dict[str, Any]] = []
        with chromium(WIDTH, HEIGHT, workdir=workdir) as driver:
            driver.execute_cdp_cmd("Network.enable", {})
            driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
            for _ in range(rounds):
                driver.get(server.url + "/status?refresh=2")
                WebDriverWait(driver, 30).until(lambda d: d.execute_script(
                    "return performance.getEntriesByName('status-table-rendered').length && "
                    "performance.getEntriesByType('navigation')[0].loadEventEnd > 0"))
                row = driver.execute_script(TIMINGS_JS)
                first, row["first_render"] = driver.execute_script(
                    "const m = performance.getEntriesByName('status-render')[0]; return [m.startTime, m.duration]")
                WebDriverWait(driver, 10).until(lambda d, first=first: d.execute_script(
                    "return performance.getEntriesByName('status-render')[0].startTime") != first)
                row["refresh_render"] = driver.execute_script(
                    "return performance.getEntriesByName('status-render')[0].duration")
                driver.find_element("css selector", "#jobs tbody tr[data-job-id] button.toggle").click()
                WebDriverWait(driver, 10, poll_frequency=0.05).until(
                    lambda d: d.execute_script("return performance.getEntriesByName('status-history').length"))
                row["history_fetch"], row["history_draw"] = driver.execute_script(
                    "const f = performance.getEntriesByType('resource').filter((r) => r.name.includes('/jobs/')).pop();"
                    "return [f.responseEnd - f.startTime, performance.getEntriesByName('status-history')[0].duration]")
                row["rows"] = len(driver.find_elements("css selector", "#jobs > tbody > tr[data-job-id]"))
                assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
                rows.append(row)
            version = driver.capabilities.get("browserVersion", "?")
        detail = curl(server.url + f"/jobs/{ids[0]}")
        html_ms, json_ms = server_time(server, BROWSER_ACCEPT), server_time(server, "*/*")
    finally:
        server.stop()

    kb = 1024
    print(f"Command: .venv/bin/python bench/status_page_cost.py --jobs {count} --rounds {rounds}")
    print(f"Machine: {platform.node()}, {platform.processor() or platform.machine()}, "
          f"{len(__import__('os').sched_getaffinity(0))} CPUs; Chromium {version} headless; "
          f"job rows drawn {rows[-1]['rows']}\n")
    print("| what | value |\n|---|---:|")
    print(f"| HTML page (bytes sent, no compression) | {len(html) / kb:,.0f} KiB |")
    print(f"| JSON /status of the same report | {len(json_body) / kb:,.0f} KiB |")
    print(f"| browser download for the page, total (HTML, CSS, JS) | "
          f"{median([r['total_transfer'] for r in rows]) / kb:,.0f} KiB |")
    print(f"| every refresh (the JSON, every 10 s) | {len(json_body) / kb:,.0f} KiB |")
    runs = detail.count(b'"finished_at"')
    print(f"| opening a job: GET /jobs/<id> ({runs} runs in its history) | {len(detail) / kb:,.1f} KiB |")
    print(f"| navigation start → HTML received | {median([r['response_end'] for r in rows]):.0f} ms |")
    print(f"| navigation start → load event | {median([r['load'] for r in rows]):.0f} ms |")
    print(f"| navigation start → jobs table painted | {median([r['rendered'] for r in rows]):.0f} ms |")
    print(f"| of which the script drawing the table (JSON parsed → DOM built) | "
          f"{median([r['first_render'] for r in rows]):.0f} ms |")
    print(f"| one in-place refresh (JSON parsed → table updated) | {median([r['refresh_render'] for r in rows]):.0f} ms |")
    print(f"| opening a job: GET /jobs/<id> in the browser | {median([r['history_fetch'] for r in rows]):.0f} ms |")
    print(f"| opening a job: chart and history drawn | {median([r['history_draw'] for r in rows]):.1f} ms |")
    print(f"| server: GET /status as HTML, median | {html_ms * 1000:.1f} ms |")
    print(f"| server: GET /status as JSON, median | {json_ms * 1000:.1f} ms |")
    print(f"\nResources of the last round (bytes transferred): {', '.join(rows[-1]['resources'])}")


# -- the README's screenshot: a realistic job set -----------------------------------------------------------------
SHOWCASE = [  # id, name, every (minutes; None: cron at 02:00), critical, typical seconds, profile
    ("charge_invoices", "Charge invoices", 15, True, 2.1, "failing"),
    ("send_digest_emails", "Send digest e-mails", 60, False, 4.2, "recent-failure"),
    ("sync_accounts", "Sync accounts", 30, True, 1.25, "ok"),
    ("reconcile_database", "Reconcile database", 360, True, 5.7, "ok"),
    ("cleanup_temporary_files", "Clean up temporary files", 60, False, 0.35, "ok"),
    ("refresh_search_index", "Refresh search index", 10, False, 12.0, "ok"),
    ("export_metrics", "Export metrics", 5, False, 0.2, "ok"),
    ("purge_sessions", "Purge expired sessions", 30, False, 0.8, "ok"),
    ("rotate_api_keys", "Rotate API keys", 1440, False, 3.0, "paused"),
    ("nightly_backup", "Nightly backup", None, True, 0.0, "never"),
]


def showcase_jobs_file(path: Path) -> None:
    lines = []
    for job_id, name, every, critical, _, profile in SHOWCASE:
        lines += [f"[jobs.{job_id}]", f'name = "{name}"', 'func = "tests.support.sample_jobs:noop"']
        lines += ['trigger = "cron"', "hour = 2"] if every is None else ['trigger = "interval"', f"minutes = {every}"]
        lines += [f"critical = {str(critical).lower()}", f"paused = {str(profile == 'paused').lower()}", ""]
    path.write_text("\n".join(lines))


def seed_showcase(state: Path) -> None:
    """About 40 runs per job, the newest a few minutes ago; the failing job's last 6 runs failed fast."""
    from worker_service.state.setup import STATE_FILE
    from worker_service.state.sqlite_store import SqliteStateStore

    store = SqliteStateStore(str(state / STATE_FILE))
    rng = random.Random(13)
    now = time.time()
    for job_id, _, every, _, typical, profile in SHOWCASE:
        if profile == "never" or every is None:
            continue
        runs = 40
        last = now - rng.uniform(0.2, 0.8) * every * 60
        for k in range(runs):
            at = last - (runs - 1 - k) * every * 60
            failed = (profile == "failing" and k >= runs - 6) or (profile == "recent-failure" and k == runs - 4)
            if failed:
                store.record_run(job_id, "error", at, rng.uniform(0.05, 0.12), "ConnectionError",
                                 "payments gateway refused the connection (HTTP 503 from payments.internal:8443)"
                                 if profile == "failing" else "SMTP server timed out after 30 s")
            else:
                store.record_run(job_id, "success", at, max(typical * rng.gauss(1.0, 0.12), 0.01))


def screenshot(target: Path) -> None:
    from selenium.webdriver.support.wait import WebDriverWait

    workdir = Path(tempfile.mkdtemp(prefix="ws-page-shot-"))
    state = workdir / "state"
    state.mkdir()
    showcase_jobs_file(workdir / "jobs.toml")
    seed_showcase(state)
    server = start_server(workdir, workdir / "jobs.toml", state)
    try:
        wait_until(lambda: http_get(server.url + "/status")[2]["metrics"]["scheduler_status"]["running"],
                   timeout=30, what="the scheduler")
        with chromium(WIDTH, HEIGHT, workdir=workdir) as driver:
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                   {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
            driver.get(server.url + "/status")
            button = WebDriverWait(driver, 10).until(lambda d: d.find_element(
                "css selector", '#jobs tr[data-job-id="charge_invoices"] button.toggle'))
            button.click()
            WebDriverWait(driver, 10).until(lambda d: d.find_elements("css selector", "tr.detail svg.chart circle"))
            target.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(target))
            assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        server.stop()
    print(f"wrote {target} ({WIDTH}x{HEIGHT})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--screenshot", type=Path, help="save the README's screenshot here instead of measuring")
    args = parser.parse_args()
    if (reason := missing_browser()) is not None:
        sys.exit(f"status_page_cost: {reason}")
    if args.screenshot:
        screenshot(args.screenshot)
    else:
        measure(args.jobs, args.rounds)


if __name__ == "__main__":
    main()
