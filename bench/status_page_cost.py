"""What the status page costs at 1,000 and 5,000 jobs: time to the first screen, DOM size, bytes, server time.

A real gunicorn (WEB_CONCURRENCY=2, STATUS_CACHE_TTL default) serves N generated
jobs with a seeded run history (bench/lib/seed.py, as the other benches; the
critical jobs with errors, the page's first screen, get 20 runs each so their
strips are full); Debian's headless Chromium (tests/support/browser.py) loads
GET /status with the browser's Accept header, its cache off, ``--rounds``
times. Reported (median of the rounds):

* bytes: the HTML as sent, the whole /status JSON of the same service (what the
  page embedded and refetched before), and what one refresh downloads (the
  overview, the job page and the chart; Resource Timing over two refreshes);
* the page: its element count and height; navigation start to the first job row
  painted on screen (the ``status-table-rendered`` mark, set after the frame that
  shows it) and to the load event; the script's own part (``status-render``);
* typing a job id in the filter until its row is the one shown (in-page clock);
* opening a job (GET /jobs/<id> from Resource Timing; ``status-history``, drawn);
* the server's median time for each request the page makes, and /status as JSON.

``--screenshot PATH`` instead starts a realistic set of 10 jobs with a month-like
history (one failing, one with a recent failure, one paused, one never run),
signed in with the admin token (the buttons show), and saves a 1280x800
screenshot with the failing job opened: docs/status-page.png. ``--screenshot-jobs
PATH`` saves the first screen at ``--jobs`` jobs: docs/status-page-5000.png.

Usage: .venv/bin/python bench/status_page_cost.py [--jobs 1000] [--rounds 5]
       .venv/bin/python bench/status_page_cost.py --screenshot docs/status-page.png
       .venv/bin/python bench/status_page_cost.py --jobs 5000 --screenshot-jobs docs/status-page-5000.png
"""

from __future__ import annotations

import argparse
import os
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
ADMIN = "bench-admin-token-0123456789"
STRIP = 20

TIMINGS_JS = """
const nav = performance.getEntriesByType("navigation")[0];
const mark = performance.getEntriesByName("status-table-rendered")[0];
return {
  html_transfer: nav.transferSize, html_body: nav.decodedBodySize,
  response_end: nav.responseEnd, rendered: mark ? mark.startTime : null, load: nav.loadEventEnd,
  first_render: performance.getEntriesByName("status-render")[0].duration,
  elements: document.getElementsByTagName("*").length, height: document.documentElement.scrollHeight,
  rows: document.querySelectorAll("#jobs > tbody > tr[data-job-id]").length,
};
"""
REFRESHES_JS = """
const rs = performance.getEntriesByType("resource").filter((r) => /status\\/overview|status\\/runs|jobs\\?/.test(r.name));
return [rs.filter((r) => r.name.includes("status/overview")).length, rs.reduce((sum, r) => sum + r.transferSize, 0)];
"""


def start_server(workdir: Path, jobs_path: Path, state: Path, **extra: str) -> Gunicorn:
    env = base_env(state, WORKER_JOBS_FILE=str(jobs_path), WEB_CONCURRENCY="2", **extra)
    return Gunicorn(env, workdir).start()


def curl(url: str, accept: str = "*/*") -> bytes:
    """The body of GET ``url`` as curl gets it (a new connection each time)."""
    return subprocess.run(["curl", "-s", "-H", f"Accept: {accept}", url], capture_output=True, check=True,
                          timeout=60).stdout


def median(values: list[float]) -> float:
    return statistics.median(values)


def server_time(server: Gunicorn, path: str, accept: str = "application/json", repeats: int = 30) -> float:
    """Median seconds of GET ``path`` (one connection per request, like a browser's first)."""
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        status, _, _ = http_get(server.url + path, headers={"Accept": accept}, timeout=30)
        samples.append(time.perf_counter() - started)
        assert status == 200, (path, status)
    return median(samples)


def seed_strips(state: Path, ids: list[str]) -> None:
    """STRIP - 2 more runs for each of ``ids`` (the seed gave them two), the newest failed, a minute apart."""
    from worker_service.state.setup import STATE_FILE
    from worker_service.state.sqlite_store import SqliteStateStore

    store = SqliteStateStore(str(state / STATE_FILE))
    now = time.time()
    for n, job_id in enumerate(ids):
        for k in range(STRIP - 2):
            store.record_run(job_id, "success" if (k + n) % 7 else "error", now - 3000 + k * 60, 0.01 * (1 + k % 5),
                             *(() if (k + n) % 7 else ("RuntimeError", "boom")))
        store.record_run(job_id, "error", now - 15, 0.02, "RuntimeError", "boom")


