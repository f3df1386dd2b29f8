// Jobs: the job API's queue (docs/contract.md §4) with status badges, filters and paging; a
// job's details with payload, attempts and last error; a form that creates a job (its JSON
// payload checked here before anything is sent); and Retry on failed jobs.

import { request } from "./api.js";
import { formatTime, h, RequestState } from "./ui.js";

const STATUSES = ["pending", "running", "completed", "failed"];
const PAGE_SIZE = 20;

/** Reads the list answer: `{jobs, nextCursor}`, tolerant of a bare array. */
function readPage(answer) {
  if (Array.isArray(answer)) return { jobs: answer, next: null };
  const jobs = answer?.jobs ?? answer?.items ?? [];
  const next = answer?.nextCursor ?? answer?.next_cursor ?? answer?.cursor ?? null;
  return { jobs, next };
}

/** Problems with the create form's values, by field, and the body to send when none. */
export function checkNewJob({ type, name, payload, maxAttempts }) {
  const problems = {};
  const body = { type: type.trim(), name: name.trim() };
  if (!body.type) problems.type = "Type is required.";
  else if (body.type.length > 100) problems.type = "Type must be at most 100 characters.";
  if (!body.name) problems.name = "Name is required.";
  else if (body.name.length > 200) problems.name = "Name must be at most 200 characters.";
  if (payload.trim()) {
    try {
      body.payload = JSON.parse(payload);
    } catch (error) {
      problems.payload = `Payload is not valid JSON: ${error.message}`;
    }
  }
  if (maxAttempts.trim()) {
    const value = Number(maxAttempts);
    if (!Number.isInteger(value) || value < 1) problems.maxAttempts = "Max attempts must be a whole number, 1 or more.";
    else body.maxAttempts = value;
  }
  return { problems, body };
}

const pretty = (value) => (value === undefined || value === null ? "null" : JSON.stringify(value, null, 2));

const badge = (status) => h("span", { class: `badge badge-${status}`, dataset: { status } }, status);

