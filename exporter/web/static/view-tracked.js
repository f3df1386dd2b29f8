// Tracked: every job of every scraped and pushed source (GET /api/v1/tracked), as its
// latest run left it. Running jobs show their age, ticking, and a "slow" mark once they run
// longer than their job function's p95 (GET /api/v1/stats/durations) or than the setting
// "Mark running jobs older than"; failed ones show their error. Filters live in the
// address (#/tracked?status=running&source=...&q=...), so a link can point at a job; pages
// follow the API's cursor, and going back reuses the cursors seen. Job-API jobs are on the
// Queue tab (#/jobs).

import { request } from "./api.js";
import { formatTime, h, RequestState } from "./ui.js";

export const STATUSES = ["running", "failed", "pending", "lost", "completed"];
const FILTERS = ["status", "source", "type", "name", "q", "order"];
const PAGE_SIZE = 50;
const EXCERPT = 140; // characters of an error shown in its row

/** "45 s", "12 min 05 s", "3 h 02 min", "2 d 04 h": a duration for people. */
export function formatAge(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  const s = Math.max(0, Math.floor(seconds));
  const two = (n) => String(n).padStart(2, "0");
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${two(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${two(Math.floor((s % 3600) / 60))} min`;
  return `${Math.floor(s / 86400)} d ${two(Math.floor((s % 86400) / 3600))} h`;
}

/** A duration in seconds that may be below one: "0.25 s" rather than "0 s". */
function formatSeconds(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  return seconds < 10 ? `${Number(seconds.toFixed(2))} s` : formatAge(seconds);
}

/**
 * The part of an error a row shows: of a Python traceback its exception line (the first
 * line that is neither the "Traceback" header nor an indented frame), else its first line;
 * shortened to `length` characters.
 */
export function excerpt(text, length = EXCERPT) {
  const lines = String(text).split("\n").filter((l) => l.trim());
  const traceback = /^Traceback \(most recent call last\)/.test(lines[0] || "");
  const chosen = (traceback && lines.slice(1).find((l) => !/^\s/.test(l))) || lines[0] || "";
  const line = chosen.replace(/\s+/g, " ").trim();
  return line.length > length ? `${line.slice(0, length - 1)}…` : line;
}

const seriesKey = (job) => `${job.source}\u0000${job.type}\u0000${job.name}`;

/**
 * Why a running job counts as slow, or null: it has run longer than its function's p95,
 * or longer than `limitMinutes` (0: no such limit).
 */
export function slowness(job, nowMs, usual, limitMinutes) {
  if (job.status !== "running" || job.startedAt === null || job.startedAt === undefined) return null;
  const age = (nowMs - job.startedAt) / 1000;
  const p95 = usual?.p95;
  if (p95 !== null && p95 !== undefined && p95 > 0 && age > p95) {
    return { why: "p95", text: `running longer than its usual p95 of ${formatSeconds(p95)}` };
  }
  if (limitMinutes > 0 && age > limitMinutes * 60) {
    return { why: "limit", text: `running longer than ${formatAge(limitMinutes * 60)} (the limit in Settings)` };
  }
  return null;
}

function emptyText(params) {
  const status = params.get("status");
  const filtered = ["source", "type", "name", "q"].some((f) => params.get(f));
  if (status) return filtered ? `No ${status} jobs match these filters.` : `No ${status} jobs.`;
  return filtered ? "No tracked jobs match these filters." : "No tracked jobs yet.";
}

const badge = (status) => h("span", { class: `badge badge-${status}`, dataset: { status } }, status);

export function mount(root, context) {
  let params = context.params;
  const cursors = [null]; // the cursor of each page visited; the last is the page shown
  let nextCursor = null;
  let jobs = [];
  let usual = new Map(); // series key -> {p50, p95, p99}
  let selected = null; // {source, id}
  let selectedJob = null;
  const sources = new Set();

  // --- filters: the address's hash is their one home ---
  const input = (name, label, attributes = {}) => h("label", { class: "filter" }, h("span", {}, label),
    h("input", { name, type: "search", autocomplete: "off", ...attributes }));
  const statusSelect = h("select", { name: "status" }, h("option", { value: "" }, "Any status"),
    ...STATUSES.map((s) => h("option", { value: s }, s)));
  const orderSelect = h("select", { name: "order" },
    h("option", { value: "" }, "Default"),
    h("option", { value: "newest" }, "Newest first"), h("option", { value: "oldest" }, "Oldest first"));
  const sourceList = h("datalist", { id: "tracked-sources" });
  const form = h("form", { class: "tracked-filters", role: "search" },
    h("label", { class: "filter" }, h("span", {}, "Status"), statusSelect),
    input("source", "Source", { list: "tracked-sources" }), input("type", "Type"), input("name", "Name"),
    input("q", "Id or name contains", { maxlength: 200 }),
    h("label", { class: "filter", title: "Default: running jobs oldest first, others newest first" }, h("span", {}, "Order"), orderSelect),
    h("div", { class: "filter-buttons" },
      h("button", { type: "submit", class: "primary" }, "Apply"),
      h("button", { type: "button", onclick: () => go(new URLSearchParams()) }, "Clear")),
    sourceList);

  const quick = h("nav", { class: "status-links", "aria-label": "Tracked jobs by status" },
    ...["", ...STATUSES].map((status) => h("a", {
      href: status ? `#/tracked?status=${status}` : "#/tracked", dataset: { status: status || "any" },
    }, status ? status[0].toUpperCase() + status.slice(1) : "All")));

  const tbody = h("tbody");
  const table = h("table", { class: "jobs tracked" },
    h("thead", {}, h("tr", {}, h("th", { class: "col-status" }, "Status"), h("th", {}, "Job"),
      h("th", { class: "wide col-time" }, "Started"), h("th", { class: "col-age" }, "Age / duration"))),
    tbody);
  const empty = h("p", { class: "empty-state", hidden: true, role: "status" });
  const previous = h("button", { type: "button", disabled: true }, "‹ Previous");
  const next = h("button", { type: "button", disabled: true }, "Next ›");
  const pageInfo = h("span", { class: "muted" });
  const listPanel = h("section", { class: "panel", dataset: { panel: "tracked" } },
    h("h2", {}, "Tracked jobs"),
    h("p", { class: "hint" }, "Every job of the scraped and pushed sources. Jobs of the job API are on the ",
      h("a", { href: "#/jobs" }, "Queue"), " tab."),
    quick, form);
  const listState = new RequestState(listPanel, "the tracked jobs", () => context.refreshNow());
  listPanel.append(h("div", { class: "table-wrap" }, table), empty,
    h("div", { class: "pager" }, previous, pageInfo, next));

  const detailTitle = h("h2", { tabindex: -1 }, "Job");
  const closeButton = h("button", { type: "button", class: "icon", "aria-label": "Close the job's details",
    onclick: () => close() }, "✕");
  const detailBody = h("div");
  const detailPanel = h("section", { class: "panel details tracked-details", dataset: { panel: "tracked-details" },
    hidden: true, "aria-labelledby": "tracked-detail-title" },
  h("div", { class: "details-head" }, detailTitle, closeButton), detailBody);
  detailTitle.id = "tracked-detail-title";
  // Escape closes the detail, wherever the focus is (but in the settings dialog, its own).
  const onEscape = (event) => {
    if (event.key === "Escape" && !detailPanel.hidden && !document.querySelector("dialog[open]")) close();
  };
  document.addEventListener("keydown", onEscape);

  root.append(h("div", { class: "jobs-layout tracked-layout" }, h("div", {}, listPanel), detailPanel));

  function go(values) {
    const query = new URLSearchParams();
    for (const name of FILTERS) {
      const value = (values.get(name) || "").trim();
      if (value) query.set(name, value);
    }
    const text = query.toString();
    const hash = text ? `#/tracked?${text}` : "#/tracked";
    if (location.hash === hash) navigate(query);
    else location.hash = hash; // app.js calls navigate()
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    go(new FormData(form));
  });

  function fillForm() {
    for (const name of FILTERS) form.elements[name].value = params.get(name) || "";
    for (const link of quick.children) {
      const current = (params.get("status") || "any") === link.dataset.status;
      link.setAttribute("aria-current", current ? "true" : "false");
    }
  }

  function navigate(newParams) {
    params = newParams;
    cursors.length = 1;
    if (selected) close(false);
    fillForm();
    context.refreshNow();
  }

  next.addEventListener("click", () => { if (nextCursor) { cursors.push(nextCursor); context.refreshNow(); } });
  previous.addEventListener("click", () => { if (cursors.length > 1) { cursors.pop(); context.refreshNow(); } });

  // --- rows ---
  const isSelected = (job) => selected && job.source === selected.source && job.id === selected.id;

  function ageCell(job) {
    if (job.status === "running") {
      return h("td", { class: "col-age", dataset: { age: "" } }, formatAge((Date.now() - job.startedAt) / 1000));
    }
    if (job.status === "pending") {
      const since = job.enqueuedAt ?? null;
      return h("td", { class: "col-age" }, since === null ? "waiting" : `waiting ${formatAge((Date.now() - since) / 1000)}`);
    }
    return h("td", { class: "col-age" }, formatSeconds(job.durationSeconds));
  }

  function slowMark(job) {
    const slow = slowness(job, Date.now(), usual.get(seriesKey(job)), context.settings().slowMinutes);
    return h("span", { class: "mark-slow", hidden: !slow, title: slow?.text, dataset: { mark: "slow" } },
      h("span", { "aria-hidden": "true" }, "⚠ "), "slow");
  }

  function renderRows() {
    // A poll re-renders the rows: the one keyboard focus was on keeps it.
    const focused = tbody.contains(document.activeElement) ? document.activeElement.closest("tr") : null;
    const keep = focused && { source: focused.dataset.source, id: focused.dataset.jobId };
    tbody.replaceChildren(...jobs.map((job, index) => {
      const row = h("tr", {
        class: isSelected(job) ? "selected" : "",
        dataset: { source: job.source, jobId: job.id, status: job.status, index },
        tabindex: 0,
        "aria-label": `${job.status} ${job.name} ${job.id}, open details`,
        onclick: () => select(job),
        onkeydown: (event) => { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); select(job); } },
      },
      h("td", { class: "col-status" }, badge(job.status), slowMark(job)),
      h("td", { class: "job-cell" },
        h("div", { class: "job-name" }, job.name),
        h("div", { class: "job-meta" }, h("code", {}, job.id), " · ", job.source, " · ", job.type,
          job.attempt > 1 ? ` · run ${job.attempt}` : ""),
        job.error ? h("div", { class: "error-excerpt", dataset: { field: "error" } }, excerpt(job.error)) : null),
      h("td", { class: "wide col-time" }, formatTime(job.startedAt ?? job.enqueuedAt)),
      ageCell(job));
      return row;
    }));
    if (keep) {
      [...tbody.children].find((tr) => tr.dataset.source === keep.source && tr.dataset.jobId === keep.id)?.focus();
    }
    empty.textContent = emptyText(params);
    empty.hidden = jobs.length > 0;
    table.hidden = jobs.length === 0;
  }

  // --- the detail ---
  function renderDetail(job) {
    const row = (name, value, field) => [h("dt", {}, name), h("dd", { dataset: { field } }, value ?? "–")];
    const slow = slowness(job, Date.now(), usual.get(seriesKey(job)), context.settings().slowMinutes);
    const p95 = usual.get(seriesKey(job))?.p95;
    const link = new URLSearchParams({ source: job.source, q: job.id });
    detailTitle.textContent = job.name;
    detailBody.replaceChildren(...[
      h("p", { class: "details-title" }, badge(job.status),
        slow ? h("span", { class: "mark-slow", dataset: { mark: "slow" } }, h("span", { "aria-hidden": "true" }, "⚠ "), "slow") : null,
        slow ? h("span", { class: "slow-why" }, ` ${slow.text}`) : null),
      h("dl", {},
        row("Source", job.source, "source"),
        row("Id", h("code", {}, job.id), "id"),
        row("Type", job.type, "type"),
        row("Name", job.name, "name"),
        row("Status", job.status, "status"),
        row("Runs", String(job.attempt), "attempt"),
        row("Queued", formatTime(job.enqueuedAt), "enqueuedAt"),
        row("Started", formatTime(job.startedAt), "startedAt"),
        row("Finished", formatTime(job.finishedAt), "finishedAt"),
        job.status === "running"
          ? row("Running for", h("span", { dataset: { age: "" } }, formatAge((Date.now() - job.startedAt) / 1000)), "age")
          : row("Duration", formatSeconds(job.durationSeconds), "durationSeconds"),
        row("Usual (p95)", p95 === null || p95 === undefined ? "not known yet" : formatSeconds(p95), "p95")),
      h("h3", {}, "Error"),
      job.error ? h("pre", { class: "error-box", dataset: { field: "error" } }, String(job.error))
        : h("p", { class: "muted" }, "None"),
      h("p", {}, h("a", { href: `#/tracked?${link}` }, "Link to this job")),
    ].flat().filter(Boolean));
    detailPanel.dataset.source = job.source;
    detailPanel.dataset.jobId = job.id;
    detailPanel.dataset.status = job.status;
  }

  function select(job) {
    selected = { source: job.source, id: job.id };
    selectedJob = job;
    detailPanel.hidden = false;
    renderDetail(job);
    for (const tr of tbody.children) tr.classList.toggle("selected", tr.dataset.source === job.source && tr.dataset.jobId === job.id);
    if (matchMedia("(max-width: 1100px)").matches) detailPanel.scrollIntoView({ block: "start" });
    detailTitle.focus({ preventScroll: true });
  }

  function close(refocus = true) {
    const was = selected;
    selected = null;
    selectedJob = null;
    detailPanel.hidden = true;
    const row = was && [...tbody.children].find((tr) => tr.dataset.source === was.source && tr.dataset.jobId === was.id);
    if (!row) return;
    row.classList.remove("selected");
    if (refocus) row.focus();
  }

  // Ages tick every second, and a running job turns slow in place.
  const ticker = setInterval(() => {
    const now = Date.now();
    const limit = context.settings().slowMinutes;
    for (const tr of tbody.children) {
      const job = jobs[Number(tr.dataset.index)];
      if (!job || job.status !== "running") continue;
      tr.querySelector("[data-age]").textContent = formatAge((now - job.startedAt) / 1000);
      const slow = slowness(job, now, usual.get(seriesKey(job)), limit);
      const mark = tr.querySelector("[data-mark]");
      mark.hidden = !slow;
      if (slow) mark.title = slow.text;
    }
    const age = detailPanel.querySelector("[data-age]");
    if (age && selectedJob) age.textContent = formatAge((now - selectedJob.startedAt) / 1000);
  }, 1000);

  async function loadUsual() {
    try {
      const answer = await request("/api/v1/stats/durations");
      usual = new Map(answer.functions.map((f) => [seriesKey(f), f]));
      for (const f of answer.functions) sources.add(f.source);
    } catch {
      // The marks fall back to the limit in Settings; the list says its own errors.
    }
  }

  async function refresh() {
    const status = params.get("status") || "";
    const order = params.get("order") || (status === "running" ? "oldest" : "newest");
    const query = { limit: PAGE_SIZE, cursor: cursors.at(-1), order };
    for (const name of ["status", "source", "type", "name", "q"]) query[name] = params.get(name) || "";
    const [page] = await Promise.all([
      listState.run(() => request("/api/v1/tracked", { query })),
      loadUsual(),
    ]);
    if (page === undefined) return;
    jobs = page.jobs;
    nextCursor = page.next;
    for (const job of jobs) sources.add(job.source);
    sourceList.replaceChildren(...[...sources].sort().map((s) => h("option", { value: s })));
    renderRows();
    next.disabled = !nextCursor;
    previous.disabled = cursors.length <= 1;
    pageInfo.textContent = `Page ${cursors.length}`;
    if (selected) {
      const fresh = jobs.find(isSelected);
      if (fresh) {
        selectedJob = fresh;
        renderDetail(fresh);
      }
    }
  }

  fillForm();
  return {
    refresh,
    navigate,
    restyle() { renderRows(); if (selectedJob) renderDetail(selectedJob); },
    destroy() { clearInterval(ticker); document.removeEventListener("keydown", onEscape); },
  };
}
