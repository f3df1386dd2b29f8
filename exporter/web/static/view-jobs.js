// Queue (route #/jobs): the job API's queue (docs/contract.md §4), newest first unless asked
// otherwise, with status badges, filters and paging; a job's details with payload, attempts and last error; a form that creates a job (its JSON
// payload checked here before anything is sent); Retry on failed jobs, Cancel on pending
// ones, Delete on finished ones; and the bulk "Retry all failed" and "Cancel all pending" of
// the current type and name filter. Every destructive step asks first, in a <dialog>.

import { request } from "./api.js";
import { formatTime, h, RequestState } from "./ui.js";

const STATUSES = ["pending", "running", "completed", "failed", "cancelled"];
const FINISHED = new Set(["completed", "failed", "cancelled"]);
const plural = (count, one) => `${count} ${one}${count === 1 ? "" : "s"}`;

/**
 * Asks `question` in a modal <dialog>; resolves true for the confirm button, false for
 * "Keep", Escape or closing. Focus starts on "Keep", so Enter alone destroys nothing.
 */
export function confirmDialog(question, confirmText) {
  return new Promise((resolve) => {
    const keep = h("button", { type: "button", class: "keep", value: "keep" }, "Keep");
    const go = h("button", { type: "button", class: "danger confirm", value: "confirm" }, confirmText);
    const dialog = h("dialog", { class: "confirm-dialog", "aria-labelledby": "confirm-question" },
      h("p", { id: "confirm-question" }, question), h("div", { class: "buttons" }, keep, go));
    let answer = false;
    keep.addEventListener("click", () => dialog.close());
    go.addEventListener("click", () => { answer = true; dialog.close(); });
    dialog.addEventListener("close", () => { dialog.remove(); resolve(answer); });
    document.body.append(dialog);
    dialog.showModal();
    keep.focus();
  });
}
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
  const order = h("select", { name: "order", "aria-label": "Order" },
    h("option", { value: "newest" }, "Newest first"), h("option", { value: "oldest" }, "Oldest first"));
  const filterForm = h("form", { class: "filters" }, filters.status, filters.type, filters.name, order,
    h("button", { type: "submit" }, "Filter"));
  order.addEventListener("change", () => { cursors.length = 1; context.refreshNow(); });
  const retryAll = h("button", { type: "button", class: "bulk-retry" }, "Retry all failed");
  const cancelAll = h("button", { type: "button", class: "bulk-cancel danger" }, "Cancel all pending");
  const bulkResult = h("p", { class: "bulk-result", role: "status" });
  const bulkBar = h("div", { class: "bulk-actions" }, retryAll, cancelAll, bulkResult);
  const tbody = h("tbody");
  const table = h("table", { class: "jobs" },
    h("thead", {}, h("tr", {}, h("th", {}, "Status"), h("th", {}, "Type"), h("th", {}, "Name"),
      h("th", { class: "wide" }, "Attempts"), h("th", { class: "wide" }, "Created"), h("th", {}, ""))),
    tbody);
  const previous = h("button", { type: "button", disabled: true }, "‹ Previous");
  const next = h("button", { type: "button", disabled: true }, "Next ›");
  const pageInfo = h("span", { class: "muted" });
  const queuePanel = h("section", { class: "panel", dataset: { panel: "jobs" } },
    h("h2", {}, "Queue"), filterForm, bulkBar);
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

  /** What the bulk buttons take: the type and name filter, in words and as a body. */
  function bulkScope() {
    const body = {};
    const type = filters.type.value.trim();
    const name = filters.name.value.trim();
    if (type) body.type = type;
    if (name) body.name = name;
    const words = [type && `type ${type}`, name && `name ${name}`].filter(Boolean).join(" and ");
    return { body, words: words ? ` of ${words}` : "" };
  }

  async function bulk(button, { verb, status, route, key, done }) {
    const { body, words } = bulkScope();
    if (!(await confirmDialog(`${verb} every ${status} job${words}?`, `${verb} all ${status}`))) {
      button.focus();
      return;
    }
    button.disabled = true;
    bulkResult.dataset.state = "loading";
    bulkResult.textContent = `${verb === "Retry" ? "Retrying" : "Cancelling"}…`;
    try {
      const answer = await request(`/api/v1/jobs/${route}`, { method: "POST", body });
      bulkResult.dataset.state = "ok";
      bulkResult.textContent = `${done} ${plural(answer[key], "job")}${words}.`;
    } catch (error) {
      bulkResult.dataset.state = "error";
      bulkResult.textContent = `${verb} failed: ${error.message}`;
    } finally {
      button.disabled = false;
      button.focus();
    }
    await refresh();
  }

  retryAll.addEventListener("click", () => bulk(retryAll,
    { verb: "Retry", status: "failed", route: "retry", key: "retried", done: "Retried" }));
  cancelAll.addEventListener("click", () => bulk(cancelAll,
    { verb: "Cancel", status: "pending", route: "cancel", key: "cancelled", done: "Cancelled" }));

  async function cancel(job, button) {
    button.disabled = true;
    try {
      const updated = await request(`/api/v1/jobs/${encodeURIComponent(job.id)}/cancel`, { method: "POST" });
      actionMessages.set(job.id, { state: "ok", text: `Cancelled: now ${updated.status}.` });
    } catch (error) {
      actionMessages.set(job.id, { state: "error", text: `Cancel failed: ${error.message}` });
    }
    await refresh();
  }

  async function remove(job, button) {
    const question = `Delete ${job.status} job ${job.name} (${job.type})? Its counts in /metrics stay.`;
    if (!(await confirmDialog(question, "Delete job"))) {
      button.focus();
      return;
    }
    button.disabled = true;
    try {
      await request(`/api/v1/jobs/${encodeURIComponent(job.id)}`, { method: "DELETE" });
      bulkResult.dataset.state = "ok";
      bulkResult.textContent = `Deleted job ${job.id}.`;
      if (selected === job.id) { selected = null; detailsPanel.hidden = true; }
    } catch (error) {
      bulkResult.dataset.state = "error";
      bulkResult.textContent = `Delete failed: ${error.message}`;
    }
    await refresh();
  }

  const cancelButton = (job) => h("button", { type: "button", class: "cancel", dataset: { jobId: job.id },
    onclick: (event) => { event.stopPropagation(); cancel(job, event.currentTarget); } }, "Cancel");
  const deleteButton = (job) => h("button", { type: "button", class: "delete danger", dataset: { jobId: job.id },
    onclick: (event) => { event.stopPropagation(); remove(job, event.currentTarget); } }, "Delete");
  const actions = (job) => h("span", { class: "row-actions" },
    job.status === "failed" ? retryButton(job) : null,
    job.status === "pending" ? cancelButton(job) : null,
    FINISHED.has(job.status) ? deleteButton(job) : null);

  const retryButton = (job) => h("button", { type: "button", class: "retry", dataset: { jobId: job.id },
    onclick: (event) => { event.stopPropagation(); retry(job, event.currentTarget); } }, "Retry");

  function renderRows(jobs) {
    tbody.replaceChildren(...jobs.map((job) => h("tr", {
      class: job.id === selected ? "selected" : "", dataset: { jobId: job.id, status: job.status },
      tabindex: 0,
      onclick: () => select(job.id),
      onkeydown: (event) => { if (event.key === "Enter" && event.target === event.currentTarget) select(job.id); },
    },
    h("td", {}, badge(job.status)), h("td", {}, job.type), h("td", { class: "name-cell" }, job.name),
    h("td", { class: "wide" }, `${job.attempts ?? 0}/${job.maxAttempts ?? "–"}`),
    h("td", { class: "wide" }, formatTime(job.createdAt)),
    h("td", {}, actions(job)))));
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
      h("div", { class: "buttons" }, actions(job)),
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
    const query = { limit: PAGE_SIZE, cursor: cursors.at(-1), order: order.value };
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
