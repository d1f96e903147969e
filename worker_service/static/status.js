/* The status page: draws the /status report, refreshes it in place every few seconds, and shows a job's run
 * history (GET /jobs/<id>) with a duration chart when its row is opened.
 *
 * Every value from the service goes into the page as text (textContent, attributes), never as markup.
 * Rows are kept by job id and updated cell by cell, so a refresh keeps open rows open, the filter, the
 * scroll position and the focus. */
(function () {
  "use strict";

  const page = document.body.dataset;
  const STATUS_URL = new URL(page.statusUrl, location.origin);  // origin: never the credentials of a user:pass@ URL
  const JOBS_URL = new URL(page.jobsUrl, location.origin);
  const REFRESH_MS = Number(page.refreshSeconds) * 1000;
  const SVG = "http://www.w3.org/2000/svg";
  const RANK = { unhealthy: 0, warning: 1 };  // problems first; the rest (2) keep the published order
  const ERROR_OUTCOMES = new Set(["error", "crashed", "killed"]);
  const COLUMNS = 9;

  const jobs = new Map();  // job id -> entry: {id, row, cells, sigs, detail, open, item, hay, history, historySeq}
  const filterBox = document.getElementById("filter");
  const jobsBody = document.querySelector("#jobs tbody");
  let rowCount = 0;
  let shownText = "";

  // -- formatting --------------------------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    node.append(...children.filter((child) => child !== null && child !== undefined));
    return node;
  }

  function svgEl(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    setAttrs(node, attrs);
    node.append(...children);
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.setAttribute("class", value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
  }

  function badge(word) {
    return el("span", { class: "badge state-" + word }, word || "unknown");
  }

  function span(seconds) {  // precise where it matters: seconds under a minute and a half, then coarser
    const s = Math.round(Math.abs(seconds));
    if (s < 90) return s + " s";
    if (s < 3600) return Math.round(s / 60) + " min";
    if (s < 86400) return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    return Math.floor(s / 86400) + " d " + Math.floor((s % 86400) / 3600) + " h";
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    if (Math.abs(seconds) < 1) return "now";
    return seconds > 0 ? span(seconds) + " ago" : "in " + span(seconds);
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    if (seconds === 0) return "0";
    if (seconds < 0.01) return (seconds * 1000).toPrecision(2) + " ms";
    if (seconds < 1) return Math.round(seconds * 1000) + " ms";
    if (seconds < 60) return seconds.toFixed(2) + " s";
    return span(seconds);
  }

  function utc(iso) {
    return iso ? iso.replace("T", " ").replace(/\.\d+/, "") : "—";
  }

  function epoch(iso) {
    return iso ? Date.parse(iso.replace(/(\.\d{3})\d+/, "$1")) / 1000 : null;
  }

  function count(value) {
    return Number(value || 0).toLocaleString("en");
  }

  function time(iso, text) {
    return iso ? el("time", { datetime: iso, title: utc(iso) }, text) : "—";
  }

  // -- the overview ------------------------------------------------------------------------------------------
  function renderOverview(report) {
    const metrics = report.metrics;
    const overall = document.getElementById("overall");
    overall.className = "badge state-" + report.status;
    overall.textContent = report.status;
    document.title = report.service + " · " + report.status;
    document.getElementById("updated").textContent = "Report of " + utc(report.timestamp) + " UTC · up " +
      metrics.uptime_formatted + " · refreshes every " + REFRESH_MS / 1000 + " s";

    const rows = Object.entries(report.components).map(([name, status]) => {
      const dep = (metrics.dependencies || {})[name] || {};
      return el("tr", null, el("th", { scope: "row" }, name), el("td", null, badge(status)),
        el("td", null, dep.backend || "—"), el("td", null, duration(dep.latency_seconds)),
        el("td", null, ago(dep.age_seconds)), el("td", null, dep.reason || ""));
    });
    document.querySelector("#components tbody").replaceChildren(...rows);

    const s = metrics.scheduler_status;
    facts(document.getElementById("scheduler"), [
      ["State", badge(s.state || (s.running ? "running" : "stopped"))],
      ["Leader", s.hostname ? s.hostname + " (pid " + s.pid + ")" : "none"],
      ["Heartbeat", ago(s.heartbeat_age_seconds)],
      ["Started", time(s.started_at, utc(s.started_at))],
      ["Timezone", s.timezone],
      ["Last clock jump", s.last_clock_jump ? s.last_clock_jump.seconds + " s at " + utc(s.last_clock_jump.at) : null],
    ]);
    renderFleet(report.fleet || metrics.fleet, report.timestamp);

    const a = metrics.jobs_analysis;
    document.getElementById("job-counts").textContent = count(a.total_jobs) + " jobs: " + count(a.active_jobs) +
      " active, " + count(a.paused_jobs) + " paused, " + count(a.critical_jobs) + " critical, " +
      count(a.jobs_with_errors) + " with errors.";
  }

  function facts(list, pairs) {
    const nodes = [];
    for (const [term, value] of pairs) {
      if (value === null || value === undefined) continue;
      nodes.push(el("dt", null, term), el("dd", null, value));
    }
    list.replaceChildren(...nodes);
  }

  /* The fleet block (metrics.fleet): who leads, under which lease, and the last changes of leader. */
  function renderFleet(fleet, now) {
    const section = document.getElementById("fleet-section");
    // One host has no lease and no changes: its leader is the scheduler shown beside it.
    section.hidden = !fleet || (fleet.mode === "single-host" && !fleet.error && !(fleet.changes || []).length);
    if (section.hidden) return;
    const leader = fleet.leader;
    const host = (who) => (who && who.host ? who.host + (who.pid ? " (pid " + who.pid + ")" : "") : "—");
    const pairs = [["Mode", fleet.mode || "—"], ["Leader", leader ? host(leader) : "none"]];
    if (leader) {
      pairs.push(["Epoch", leader.epoch === null || leader.epoch === undefined ? null : String(leader.epoch)],
        ["Leading since", leader.since ? time(leader.since, utc(leader.since)) : null],
        ["Lease expires", leader.lease_expires_at ? time(leader.lease_expires_at,
          ago(-(leader.lease_expires_in_seconds ?? epoch(leader.lease_expires_at) - epoch(now)))) : null]);
    }
    pairs.push(["Problem", fleet.error || null]);
    facts(document.getElementById("fleet"), pairs);
    const rows = (fleet.changes || []).map((change) => el("tr", null,
      el("td", null, time(change.at, utc(change.at))), el("td", null, String(change.epoch ?? "—")),
      el("td", null, change.reason || "—"), el("td", null, host(change.from)), el("td", null, host(change.to))));
    document.querySelector("#fleet-changes tbody").replaceChildren(...rows);
    document.getElementById("fleet-changes").hidden = rows.length === 0;
  }

  /* The recent alert deliveries (metrics.alerts), when a channel is configured. */
  function renderAlerts(alerts) {
    const section = document.getElementById("alerts-section");
    section.hidden = !alerts || !alerts.enabled;
    if (section.hidden) return;
    const firing = (alerts.firing || []).length;
    document.getElementById("alerts-summary").textContent = count(firing) + " firing, " + count(alerts.pending ?? 0) +
      " pending, " + count(alerts.sent ?? 0) + " sent, " + count(alerts.failed ?? 0) + " given up" +
      (alerts.error ? "; the outbox cannot be read: " + alerts.error : "");
    const channels = new Map((alerts.channels || []).map((c) => [c.id, c.type + " " + c.url]));
    const rows = (alerts.recent || []).map((row) => el("tr", { class: "alert-" + row.status },
      el("td", null, row.created_at ? time(row.created_at, utc(row.created_at)) : "—"),
      el("td", null, badge(row.status === "firing" ? "unhealthy" : "healthy"), " " + row.status),
      el("td", { title: row.reason || "" }, (row.kind || "") + " " + (row.subject || "")),
      el("td", null, row.state || "—"),
      el("td", null, channels.get(row.channel) || row.channel),
      el("td", { title: row.last_error || "" }, row.outcome + (row.attempts > 1 ? " (" + row.attempts + " tries)" : ""))));
    document.querySelector("#alerts tbody").replaceChildren(...rows);
  }

  // -- the jobs table ----------------------------------------------------------------------------------------
  function jobItems(report) {
    const analysis = report.metrics.jobs_analysis;
    const health = analysis.job_health || {};
    const rates = analysis.error_rates || {};
    const items = report.metrics.scheduled_jobs.map((job, index) => ({
      job, health: health[job.id] || {}, rate: rates[job.id], index, now: epoch(report.timestamp),
    }));
    items.sort((a, b) => (RANK[a.health.status] ?? 2) - (RANK[b.health.status] ?? 2) ||
      Number(b.job.critical) - Number(a.job.critical) || a.index - b.index);
    return items;
  }

  function renderJobs(report) {
    const items = jobItems(report);
    const seen = new Set();
    let previous = null;
    for (const item of items) {
      seen.add(item.job.id);
      const entry = jobs.get(item.job.id) || addRow(item.job.id);
      entry.item = item;
      updateRow(entry);
      if (entry.open) renderDetail(entry);
      // Move the row (and its detail row) only when it is out of place: unchanged rows are never touched.
      const wanted = previous ? previous.nextElementSibling : jobsBody.firstElementChild;
      if (wanted !== entry.row) {
        jobsBody.insertBefore(entry.row, wanted);
      }
      if (entry.detail && entry.row.nextElementSibling !== entry.detail) entry.row.after(entry.detail);
      previous = entry.detail || entry.row;
    }
    for (const [id, entry] of jobs) {
      if (seen.has(id)) continue;
      entry.row.remove();
      if (entry.detail) entry.detail.remove();
      jobs.delete(id);
    }
    applyFilter();
  }

  function addRow(id) {
    const n = ++rowCount;
    const cells = [el("th", { scope: "row" })];
    for (let i = 1; i < COLUMNS; i++) cells.push(el("td", { class: i >= 4 ? "number" : null }));
    const row = el("tr", { id: "job-" + n, "data-job-id": id }, ...cells);
    const entry = { id, n, row, cells, sigs: [], detail: null, open: false, history: null, historySeq: 0 };
    const toggle = el("button", { type: "button", class: "toggle", "aria-expanded": "false" });
    toggle.addEventListener("click", () => setOpen(entry, !entry.open));
    entry.toggle = toggle;
    entry.idLine = el("span", { class: "job-id" });
    cells[0].append(toggle, entry.idLine);
    jobs.set(id, entry);
    return entry;
  }

  function setCell(entry, index, signature, build) {
    if (entry.sigs[index] === signature) return;
    entry.sigs[index] = signature;
    entry.cells[index].replaceChildren(...build());
  }

  function updateRow(entry) {
    const { job, health, rate, now } = entry.item;
    const state = health.status || "unknown";
    if (entry.row.dataset.state !== state) {  // unchanged rows are not restyled
      entry.row.className = "job-" + state;
      entry.row.dataset.state = state;
    }
    entry.hay = [job.id, job.name, state, health.reason || "", job.critical ? "critical" : ""].join(" ").toLowerCase();

    if (entry.toggle.textContent !== job.name) entry.toggle.textContent = job.name;
    const tags = [job.critical && "critical", job.running && "running", job.quarantined && "quarantined"].filter(Boolean);
    const idLine = [job.id, ...tags].join("|");
    if (entry.idLine.dataset.signature !== idLine) {  // the button keeps its focus: only the line under it changes
      entry.idLine.dataset.signature = idLine;
      entry.idLine.replaceChildren(job.id, ...tags.map((tag) => el("span", { class: "tag" }, tag)));
    }
    setCell(entry, 1, state + "|" + health.reason, () => [badge(state), health.reason ? el("span", { class: "reason" }, health.reason) : null].filter(Boolean));
    const last = health.last_execution;
    setCell(entry, 2, last ? last.timestamp + ago(last.time_ago_seconds) : "", () => [last ? time(last.timestamp, ago(last.time_ago_seconds)) : "never"]);
    const next = job.next_run_time;
    const nextText = job.paused ? "paused" : next ? ago(now - epoch(next)) : "—";
    setCell(entry, 3, nextText + next, () => [next && !job.paused ? time(next, nextText) : nextText]);
    setCell(entry, 4, String(job.avg_execution_time), () => [duration(job.avg_execution_time)]);
    setCell(entry, 5, String(job.p95_execution_time), () => [duration(job.p95_execution_time)]);
    const runs = job.success_count + job.error_count;
    const rateText = rate !== undefined ? rate + " %" : runs ? "0 %" : "—";
    setCell(entry, 6, rateText, () => [rateText]);
    const failures = health.consecutive_failures || 0;
    setCell(entry, 7, String(failures), () => [failures ? el("span", { class: "failures" }, String(failures)) : "0"]);
    setCell(entry, 8, runs + "|" + job.missed_count, () => [el("span", {
      title: count(job.success_count) + " succeeded, " + count(job.error_count) + " failed, " + count(job.missed_count) + " missed",
    }, count(runs))]);
  }

  // -- filtering ---------------------------------------------------------------------------------------------
  function applyFilter() {
    const terms = filterBox.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const entry of jobs.values()) {
      const hide = !terms.every((term) => entry.hay.includes(term));
      if (entry.row.hidden !== hide) entry.row.hidden = hide;
      if (entry.detail) entry.detail.hidden = hide || !entry.open;
      if (!hide) shown++;
    }
    const text = terms.length ? "Showing " + count(shown) + " of " + count(jobs.size) + " jobs" : "";
    if (text !== shownText) document.getElementById("shown").textContent = shownText = text;
  }

  // -- a job's detail: figures from /status at once, run history from /jobs/<id> ------------------------------
  function setOpen(entry, open) {
    entry.open = open;
    entry.toggle.setAttribute("aria-expanded", String(open));
    if (open && !entry.detail) {
      entry.detail = el("tr", { class: "detail", id: "detail-" + entry.n },
        el("td", { colspan: COLUMNS }, el("div", { class: "detail-grid" },
          el("div", { class: "detail-facts" }), el("div", { class: "detail-history" },
            el("h3", null, "Run history"), el("p", { class: "history-message muted" }, "Loading run history…"),
            el("div", { class: "history-body" })))));
      entry.row.after(entry.detail);
      entry.toggle.setAttribute("aria-controls", entry.detail.id);
    }
    if (entry.detail) entry.detail.hidden = !open || entry.row.hidden;
    if (open) {
      renderDetail(entry);
      loadHistory(entry);
    }
  }

  function renderDetail(entry) {
    const { job, health } = entry.item;
    const box = entry.detail.querySelector(".detail-facts");
    const signature = JSON.stringify([job, health.reason, health.last_success && health.last_success.timestamp,
      pausedBy(entry.history)]);
    if (box.dataset.signature === signature) return;
    box.dataset.signature = signature;
    const error = job.last_error;
    const nodes = [el("h3", null, job.name + " (" + job.id + ")")];
    if (health.reason) nodes.push(el("p", null, badge(health.status), " ", health.reason));
    if (error) {
      nodes.push(el("p", { class: "error-text" }, el("strong", null, "Last error"), " at " + utc(error.timestamp) + ": ",
        el("code", null, error.type + ": " + error.message)));
    }
    const list = el("dl", { class: "facts" });
    facts(list, [
      ["Trigger", job.trigger],
      ["Critical", job.critical ? "yes" : "no"],
      ["Paused", job.paused ? "yes" + pausedBy(entry.history) : "no"],
      ["Running", job.running ? job.running.instances + " since " + utc(job.running.since) : "no"],
      ["Last success", health.last_success ? utc(health.last_success.timestamp) : "never"],
      ["Runs", count(job.success_count) + " succeeded, " + count(job.error_count) + " failed, " +
        count(job.missed_count) + " missed, " + count(job.max_instances_count) + " skipped at max_instances"],
      ["Duration", "min " + duration(job.min_execution_time) + " · avg " + duration(job.avg_execution_time) +
        " · p95 " + duration(job.p95_execution_time) + " · max " + duration(job.max_execution_time)],
      ["Max instances", String(job.max_instances)],
      ["Max runtime", job.max_runtime ? duration(job.max_runtime) : null],
      ["Crashes", job.crash_count ? count(job.crash_count) + (job.quarantined ? ", quarantined" : "") : null],
    ]);
    nodes.push(list);
    box.replaceChildren(...nodes);
  }

  function pausedBy(detail) {
    const pause = detail && detail.paused_by;
    return pause ? ", by " + pause.by + " at " + utc(pause.at) : "";
  }

  async function loadHistory(entry) {
    const seq = ++entry.historySeq;
    const message = entry.detail.querySelector(".history-message");
    let data;
    try {
      const response = await fetch(new URL(encodeURIComponent(entry.id), JOBS_URL),
        { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      data = await response.json();
    } catch (error) {
      if (seq === entry.historySeq) {
        message.textContent = "Run history unavailable (" + error.message + ").";
        message.hidden = false;
      }
      return;
    }
    if (seq !== entry.historySeq) return;  // a newer request was made meanwhile
    entry.history = data;
    entry.historyKey = historyKey(entry.item);
    message.hidden = true;
    const started = performance.now();
    drawHistory(entry, data.history || []);
    renderDetail(entry);
    performance.clearMeasures("status-history");
    performance.measure("status-history", { start: started, end: performance.now() });  // bench/status_page_cost.py
  }

  function historyKey(item) {
    const h = item.health;
    return [item.job.success_count, item.job.error_count, item.job.missed_count, h.last_execution && h.last_execution.timestamp].join("|");
  }

  function outcomeClass(outcome) {
    if (outcome === "success") return "point-success";
    return ERROR_OUTCOMES.has(outcome) ? "point-error" : "point-other";
  }

  function percentile(sorted, fraction) {
    return sorted.length ? sorted[Math.max(0, Math.ceil(fraction * sorted.length) - 1)] : null;
  }

  function drawHistory(entry, history) {
    const timed = history.filter((run) => run.duration_seconds !== null && run.duration_seconds !== undefined);
    const sorted = timed.map((run) => run.duration_seconds).sort((a, b) => a - b);
    const summary = el("p", { class: "muted" }, history.length ? "Last " + history.length + " runs: " +
      timed.length + " with a duration; p50 " + duration(percentile(sorted, 0.5)) + " · p95 " +
      duration(percentile(sorted, 0.95)) + " · max " + duration(sorted[sorted.length - 1] ?? null) + "." : "No runs yet.");
    const parts = [summary];
    if (timed.length) parts.push(chart(timed.slice().reverse()));
    if (history.length) parts.push(historyTable(history));
    entry.detail.querySelector(".history-body").replaceChildren(...parts);
  }

  /* One circle per run that has a duration, oldest on the left, evenly spaced; failed runs in another colour.
   * Each circle's <title> is its tooltip (time, outcome, duration, error). */
  function chart(runs) {
    const width = 640, height = 180, left = 52, right = 12, top = 12, bottom = 30;
    const plotW = width - left - right, plotH = height - top - bottom;
    const highest = Math.max(...runs.map((run) => run.duration_seconds)) || 0.001;
    const x = (i) => left + (runs.length === 1 ? plotW / 2 : (i * plotW) / (runs.length - 1));
    const y = (value) => top + plotH - (value / highest) * plotH;
    const errors = runs.filter((run) => ERROR_OUTCOMES.has(run.outcome)).length;
    const graphic = svgEl("svg", { class: "chart", viewBox: "0 0 " + width + " " + height, role: "img",
      "aria-label": "Duration of the last " + runs.length + " runs, oldest on the left; " + errors + " failed" });
    for (const fraction of [0, 0.5, 1]) {
      const at = y(highest * fraction);
      graphic.append(svgEl("line", { class: fraction ? "grid" : "axis", x1: left, x2: width - right, y1: at, y2: at }),
        svgEl("text", { x: left - 6, y: at + 3, "text-anchor": "end" }, duration(highest * fraction)));
    }
    graphic.append(svgEl("line", { class: "axis", x1: left, x2: left, y1: top, y2: top + plotH }),
      svgEl("text", { x: left, y: height - 8 }, utc(runs[0].finished_at)),
      svgEl("text", { x: width - right, y: height - 8, "text-anchor": "end" }, utc(runs[runs.length - 1].finished_at)));
    if (runs.length > 1) {
      const points = runs.map((run, i) => x(i).toFixed(1) + "," + y(run.duration_seconds).toFixed(1)).join(" ");
      graphic.append(svgEl("polyline", { class: "line", points }));
    }
    runs.forEach((run, i) => {
      const tip = utc(run.finished_at) + " · " + run.outcome + " · " + duration(run.duration_seconds) +
        (run.error ? " · " + run.error.type + ": " + run.error.message : "");
      graphic.append(svgEl("circle", { class: "point " + outcomeClass(run.outcome), cx: x(i).toFixed(1),
        cy: y(run.duration_seconds).toFixed(1), r: 4, "data-outcome": run.outcome }, svgEl("title", null, tip)));
    });
    const legend = el("figcaption", { class: "legend" }, "Duration per run",
      el("span", { class: "swatch point-success" }), "success", el("span", { class: "swatch point-error" }), "failed",
      el("span", { class: "swatch point-other" }), "other");
    return el("figure", null, graphic, legend);
  }

  function historyTable(history) {
    const rows = history.map((run) => el("tr", { class: "run-" + run.outcome },
      el("td", null, time(run.finished_at, utc(run.finished_at))),
      el("td", null, run.outcome),
      el("td", { class: "number" }, duration(run.duration_seconds)),
      el("td", null, run.trigger + (run.requested_by ? " by " + run.requested_by : "")),
      el("td", { class: run.error ? "error-text" : null }, run.error ? run.error.type + ": " + run.error.message : "")));
    const head = el("tr", null, ...["Finished (UTC)", "Outcome", "Duration", "Trigger", "Error"].map(
      (name) => el("th", { scope: "col", class: name === "Duration" ? "number" : null }, name)));
    return el("div", { class: "history-table" }, el("table", null,
      el("caption", null, "Last " + history.length + " runs, newest first"), el("thead", null, head), el("tbody", null, ...rows)));
  }

  // -- refreshing --------------------------------------------------------------------------------------------
  function render(report) {
    const started = performance.now();
    renderOverview(report);
    renderAlerts(report.metrics.alerts);
    renderJobs(report);
    for (const entry of jobs.values()) {
      if (entry.open && entry.history && entry.historyKey !== historyKey(entry.item)) loadHistory(entry);
    }
    performance.clearMeasures("status-render");  // the last one only: a tab stays open for days
    performance.measure("status-render", { start: started, end: performance.now() });  // bench/status_page_cost.py
  }

  async function refresh() {
    const problem = document.getElementById("refresh-problem");
    try {
      const response = await fetch(STATUS_URL, { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
      if (!response.ok) throw new Error("HTTP " + response.status + (response.status === 401 ? ": reload the page to sign in" : ""));
      render(await response.json());
      problem.hidden = true;
    } catch (error) {
      problem.textContent = "The last refresh failed (" + error.message + "); the figures below are older.";
      problem.hidden = false;
    }
    schedule();
  }

  let timer = null;
  function schedule() {
    clearTimeout(timer);
    timer = document.hidden ? null : setTimeout(refresh, REFRESH_MS);
  }

  document.addEventListener("visibilitychange", () => {  // no polling from a hidden tab; catch up when shown
    if (!document.hidden && timer === null) refresh();
    else if (document.hidden) { clearTimeout(timer); timer = null; }
  });
  filterBox.addEventListener("input", applyFilter);

  render(JSON.parse(document.getElementById("initial-report").textContent));
  if (location.hash.startsWith("#job=")) {  // an alert's link: show that job
    filterBox.value = decodeURIComponent(location.hash.slice(5));
    applyFilter();
  }
  // After the frame that shows the table has been painted (a task queued from its animation frame).
  requestAnimationFrame(() => setTimeout(() => performance.mark("status-table-rendered")));
  schedule();
})();