def prepared(count: int) -> tuple[Path, Path, list[str]]:
    workdir = Path(tempfile.mkdtemp(prefix="ws-page-cost-"))
    state = workdir / "state"
    state.mkdir()
    ids = write_jobs_file(workdir / "jobs.toml", count)
    seed_stats(state, ids + builtin_job_ids())
    seed_strips(state, [job_id for i, job_id in enumerate(ids) if i % 10 == 0][:60])
    return workdir, state, ids


def measure(count: int, rounds: int) -> None:
    from selenium.webdriver.support.wait import WebDriverWait

    workdir, state, ids = prepared(count)
    server = start_server(workdir, workdir / "jobs.toml", state)
    try:
        last = f'"{ids[-1]}"'.encode()  # every worker's cached report must hold the last job
        json_body = wait_until(lambda: body if last in (body := curl(server.url + "/status")) else None,
                               timeout=120, what=f"{count} jobs published")
        html = curl(server.url + "/status", BROWSER_ACCEPT)
        rows: list[dict[str, Any]] = []
        with chromium(WIDTH, HEIGHT, workdir=workdir) as driver:
            driver.execute_cdp_cmd("Network.enable", {})
            for _ in range(rounds):
                driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
                driver.get(server.url + "/status?refresh=2")
                WebDriverWait(driver, 60).until(lambda d: d.execute_script(
                    "return performance.getEntriesByName('status-table-rendered').length && "
                    "performance.getEntriesByType('navigation')[0].loadEventEnd > 0"))
                row = driver.execute_script(TIMINGS_JS)
                # Refreshes with the browser's cache on, as a tab has it (ETags revalidate).
                driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": False})
                driver.execute_script("performance.clearResourceTimings()")
                WebDriverWait(driver, 20).until(lambda d: d.execute_script(REFRESHES_JS)[0] >= 2)
                refreshes, transferred = driver.execute_script(REFRESHES_JS)
                row["refresh_bytes"] = transferred / refreshes
                row["refresh_render"] = driver.execute_script(
                    "return performance.getEntriesByName('status-render')[0].duration")
                target = ids[len(ids) * 2 // 3]
                driver.execute_script("window.typed = performance.now()")
                driver.find_element("id", "filter").send_keys(target)
                WebDriverWait(driver, 20, poll_frequency=0.02).until(lambda d, target=target: d.execute_script(
                    "const r = document.querySelectorAll('#jobs > tbody > tr[data-job-id]');"
                    "if (r.length === 1 && r[0].dataset.jobId === arguments[0] && !window.shownAt)"
                    " window.shownAt = performance.now(); return window.shownAt || 0", target))
                row["filter"] = driver.execute_script("return window.shownAt - window.typed")
                driver.execute_script("window.shownAt = 0")
                driver.find_element("css selector", "#jobs tbody tr[data-job-id] button.toggle").click()
                WebDriverWait(driver, 10, poll_frequency=0.05).until(
                    lambda d: d.execute_script("return performance.getEntriesByName('status-history').length"))
                row["history_fetch"], row["history_draw"] = driver.execute_script(
                    "const f = performance.getEntriesByType('resource').filter((r) => /jobs\\/[^?]+$/.test(r.name)).pop();"
                    "return [f.responseEnd - f.startTime, performance.getEntriesByName('status-history')[0].duration]")
                assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
                rows.append(row)
            version = driver.capabilities.get("browserVersion", "?")
        detail = curl(server.url + f"/jobs/{ids[0]}")
        page = f"/jobs?limit=25&runs={STRIP}"
        timings = {
            "GET /status as HTML (the page, first screen embedded)": server_time(server, "/status", BROWSER_ACCEPT),
            f"GET {page} (a page of 25 jobs with their strips)": server_time(server, page),
            "GET /jobs?q=<a job id>&limit=25&runs=20 (the filter)": server_time(server, f"/jobs?q={ids[-1]}&limit=25&runs=20"),
            "GET /status/overview": server_time(server, "/status/overview"),
            "GET /status/runs (the chart)": server_time(server, "/status/runs"),
            "GET /status as JSON (monitors; unchanged)": server_time(server, "/status"),
        }
        page_body = curl(server.url + page)
    finally:
        server.stop()

    kb = 1024
    print(f"Command: .venv/bin/python bench/status_page_cost.py --jobs {count} --rounds {rounds}")
    print(f"Machine: {platform.node()}, {platform.processor() or platform.machine()}, "
          f"{len(os.sched_getaffinity(0))} CPUs, load average {os.getloadavg()[0]:.1f}; Chromium {version} headless; "
          f"{count} jobs, job rows drawn {rows[-1]['rows']}\n")
    print("| what | value |\n|---|---:|")
    print(f"| HTML page (bytes sent, no compression) | {len(html) / kb:,.0f} KiB |")
    print(f"| the whole /status JSON (what the page embedded, and refetched, before) | {len(json_body) / kb:,.0f} KiB |")
    print(f"| one job page, 25 rows with 20-run strips | {len(page_body) / kb:,.0f} KiB |")
    print(f"| one refresh, all requests (overview, job page, chart; ETags on) | "
          f"{median([r['refresh_bytes'] for r in rows]) / kb:,.1f} KiB |")
    print(f"| refreshes in 25 s at the default 10 s period | "
          f"{median([r['refresh_bytes'] for r in rows]) * 2.5 / kb:,.0f} KiB |")
    print(f"| page elements (DOM) | {median([r['elements'] for r in rows]):,.0f} |")
    print(f"| page height | {median([r['height'] for r in rows]):,.0f} px |")
    print(f"| navigation start → HTML received | {median([r['response_end'] for r in rows]):.0f} ms |")
    print(f"| navigation start → first screen of jobs painted | {median([r['rendered'] for r in rows]):.0f} ms |")
    print(f"| navigation start → load event | {median([r['load'] for r in rows]):.0f} ms |")
    print(f"| of which the script drawing it | {median([r['first_render'] for r in rows]):.0f} ms |")
    print(f"| one in-place refresh (JSON parsed → page updated) | {median([r['refresh_render'] for r in rows]):.0f} ms |")
    print(f"| typing a job id → its row the one shown | {median([r['filter'] for r in rows]):.0f} ms |")
    runs = detail.count(b'"finished_at"')
    print(f"| opening a job: GET /jobs/<id> ({runs} runs in its history) | {median([r['history_fetch'] for r in rows]):.0f} ms |")
    print(f"| opening a job: chart and history drawn | {median([r['history_draw'] for r in rows]):.1f} ms |")
    for what, seconds in timings.items():
        print(f"| server: {what}, median | {seconds * 1000:.1f} ms |")


def screenshot_jobs(count: int, target: Path) -> None:
    """The first screen at ``count`` jobs, signed in with the admin token (the buttons show)."""
    from selenium.webdriver.support.wait import WebDriverWait

    workdir, state, ids = prepared(count)
    server = start_server(workdir, workdir / "jobs.toml", state, ADMIN_TOKEN=ADMIN)
    try:
        wait_until(lambda: http_get(server.url + "/status/overview")[2]["metrics"]["jobs_analysis"]["total_jobs"]
                   >= count, timeout=120, what=f"{count} jobs published")
        with chromium(WIDTH, HEIGHT, workdir=workdir) as driver:
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                   {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
            driver.get(server.url.replace("http://", f"http://ops:{ADMIN}@") + "/status?admin")
            WebDriverWait(driver, 30).until(lambda d: d.execute_script(
                "return performance.getEntriesByName('status-table-rendered').length"))
            save(driver, target)
    finally:
        server.stop()


def save(driver: Any, target: Path) -> None:
    """A PNG of the viewport, its palette reduced when Pillow is at hand (a screenshot in git stays small)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(target))
    assert not [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(target) as image:
        image.convert("RGB").quantize(colors=64).save(target, optimize=True)


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
    server = start_server(workdir, workdir / "jobs.toml", state, ADMIN_TOKEN=ADMIN)
    try:
        wait_until(lambda: http_get(server.url + "/status")[2]["metrics"]["scheduler_status"]["running"],
                   timeout=30, what="the scheduler")
        with chromium(WIDTH, HEIGHT, workdir=workdir) as driver:
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                   {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False})
            driver.get(server.url.replace("http://", f"http://ops:{ADMIN}@") + "/status?admin")
            button = WebDriverWait(driver, 10).until(lambda d: d.find_element(
                "css selector", '#jobs tr[data-job-id="charge_invoices"] button.toggle'))
            button.click()
            WebDriverWait(driver, 10).until(lambda d: d.find_elements("css selector", "tr.detail svg.chart circle"))
            driver.execute_script("document.getElementById('jobs-heading').scrollIntoView()")
            save(driver, target)
    finally:
        server.stop()
    print(f"wrote {target} ({WIDTH}x{HEIGHT})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--screenshot", type=Path, help="save the README's screenshot here instead of measuring")
    parser.add_argument("--screenshot-jobs", type=Path, help="save the first screen at --jobs jobs here instead")
    args = parser.parse_args()
    if (reason := missing_browser()) is not None:
        sys.exit(f"status_page_cost: {reason}")
    if args.screenshot:
        screenshot(args.screenshot)
    elif args.screenshot_jobs:
        screenshot_jobs(args.jobs, args.screenshot_jobs)
    else:
        measure(args.jobs, args.rounds)


if __name__ == "__main__":
    main()
