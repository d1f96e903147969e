/* The status page: draws the overview, one page of jobs (problems first) with a strip of each job's recent runs,
 * the runs per minute of the last hour, and a job's run history (GET /jobs/<id>) when its row is opened.
 * It refreshes the three in place every few seconds; the job page and the chart answer 304 while unchanged.
 *
 * Every value from the service goes into the page as text (textContent, attributes), never as markup.
 * Rows are kept by job id and updated cell by cell, so a refresh keeps open rows open, the filter, the
 * scroll position and the focus. Times are absolute in the data; "3 min ago" is computed here, against the
 * server's clock as the last overview told it. */
(function () {
  "use strict";

  const page = document.body.dataset;
  const OVERVIEW_URL = new URL(page.overviewUrl, location.origin);  // origin: never the credentials of a user:pass@ URL
  const CHART_URL = new URL(page.chartUrl, location.origin);
  const JOBS_URL = new URL(page.jobsUrl, location.origin);
  const PAGE_SIZE = Number(page.pageSize);
  const STRIP_RUNS = Number(page.stripRuns);
  const REFRESH_MS = Number(page.refreshSeconds) * 1000;
  const CONTROL_TOKEN = page.controlToken || null;  // only on a page served to the admin token's holder
  const SVG = "http://www.w3.org/2000/svg";
  const ERROR_OUTCOMES = new Set(["error", "crashed", "killed", "lost"]);
  const COLUMNS = CONTROL_TOKEN ? 11 : 10;
  const RUN_WATCH_MS = 120000;  // how long a run-now is watched for its result in the history

  const jobs = new Map();  // job id -> entry: {id, n, row, cells, sigs, detail, open, item, history, historySeq}
  const filterBox = document.getElementById("filter");
  const stateBox = document.getElementById("state-filter");
  const jobsBody = document.querySelector("#jobs tbody");
  const query = { q: "", state: "", offset: 0 };
  let rowCount = 0;
  let skew = 0;  // server clock - this browser's clock, in seconds
  let pageSeq = 0;
  let lastPage = null;
  let runningHosts = new Map();  // job id -> the hosts running it, from the last overview

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
    if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
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
    return iso ? iso.replace("T", " ").replace(/\.\d+/, "").replace("Z", "") : "—";
  }

  function epoch(iso) {
    return iso ? Date.parse(iso.replace(/(\.\d{3})\d+/, "$1")) / 1000 : null;
  }

  function serverNow() {
    return Date.now() / 1000 + skew;
  }

  function since(iso) {  // seconds from iso to now, by the server's clock; negative for a time to come
    return iso ? serverNow() - epoch(iso) : null;
  }

  function count(value) {
    return Number(value || 0).toLocaleString("en");
  }

  function time(iso, text) {
    return iso ? el("time", { datetime: iso, title: utc(iso) + " UTC" }, text) : "—";
  }

  // -- the overview ------------------------------------------------------------------------------------------
  function renderOverview(report) {
    const metrics = report.metrics;
    skew = epoch(report.timestamp) - Date.now() / 1000;
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
    const fleetMode = (metrics.fleet || {}).mode === "fleet";
    facts(document.getElementById("scheduler"), [
      ["State", badge(s.state || (s.running ? "running" : "stopped"))],
      ["Leader", s.hostname ? s.hostname + " (pid " + s.pid + ")" : "none"],
      ["Heartbeat", ago(s.heartbeat_age_seconds)],
      ["Started", time(s.started_at, utc(s.started_at))],
      ["Timezone", s.timezone],
      ["Last clock jump", s.last_clock_jump ? s.last_clock_jump.seconds + " s at " + utc(s.last_clock_jump.at) : null],
      ...(fleetMode ? [] : oneHost(report.hosts || [], report.running || [], report.running_total)),
    ]);
    renderFleet(metrics.fleet);
    renderHosts(fleetMode ? report.hosts || [] : [], report.running || [], report.running_total);

    const a = metrics.jobs_analysis;
    const states = a.states || {};
    const problems = ["unhealthy", "warning"].filter((word) => states[word]).map((word) => count(states[word]) + " " + word);
    document.getElementById("job-counts").textContent = count(a.total_jobs) + " jobs: " + count(a.active_jobs) +
      " active, " + count(a.paused_jobs) + " paused, " + count(a.critical_jobs) + " critical, " +
      count(a.jobs_with_errors) + " with errors" + (problems.length ? "; " + problems.join(", ") : "") + ".";
  }

  function facts(list, pairs) {
    const nodes = [];
    for (const [term, value] of pairs) {
      if (value === null || value === undefined) continue;
      nodes.push(el("dt", null, term), el("dd", null, value));
    }
    list.replaceChildren(...nodes);
  }

  /* The fleet block (metrics.fleet): who leads, under which lease, the hosts seen leading, the last changes. */
  function renderFleet(fleet) {
    const section = document.getElementById("fleet-section");
    // One host has no lease and no changes: its leader is the scheduler shown beside it.
    section.hidden = !fleet || (fleet.mode === "single-host" && !fleet.error && !(fleet.changes || []).length);
    if (section.hidden) return;
    const leader = fleet.leader;
    const host = (who) => (who && who.host ? who.host + (who.pid ? " (pid " + who.pid + ")" : "") : "—");
    const hosts = new Set();
    if (leader && leader.host) hosts.add(leader.host);
    for (const change of fleet.changes || []) {
      for (const who of [change.to, change.from]) if (who && who.host) hosts.add(who.host);
    }
    const pairs = [["Mode", fleet.mode || "—"], ["Leader", leader ? host(leader) : "none"]];
    if (leader) {
      pairs.push(["Epoch", leader.epoch === null || leader.epoch === undefined ? null : String(leader.epoch)],
        ["Leading since", leader.since ? time(leader.since, utc(leader.since)) : null],
        ["Lease expires", leader.lease_expires_at ? time(leader.lease_expires_at,
          ago(-(leader.lease_expires_in_seconds ?? 0))) : null]);
    }
    pairs.push(["Seen leading", hosts.size ? [...hosts].join(", ") : null],
      ["Problem", fleet.error || null]);
    facts(document.getElementById("fleet"), pairs);
    const rows = (fleet.changes || []).map((change) => el("tr", null,
      el("td", null, time(change.at, utc(change.at))), el("td", null, String(change.epoch ?? "—")),
      el("td", null, change.reason || "—"), el("td", null, host(change.from)), el("td", null, host(change.to))));
    document.querySelector("#fleet-changes tbody").replaceChildren(...rows);
    document.getElementById("fleet-changes").hidden = rows.length === 0;
  }

  /* One host: its threads and what it runs, as two lines of the Scheduler panel (a panel of its own would squeeze
   * the components and push the jobs off the first screen). */
  function oneHost(hosts, running, total) {
    const host = hosts[0];
    const all = Math.max(total ?? running.length, running.length);
    const jobIds = [...new Set(running.map((run) => run.job_id))];
    return [
      ["Threads", host ? count(host.claimed) + " claimed, " + count(host.free) + " free of " + count(host.threads) : null],
      ["Running now", host ? (all ? count(all) + (all === 1 ? " run: " : " runs: ") + jobIds.slice(0, 3).join(", ") +
        (jobIds.length > 3 || all > running.length ? ", …" : "") : "none") : null],
    ];
  }

  /* In a fleet: the executing hosts (one row per process: a reload shows two for a moment) and the runs in flight. */
  function renderHosts(hosts, running, total) {
    runningHosts = new Map();
    for (const run of running) {
      if (!run.host) continue;
      const names = runningHosts.get(run.job_id) || [];
      if (!names.includes(run.host)) names.push(run.host);
      runningHosts.set(run.job_id, names);
    }
    const section = document.getElementById("hosts-section");
    section.hidden = hosts.length === 0;
    if (section.hidden) return;
    const who = (host, pid) => (host ? host + (pid ? " (pid " + pid + ")" : "") : "—");
    document.querySelector("#hosts tbody").replaceChildren(...hosts.map((host) => el("tr", null,
      el("th", { scope: "row", title: host.id }, who(host.host, host.pid)),
      el("td", { title: count(host.threads) + " threads" }, count(host.claimed) + " claimed, " + count(host.free) + " free"),
      el("td", null, badge(host.state)), el("td", null, ago(host.heartbeat_age_seconds)))));
    document.querySelector("#running tbody").replaceChildren(...running.map((run) => el("tr", null,
      el("th", { scope: "row" }, run.job_id), el("td", null, who(run.host, run.pid)), el("td", null, badge(run.state)),
      el("td", null, run.started_at ? time(run.started_at, ago(since(run.started_at))) : "—"))));
    const all = Math.max(total ?? running.length, running.length);
    document.getElementById("running-count").textContent = all ? count(all) + (all === 1 ? " run" : " runs") : "none";
    document.getElementById("running").hidden = running.length === 0;
    const more = document.getElementById("running-more");
    more.hidden = !(total > running.length);
    more.textContent = more.hidden ? "" : "and " + count(total - running.length) + " more (all of them in /status)";
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

  // -- the chart: runs per minute by outcome, last hour --------------------------------------------------------
  function outcomeClass(outcome) {
    if (outcome === "success") return "point-success";
    return ERROR_OUTCOMES.has(outcome) ? "point-error" : "point-other";
  }

  function renderChart(chart) {
    const box = document.getElementById("run-chart");
    if (!chart) return;
    const signature = JSON.stringify([chart.start, chart.counts]);
    if (box.dataset.signature === signature) return;
    box.dataset.signature = signature;
    const minutes = chart.minutes;
    const start = epoch(chart.start);
    const perMinute = [];
    for (let i = 0; i < minutes; i++) perMinute.push({});
    for (const [outcome, values] of Object.entries(chart.counts)) {
      values.forEach((value, i) => { if (value) perMinute[i][outcome] = value; });
    }
    const totals = perMinute.map((m) => Object.values(m).reduce((sum, v) => sum + v, 0));
    const highest = Math.max(1, ...totals);
    const width = 720, height = 120, left = 40, right = 8, top = 8, bottom = 20;
    const plotW = width - left - right, plotH = height - top - bottom, barW = plotW / minutes;
    const all = Object.values(chart.counts).flat().reduce((sum, v) => sum + v, 0);
    const graphic = svgEl("svg", { class: "chart run-chart", viewBox: "0 0 " + width + " " + height, role: "img",
      "aria-label": all + " runs in the last hour, per minute by outcome" });
    graphic.append(svgEl("line", { class: "axis", x1: left, x2: width - right, y1: top + plotH, y2: top + plotH }),
      svgEl("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, String(highest)),
      svgEl("text", { x: left - 4, y: top + plotH, "text-anchor": "end" }, "0"),
      svgEl("text", { x: left, y: height - 4 }, utc(chart.start).slice(11, 16) + " UTC"),
      svgEl("text", { x: width - right, y: height - 4, "text-anchor": "end" }, "now"));
    perMinute.forEach((outcomes, i) => {
      let y = top + plotH;
      const at = new Date((start + i * 60) * 1000).toISOString();
      const tip = utc(at).slice(11, 16) + " UTC: " + (Object.entries(outcomes).map(([o, v]) => v + " " + o).join(", ") || "no runs");
      for (const [outcome, value] of Object.entries(outcomes).sort()) {
        const h = Math.max(1, (value / highest) * plotH);
        y -= h;
        graphic.append(svgEl("rect", { class: "bar " + outcomeClass(outcome), x: (left + i * barW + 0.5).toFixed(1),
          y: y.toFixed(1), width: Math.max(1, barW - 1).toFixed(1), height: h.toFixed(1), "data-outcome": outcome,
          "data-runs": value, "data-minute": i }, svgEl("title", null, tip)));
      }
    });
    box.replaceChildren(el("figure", null, graphic, el("figcaption", { class: "legend" },
      all ? "Runs finished per minute (kept history)" : "No runs in the last hour",
      el("span", { class: "swatch point-success" }), "success", el("span", { class: "swatch point-error" }), "failed",
      el("span", { class: "swatch point-other" }), "missed or skipped")));
  }

  // -- the jobs: one page, problems first, from GET /jobs?... -------------------------------------------------
  function pageUrl() {
    const url = new URL(JOBS_URL.pathname.replace(/\/$/, ""), location.origin);
    url.searchParams.set("limit", PAGE_SIZE);
    url.searchParams.set("runs", STRIP_RUNS);
    if (query.offset) url.searchParams.set("offset", query.offset);
    if (query.q) url.searchParams.set("q", query.q);
    if (query.state) url.searchParams.set("state", query.state);
    return url;
  }

  function renderJobs(listing) {
    lastPage = listing;
    const seen = new Set();
    let previous = null;
    for (const job of listing.jobs) {
      seen.add(job.id);
      const entry = jobs.get(job.id) || addRow(job.id);
      entry.item = job;
      updateRow(entry);
      if (entry.open) renderDetail(entry);
      // Move the row (and its detail row) only when it is out of place: unchanged rows are never touched.
      const wanted = previous ? previous.nextElementSibling : jobsBody.firstElementChild;
      if (wanted !== entry.row) jobsBody.insertBefore(entry.row, wanted);
      if (entry.detail && entry.row.nextElementSibling !== entry.detail) entry.row.after(entry.detail);
      previous = entry.detail || entry.row;
    }
    for (const [id, entry] of jobs) {
      if (seen.has(id)) continue;
      entry.row.remove();
      if (entry.detail) entry.detail.remove();
      jobs.delete(id);
    }
    const first = listing.matched ? listing.offset + 1 : 0;
    const last = listing.offset + listing.jobs.length;
    const filtered = query.q || query.state;
    document.getElementById("shown").textContent = (listing.error ? listing.error + ". " : "") +
      "Showing " + count(first) + "–" + count(last) + " of " + count(listing.matched) + " jobs" +
      (filtered ? " matching (" + count(listing.total) + " in all)" : "");
    document.getElementById("page-previous").disabled = listing.offset <= 0;
    document.getElementById("page-next").disabled = last >= listing.matched;
  }

  function addRow(id) {
    const n = ++rowCount;
    const cells = [el("th", { scope: "row" })];
    for (let i = 1; i < COLUMNS; i++) cells.push(el("td", { class: i >= 5 && i <= 9 ? "number" : null }));
    const row = el("tr", { id: "job-" + n, "data-job-id": id }, ...cells);
    const entry = { id, n, row, cells, sigs: [], detail: null, open: false, history: null, historySeq: 0 };
    const toggle = el("button", { type: "button", class: "toggle", "aria-expanded": "false" });
    toggle.addEventListener("click", () => setOpen(entry, !entry.open));
    entry.toggle = toggle;
    entry.idLine = el("span", { class: "job-id" });
    cells[0].append(toggle, entry.idLine);
    if (CONTROL_TOKEN) entry.controls = controls(entry, cells[10]);
    jobs.set(id, entry);
    return entry;
  }

  function setCell(entry, index, signature, build) {
    if (entry.sigs[index] === signature) return;
    entry.sigs[index] = signature;
    entry.cells[index].replaceChildren(...build());
  }

  function updateRow(entry) {
    const job = entry.item;
    const f = job.figures || {};
    const state = job.health || "unknown";
    if (entry.row.dataset.state !== state) {  // unchanged rows are not restyled
      entry.row.className = "job-" + state;
      entry.row.dataset.state = state;
    }
    if (entry.toggle.textContent !== job.name) entry.toggle.textContent = job.name;
    const where = runningHosts.get(job.id);
    const tags = [job.critical && "critical", job.running && (where ? "running on " + where.join(", ") : "running"),
      f.quarantined && "quarantined"].filter(Boolean);
    const idLine = [job.id, ...tags].join("|");
    if (entry.idLine.dataset.signature !== idLine) {  // the button keeps its focus: only the line under it changes
      entry.idLine.dataset.signature = idLine;
      entry.idLine.replaceChildren(job.id, ...tags.map((tag) => el("span", { class: "tag" }, tag)));
    }
    setCell(entry, 1, state + "|" + job.health_reason, () => [badge(state),
      job.health_reason ? el("span", { class: "reason" }, job.health_reason) : null].filter(Boolean));
    const runs = job.recent_runs || [];
    setCell(entry, 2, JSON.stringify(runs), () => [strip(runs)]);
    const lastText = job.last_run_at ? ago(since(job.last_run_at)) : "never";
    setCell(entry, 3, job.last_run_at + lastText, () => [job.last_run_at ? time(job.last_run_at, lastText) : lastText]);
    const nextText = job.paused ? "paused" : job.next_run ? ago(since(job.next_run)) : "—";
    setCell(entry, 4, nextText + job.next_run, () => [job.next_run && !job.paused ? time(job.next_run, nextText) : nextText]);
    setCell(entry, 5, String(f.avg_seconds), () => [duration(f.avg_seconds)]);
    setCell(entry, 6, String(f.p95_seconds), () => [duration(f.p95_seconds)]);
    const rateText = f.error_rate !== null && f.error_rate !== undefined ? f.error_rate + " %" : "—";
    setCell(entry, 7, rateText, () => [rateText]);
    const failures = f.consecutive_failures || 0;
    setCell(entry, 8, String(failures), () => [failures ? el("span", { class: "failures" }, String(failures)) : "0"]);
    const total = (f.success_count || 0) + (f.error_count || 0);
    setCell(entry, 9, total + "|" + f.missed_count, () => [el("span", {
      title: count(f.success_count) + " succeeded, " + count(f.error_count) + " failed, " + count(f.missed_count) + " missed",
    }, count(total))]);
    if (entry.controls) entry.controls.update(job);
  }

  /* The job's last runs, oldest on the left, one mark each, coloured by outcome; its <title> is the tooltip. */
  function strip(runs) {
    const mark = 7, gap = 2, width = STRIP_RUNS * (mark + gap), height = 16;
    const graphic = svgEl("svg", { class: "strip", width, height, viewBox: "0 0 " + width + " " + height, role: "img",
      "aria-label": runs.length ? "last " + runs.length + " runs: " + runs.filter((r) => ERROR_OUTCOMES.has(r.outcome)).length +
        " failed" : "no runs yet" });
    const oldestFirst = runs.slice().reverse();
    oldestFirst.forEach((run, i) => {
      const tip = utc(run.finished_at) + " UTC · " + run.outcome + " · " + duration(run.duration_seconds) +
        (run.error ? " · " + run.error : "");
      const x = width - (oldestFirst.length - i) * (mark + gap);  // the newest at the right edge
      graphic.append(svgEl("rect", { class: "mark " + outcomeClass(run.outcome), x, y: 1, width: mark, height: height - 2,
        rx: 1.5, "data-outcome": run.outcome, "data-finished-at": run.finished_at }, svgEl("title", null, tip)));
    });
    return graphic;
  }

  // -- the buttons: run now, pause (confirmed), resume; the outcome in place ------------------------------------
  function controls(entry, cell) {
    const run = el("button", { type: "button", class: "control", "data-action": "run" }, "Run now");
    const pause = el("button", { type: "button", class: "control", "data-action": "pause" }, "Pause");
    const resume = el("button", { type: "button", class: "control", "data-action": "resume" }, "Resume");
    const outcome = el("span", { class: "control-outcome", role: "status" });
    const box = el("span", { class: "controls" }, run, pause, resume, outcome);
    cell.append(box);
    let confirming = false;
    run.addEventListener("click", () => command(entry, "run", outcome));
    resume.addEventListener("click", () => command(entry, "resume", outcome));
    pause.addEventListener("click", () => {
      if (!confirming) {  // the first click asks; the second pauses
        confirming = true;
        pause.textContent = "Confirm pause";
        pause.classList.add("confirm");
        outcome.textContent = "Pause " + entry.id + "? Click again to confirm.";
        setTimeout(() => { if (confirming) reset(); }, 5000);
        return;
      }
      reset();
      command(entry, "pause", outcome);
    });
    function reset() {
      confirming = false;
      pause.textContent = "Pause";
      pause.classList.remove("confirm");
      if (outcome.textContent.startsWith("Pause ")) outcome.textContent = "";
    }
    return {
      update(job) {
        pause.hidden = Boolean(job.paused);
        resume.hidden = !job.paused;
      },
    };
  }

  function describe(action, status, body) {
    const message = body && (body.message || body.outcome) ? ": " + (body.message || body.outcome) : "";
    if (status === 200) return action === "run" ? "started" : action === "pause" ? "paused" : "resumed";
    if (status === 202) return "queued; waiting for the leader";
    if (status === 409) return "409, already running at max_instances" + message;
    if (status === 503) return "503, not applied" + message;
    return status + message;
  }

  async function command(entry, action, outcome) {
    outcome.className = "control-outcome";
    outcome.textContent = action + "…";
    let response, body;
    try {
      response = await fetch(new URL(encodeURIComponent(entry.id) + "/" + action + "?wait=5", JOBS_URL), {
        method: "POST", credentials: "same-origin", cache: "no-store",
        headers: { Accept: "application/json", "X-Control-Token": CONTROL_TOKEN },
      });
      body = await response.json().catch(() => null);
    } catch (error) {
      outcome.textContent = action + ": " + error.message;
      outcome.classList.add("control-failed");
      return;
    }
    let status = response.status;
    outcome.textContent = action + ": " + describe(action, status, body);
    if (status === 202 && body && body.poll) ({ status, body } = await pollCommand(body.poll));
    outcome.textContent = action + ": " + describe(action, status, body);
    outcome.dataset.status = String(status);
    outcome.classList.toggle("control-failed", status >= 400);
    if (status < 400 && action === "run" && body && body.command_id) watchRun(entry, body.command_id, outcome);
    if (status < 400) loadPage();
  }

  async function pollCommand(path) {
    const deadline = Date.now() + 30000;
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      try {
        const response = await fetch(new URL(path, location.origin), { headers: { Accept: "application/json" },
          credentials: "same-origin", cache: "no-store" });
        const body = await response.json();
        if (!response.ok) return { status: response.status, body };
        if (body.state !== "pending") return { status: body.status || 200, body };
      } catch (error) {
        return { status: 0, body: { message: error.message } };
      }
    }
    return { status: 202, body: { message: "no outcome yet" } };
  }

  /* A run-now's result: poll the job until its history holds the run of this command, then show it. */
  async function watchRun(entry, commandId, outcome) {
    const deadline = Date.now() + RUN_WATCH_MS;
    while (Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      let data;
      try {
        const response = await fetch(new URL(encodeURIComponent(entry.id), JOBS_URL),
          { headers: { Accept: "application/json" }, credentials: "same-origin", cache: "no-store" });
        if (!response.ok) continue;
        data = await response.json();
      } catch (error) {
        continue;
      }
      const run = (data.history || []).find((r) => r.command_id === commandId);
      if (!run) continue;
      outcome.textContent = "run: finished, " + run.outcome + " in " + duration(run.duration_seconds) +
        (run.error ? " (" + run.error.type + ": " + run.error.message + ")" : "");
      outcome.classList.toggle("control-failed", ERROR_OUTCOMES.has(run.outcome));
      if (entry.open) showHistory(entry, data);
      loadPage();
      return;
    }
  }

  // -- a job's detail: figures from the page at once, run history from /jobs/<id> -----------------------------
  function setOpen(entry, open) {
    entry.open = open;
    entry.toggle.setAttribute("aria-expanded", String(open));
    if (open && !entry.detail) {
      const actions = el("div", { class: "detail-actions" });
      entry.detail = el("tr", { class: "detail", id: "detail-" + entry.n },
        el("td", { colspan: COLUMNS }, el("div", { class: "detail-grid" },
          el("div", null, el("div", { class: "detail-facts" }), actions), el("div", { class: "detail-history" },
            el("h3", null, "Run history"), el("p", { class: "history-message muted" }, "Loading run history…"),
            el("div", { class: "history-body" })))));
      if (CONTROL_TOKEN) entry.detailControls = controls(entry, actions);
      entry.row.after(entry.detail);
      entry.toggle.setAttribute("aria-controls", entry.detail.id);
    }
    if (entry.detail) entry.detail.hidden = !open;
    if (open) {
      renderDetail(entry);
      loadHistory(entry);
    }
  }

  function renderDetail(entry) {
    const job = entry.item;
    const f = job.figures || {};
    if (entry.detailControls) entry.detailControls.update(job);
    const box = entry.detail.querySelector(".detail-facts");
    const detail = entry.history;
    const signature = JSON.stringify([job, detail && detail.stats, detail && detail.max_instances]);
    if (box.dataset.signature === signature) return;
    box.dataset.signature = signature;
    const nodes = [el("h3", null, job.name + " (" + job.id + ")")];
    if (job.health_reason) nodes.push(el("p", null, badge(job.health), " ", job.health_reason));
    const lastError = ((detail && detail.history) || []).find((run) => run.error);
    if (lastError) {
      nodes.push(el("p", { class: "error-text" }, el("strong", null, "Last error"), " at " + utc(lastError.finished_at) + " UTC: ",
        el("code", null, lastError.error.type + ": " + lastError.error.message)));
    }
    const list = el("dl", { class: "facts" });
    const pause = job.paused_by;
    facts(list, [
      ["Trigger", job.trigger],
      ["Critical", job.critical ? "yes" : "no"],
      ["Paused", job.paused ? "yes" + (pause ? ", by " + pause.by + " at " + utc(pause.at) + " UTC" : "") : "no"],
      ["Running", job.running ? job.running + " since " + utc(f.running_since) + " UTC" : "no"],
      ["Runs", count(f.success_count) + " succeeded, " + count(f.error_count) + " failed, " +
        count(f.missed_count) + " missed, " + count(f.max_instances_count) + " skipped at max_instances"],
      ["Duration", "avg " + duration(f.avg_seconds) + " · p95 " + duration(f.p95_seconds)],
      ["Max instances", detail ? String(detail.max_instances) : null],
      ["Crashes", f.crash_count ? count(f.crash_count) + (f.quarantined ? ", quarantined" : "") : null],
    ]);
    nodes.push(list);
    box.replaceChildren(...nodes);
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
    showHistory(entry, data);
  }

  function showHistory(entry, data) {
    entry.history = data;
    entry.historyKey = historyKey(entry.item);
    entry.detail.querySelector(".history-message").hidden = true;
    const started = performance.now();
    drawHistory(entry, data.history || []);
    renderDetail(entry);
    performance.clearMeasures("status-history");
    performance.measure("status-history", { start: started, end: performance.now() });  // bench/status_page_cost.py
  }

  function historyKey(job) {
    const f = job.figures || {};
    return [f.success_count, f.error_count, f.missed_count, f.max_instances_count, job.last_run_at].join("|");
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
    if (timed.length) parts.push(durationChart(timed.slice().reverse()));
    if (history.length) parts.push(historyTable(history));
    entry.detail.querySelector(".history-body").replaceChildren(...parts);
  }

  /* One circle per run that has a duration, oldest on the left, evenly spaced; failed runs in another colour.
   * Each circle's <title> is its tooltip (time, outcome, duration, error). */
  function durationChart(runs) {
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
      const tip = utc(run.finished_at) + " UTC · " + run.outcome + " · " + duration(run.duration_seconds) +
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
  async function getJson(url, revalidate) {
    // "no-cache": the browser asks again with If-None-Match and gets a 304 (no body) while nothing changed.
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin",
      cache: revalidate ? "no-cache" : "no-store" });
    if (!response.ok) throw new Error("HTTP " + response.status + (response.status === 401 ? ": reload the page to sign in" : ""));
    return response.json();
  }

  function measured(name, draw) {
    const started = performance.now();
    draw();
    performance.clearMeasures(name);  // the last one only: a tab stays open for days
    performance.measure(name, { start: started, end: performance.now() });  // bench/status_page_cost.py
  }

  async function loadPage() {
    const seq = ++pageSeq;
    try {
      const listing = await getJson(pageUrl(), true);
      if (seq !== pageSeq) return;  // a newer page was asked for meanwhile (typing in the filter)
      measured("status-render", () => renderJobs(listing));
      reloadOpenHistories();
      performance.mark("status-page-loaded");
    } catch (error) {
      if (seq === pageSeq) problem(error);
    }
  }

  function reloadOpenHistories() {
    for (const entry of jobs.values()) {
      if (entry.open && entry.history && entry.historyKey !== historyKey(entry.item)) loadHistory(entry);
    }
  }

  function problem(error) {
    const box = document.getElementById("refresh-problem");
    if (!error) { box.hidden = true; return; }
    box.textContent = "The last refresh failed (" + error.message + "); the figures below are older.";
    box.hidden = false;
  }

  async function refresh() {
    const seq = ++pageSeq;
    try {
      const [overview, listing, chart] = await Promise.all([getJson(OVERVIEW_URL, false), getJson(pageUrl(), true),
        getJson(CHART_URL, true)]);
      measured("status-render", () => {
        renderOverview(overview);
        renderAlerts(overview.metrics && overview.metrics.alerts);
        if (seq === pageSeq) renderJobs(listing);
        renderChart(chart);
      });
      reloadOpenHistories();
      problem(null);
    } catch (error) {
      problem(error);
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

  let typing = null;
  filterBox.addEventListener("input", () => {  // the server filters every job; ask once typing pauses
    clearTimeout(typing);
    typing = setTimeout(() => {
      query.q = filterBox.value.trim();
      query.offset = 0;
      loadPage();
    }, 150);
  });
  stateBox.addEventListener("change", () => {
    query.state = stateBox.value;
    query.offset = 0;
    loadPage();
  });
  document.getElementById("page-previous").addEventListener("click", () => {
    query.offset = Math.max(0, query.offset - PAGE_SIZE);
    loadPage();
  });
  document.getElementById("page-next").addEventListener("click", () => {
    if (lastPage && query.offset + PAGE_SIZE < lastPage.matched) query.offset += PAGE_SIZE;
    loadPage();
  });

  const initial = JSON.parse(document.getElementById("initial-data").textContent);
  measured("status-render", () => {
    renderOverview(initial.overview);
    renderAlerts(initial.overview.metrics && initial.overview.metrics.alerts);
    renderJobs(initial.jobs);
    renderChart(initial.chart);
  });
  if (location.hash.startsWith("#job=")) {  // an alert's link: show that job
    filterBox.value = decodeURIComponent(location.hash.slice(5));
    query.q = filterBox.value.trim();
    query.offset = 0;
    loadPage();
  }
  // After the frame that shows the table has been painted (a task queued from its animation frame).
  requestAnimationFrame(() => setTimeout(() => performance.mark("status-table-rendered")));
  schedule();
})();