export function mount(root, context) {
  // --- create form ---
  const fields = {
    type: h("input", { name: "type", required: true, maxlength: 100, placeholder: "TASK", autocomplete: "off" }),
    name: h("input", { name: "name", required: true, maxlength: 200, placeholder: "send_email", autocomplete: "off" }),
    payload: h("textarea", { name: "payload", rows: 4, spellcheck: "false", placeholder: '{"to": "ada@example.org"}' }),
    maxAttempts: h("input", { name: "maxAttempts", type: "number", min: 1, step: 1, placeholder: "default" }),
  };
  const messages = Object.fromEntries(Object.keys(fields).map((field) =>
    [field, h("p", { class: "field-error", id: `create-${field}-error`, hidden: true })]));
  const label = (text, field) => h("label", {}, text, fields[field], messages[field]);
  const createResult = h("p", { class: "form-result", role: "status" });
  const submit = h("button", { type: "submit", class: "primary" }, "Create job");
  const form = h("form", { class: "create-form", novalidate: true },
    h("div", { class: "form-row" }, label("Type", "type"), label("Name", "name"),
      label("Max attempts", "maxAttempts")),
    label("Payload (JSON, optional)", "payload"),
    h("div", { class: "buttons" }, submit), createResult);
  const createPanel = h("details", { class: "panel create-panel", open: true },
    h("summary", {}, h("h2", {}, "Create a job")), form);

  function showProblems(problems) {
    for (const [field, element] of Object.entries(messages)) {
      element.textContent = problems[field] || "";
      element.hidden = !problems[field];
      fields[field].setAttribute("aria-invalid", problems[field] ? "true" : "false");
      if (problems[field]) fields[field].setAttribute("aria-describedby", element.id);
    }
  }

  fields.payload.addEventListener("input", () => {
    const { problems } = checkNewJob(values());
    messages.payload.textContent = problems.payload || "";
    messages.payload.hidden = !problems.payload;
    fields.payload.setAttribute("aria-invalid", problems.payload ? "true" : "false");
  });
  const values = () => Object.fromEntries(Object.entries(fields).map(([k, el]) => [k, el.value]));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { problems, body } = checkNewJob(values());
    showProblems(problems);
    if (Object.keys(problems).length) {
      createResult.textContent = "Nothing was sent: fix the fields marked above.";
      createResult.dataset.state = "error";
      fields[Object.keys(problems)[0]].focus();
      return;
    }
    submit.disabled = true;
    createResult.dataset.state = "loading";
    createResult.textContent = "Creating…";
    try {
      const job = await request("/api/v1/jobs", { method: "POST", body });
      createResult.dataset.state = "ok";
      createResult.textContent = `Created job ${job.id} (${job.status}).`;
      createResult.dataset.jobId = job.id;
      selected = job.id;
      await refresh();
    } catch (error) {
      createResult.dataset.state = "error";
      createResult.textContent = `Not created: ${error.message}`;
      const serverProblems = {};
      for (const item of error.fields || []) if (item.field in fields) serverProblems[item.field] = item.message;
      showProblems(serverProblems);
    } finally {
      submit.disabled = false;
    }
  });

  // --- queue: filters, table, paging ---
  const filters = {
    status: h("select", { name: "status", "aria-label": "Status" }, h("option", { value: "" }, "Any status"),
      ...STATUSES.map((s) => h("option", { value: s }, s))),
    type: h("input", { name: "type", type: "search", placeholder: "Type", "aria-label": "Type" }),
    name: h("input", { name: "name", type: "search", placeholder: "Name", "aria-label": "Name" }),
  };
  const filterForm = h("form", { class: "filters" }, filters.status, filters.type, filters.name,
    h("button", { type: "submit" }, "Filter"));
  const tbody = h("tbody");
  const table = h("table", { class: "jobs" },
    h("thead", {}, h("tr", {}, h("th", {}, "Status"), h("th", {}, "Type"), h("th", {}, "Name"),
      h("th", { class: "wide" }, "Attempts"), h("th", { class: "wide" }, "Created"), h("th", {}, ""))),
    tbody);
  const previous = h("button", { type: "button", disabled: true }, "‹ Previous");
  const next = h("button", { type: "button", disabled: true }, "Next ›");
  const pageInfo = h("span", { class: "muted" });
  const queuePanel = h("section", { class: "panel", dataset: { panel: "jobs" } },
    h("h2", {}, "Queue"), filterForm);
  const listState = new RequestState(queuePanel, "the jobs", () => context.refreshNow());
  const emptyRow = h("p", { class: "hint", hidden: true }, "No jobs match.");
  queuePanel.append(h("div", { class: "table-wrap" }, table), emptyRow,
    h("div", { class: "pager" }, previous, pageInfo, next));

  const detailsPanel = h("section", { class: "panel details", dataset: { panel: "details" }, hidden: true });
  const detailsBody = h("div");
  detailsPanel.append(h("div", { class: "details-head" }, h("h2", {}, "Job"),
    h("button", { type: "button", class: "icon", "aria-label": "Close details",
      onclick: () => { selected = null; detailsPanel.hidden = true; } }, "✕")));
  const detailsState = new RequestState(detailsPanel, "the job", () => context.refreshNow());
  detailsPanel.append(detailsBody);

  root.append(h("div", { class: "jobs-layout" }, h("div", {}, createPanel, queuePanel), detailsPanel));

  const cursors = [null]; // the cursor of each page visited; the last is the page shown
  let nextCursor = null;
  let selected = null;
  const actionMessages = new Map(); // job id -> the outcome of its last retry, shown in place

  filterForm.addEventListener("submit", (event) => {
    event.preventDefault();
    cursors.length = 1;
    context.refreshNow();
  });
  next.addEventListener("click", () => { if (nextCursor) { cursors.push(nextCursor); context.refreshNow(); } });
  previous.addEventListener("click", () => { if (cursors.length > 1) { cursors.pop(); context.refreshNow(); } });

  async function retry(job, button) {
    button.disabled = true;
    button.textContent = "Retrying…";
    try {
      const updated = await request(`/api/v1/jobs/${encodeURIComponent(job.id)}/retry`, { method: "POST" });
      actionMessages.set(job.id, { state: "ok", text: `Retry scheduled: now ${updated.status}.` });
    } catch (error) {
      actionMessages.set(job.id, { state: "error", text: `Retry failed: ${error.message}` });
    }
    await refresh();
  }

  const retryButton = (job) => h("button", { type: "button", class: "retry", dataset: { jobId: job.id },
    onclick: (event) => { event.stopPropagation(); retry(job, event.currentTarget); } }, "Retry");

  function renderRows(jobs) {
    tbody.replaceChildren(...jobs.map((job) => h("tr", {
      class: job.id === selected ? "selected" : "", dataset: { jobId: job.id, status: job.status },
      tabindex: 0,
      onclick: () => select(job.id),
      onkeydown: (event) => { if (event.key === "Enter") select(job.id); },
    },
    h("td", {}, badge(job.status)), h("td", {}, job.type), h("td", { class: "name-cell" }, job.name),
    h("td", { class: "wide" }, `${job.attempts ?? 0}/${job.maxAttempts ?? "–"}`),
    h("td", { class: "wide" }, formatTime(job.createdAt)),
    h("td", {}, job.status === "failed" ? retryButton(job) : ""))));
    emptyRow.hidden = jobs.length > 0;
  }

  function renderDetails(job) {
    const row = (name, value) => [h("dt", {}, name), h("dd", {}, value ?? "–")];
    const message = actionMessages.get(job.id);
    const children = [
      h("p", { class: "details-title" }, badge(job.status), " ", h("strong", {}, job.name),
        h("span", { class: "muted" }, ` ${job.type}`)),
      h("dl", {},
        row("Id", h("code", {}, job.id)),
        row("Attempts", `${job.attempts ?? 0} of ${job.maxAttempts ?? "–"}`),
        row("Worker", job.worker),
        row("Created", formatTime(job.createdAt)),
        row("Started", formatTime(job.startedAt)),
        row("Finished", formatTime(job.finishedAt)),
        row("Next attempt", formatTime(job.nextAttemptAt))),
      h("h3", {}, "Last error"),
      job.lastError ? h("pre", { class: "error-box", dataset: { field: "lastError" } }, String(job.lastError))
        : h("p", { class: "muted" }, "None"),
      h("h3", {}, "Payload"),
      h("pre", { class: "payload", dataset: { field: "payload" } }, pretty(job.payload)),
      job.result !== undefined && job.result !== null
        ? [h("h3", {}, "Result"), h("pre", { class: "payload", dataset: { field: "result" } }, pretty(job.result))]
        : null,
      job.status === "failed" ? h("div", { class: "buttons" }, retryButton(job)) : null,
      message ? h("p", { class: "form-result", dataset: { state: message.state } }, message.text) : null,
    ];
    detailsBody.replaceChildren(...children.flat().filter(Boolean));
    detailsPanel.dataset.jobId = job.id;
    detailsPanel.dataset.status = job.status;
  }

  function select(id) {
    selected = id;
    detailsPanel.hidden = false;
    // One column on narrow screens puts the details above the list: bring them into view.
    if (matchMedia("(max-width: 1100px)").matches) detailsPanel.scrollIntoView({ block: "start" });
    for (const tr of tbody.children) tr.classList.toggle("selected", tr.dataset.jobId === id);
    context.refreshNow();
  }

  async function refresh() {
    const query = { limit: PAGE_SIZE, cursor: cursors.at(-1) };
    for (const [name, element] of Object.entries(filters)) query[name] = element.value.trim();
    const loads = [listState.run(() => request("/api/v1/jobs", { query }))];
    if (selected) {
      detailsPanel.hidden = false;
      loads.push(detailsState.run(() => request(`/api/v1/jobs/${encodeURIComponent(selected)}`)));
    }
    const [list, job] = await Promise.all(loads);
    if (list !== undefined) {
      const page = readPage(list);
      nextCursor = page.next;
      renderRows(page.jobs);
      next.disabled = !nextCursor;
      previous.disabled = cursors.length <= 1;
      pageInfo.textContent = `Page ${cursors.length}`;
    }
    if (job) renderDetails(job);
  }

  return { refresh, restyle() {}, destroy() {} };
}
