// Schedules: the recurring jobs (docs/api.md, Schedules) with their timetable, state, next
// fire, last fire, last success and fires in words; a form that creates one or edits one
// (checked here before sending, the server's field errors shown by their fields), and the
// buttons that pause, resume, run one now and delete (after a confirmation dialog).
// Every action goes through the API, then the list is read again, so the page shows what the
// store holds, not what it hoped to change.

import { request } from "./api.js";
import { formatCount, formatTime, h, RequestState } from "./ui.js";

/** The timetable in words: the cron line and its zone, or the interval. */
export function timetable(schedule) {
  if (schedule.cron) return `${schedule.cron} (${schedule.timezone})`;
  const seconds = schedule.intervalSeconds;
  if (seconds % 3600 === 0) return `every ${seconds / 3600} h`;
  if (seconds % 60 === 0) return `every ${seconds / 60} min`;
  return `every ${seconds} s`;
}

/** The fires by result, in words: "12 on time · 1 late · 0 skipped · 2 run by hand". */
export function firesInWords(fires = {}) {
  return [
    [fires.onTime, "on time"], [fires.late, "late"], [fires.skipped, "skipped"],
    [fires.manual, "run by hand"],
  ].map(([count, words]) => `${formatCount(count ?? 0)} ${words}`).join(" · ");
}

/** The same words, each part kept on one line so a narrow column breaks between parts. */
const firesParts = (fires) => firesInWords(fires).split(" · ")
  .flatMap((part, index) => [index ? " · " : "", h("span", { class: "nowrap" }, part)]);

const FIRES_LEGEND = "on time: fired when due · late: missed while no exporter ran, run once "
  + "afterwards · skipped: missed and not run (misfire policy) · run by hand: Run now";

const FIELD_NAMES = ["type", "name", "timing", "cron", "intervalSeconds", "timezone", "misfire",
  "payload", "maxAttempts"];

/**
 * Problems with the form's values, by field, and the body to send when there are none.
 * `timing` is "cron" or "interval"; an edit (`original` given) sends only what changed.
 */
export function checkSchedule(values, original = null) {
  const problems = {};
  const body = { type: values.type.trim(), name: values.name.trim() };
  if (!body.type) problems.type = "Type is required.";
  else if (body.type.length > 100) problems.type = "Type must be at most 100 characters.";
  if (!body.name) problems.name = "Name is required.";
  else if (body.name.length > 200) problems.name = "Name must be at most 200 characters.";
  if (values.timing === "cron") {
    const cron = values.cron.trim();
    if (!cron) problems.cron = "Cron is required (5 fields: minute hour day month weekday).";
    else if (cron.split(/\s+/).length !== 5) {
      problems.cron = "Cron needs 5 fields: minute hour day month weekday.";
    } else body.cron = cron.split(/\s+/).join(" ");
    body.timezone = values.timezone.trim() || "UTC";
  } else {
    const seconds = Number(values.intervalSeconds);
    if (!values.intervalSeconds.trim() || !Number.isFinite(seconds) || seconds < 1
      || seconds > 366 * 24 * 3600) {
      problems.intervalSeconds = "Every must be a number of seconds, 1 to 31,622,400.";
    } else body.intervalSeconds = seconds;
  }
  body.misfire = values.misfire;
  body.payload = null;
  if (values.payload.trim()) {
    try {
      body.payload = JSON.parse(values.payload);
    } catch (error) {
      problems.payload = `Payload is not valid JSON: ${error.message}`;
    }
  }
  body.maxAttempts = null;
  if (values.maxAttempts.trim()) {
    const value = Number(values.maxAttempts);
    if (!Number.isInteger(value) || value < 1 || value > 100) {
      problems.maxAttempts = "Max attempts must be a whole number from 1 to 100.";
    } else body.maxAttempts = value;
  }
  if (!original) {
    if (body.payload === null) delete body.payload;
    if (body.maxAttempts === null) delete body.maxAttempts;
    return { problems, body };
  }
  const changed = {};
  for (const [field, value] of Object.entries(body)) {
    if (JSON.stringify(original[field] ?? null) !== JSON.stringify(value)) changed[field] = value;
  }
  return { problems, body: changed };
}

const badge = (state) => h("span", { class: `badge badge-${state}`, dataset: { state } }, state);

export function mount(root, context) {
  // --- the create / edit form ---
  const inputs = {
    type: h("input", { name: "type", required: true, maxlength: 100, placeholder: "REPORT", autocomplete: "off" }),
    name: h("input", { name: "name", required: true, maxlength: 200, placeholder: "nightly_totals", autocomplete: "off" }),
    cron: h("input", { name: "cron", placeholder: "30 2 * * *", autocomplete: "off", spellcheck: "false" }),
    intervalSeconds: h("input", { name: "intervalSeconds", type: "number", min: 1, step: "any", placeholder: "60" }),
    timezone: h("input", { name: "timezone", placeholder: "UTC", autocomplete: "off", list: "schedule-zones", value: "UTC" }),
    misfire: h("select", { name: "misfire" },
      h("option", { value: "run_once" }, "run the latest missed fire once (late)"),
      h("option", { value: "skip" }, "skip missed fires")),
    payload: h("textarea", { name: "payload", rows: 3, spellcheck: "false", placeholder: '{"to": "ops@example.org"}' }),
    maxAttempts: h("input", { name: "maxAttempts", type: "number", min: 1, max: 100, step: 1, placeholder: "default" }),
  };
  const timingRadio = (value, text) => h("label", { class: "inline" },
    h("input", { type: "radio", name: "timing", value, checked: value === "cron" }), text);
  const timingChoice = h("fieldset", { class: "timing-choice" },
    h("legend", {}, "Timetable"), timingRadio("cron", "Cron (calendar)"),
    timingRadio("interval", "Every N seconds"));
  const messages = Object.fromEntries(FIELD_NAMES.map((field) =>
    [field, h("p", { class: "field-error", id: `schedule-${field}-error`, hidden: true })]));
  const label = (text, field, hint) => h("label", { dataset: { for: field } }, text,
    hint ? h("span", { class: "hint" }, ` ${hint}`) : null, inputs[field], messages[field]);
  const zones = h("datalist", { id: "schedule-zones" },
    ...(Intl.supportedValuesOf ? Intl.supportedValuesOf("timeZone") : ["UTC"])
      .map((zone) => h("option", { value: zone })));
  const cronBlock = h("div", { class: "form-row timing-cron" },
    label("Cron", "cron", "(minute hour day month weekday)"), label("Time zone", "timezone"));
  const intervalBlock = h("div", { class: "timing-interval", hidden: true },
    label("Every (seconds)", "intervalSeconds", "(from the schedule's creation)"));
  const formTitle = h("h2", {}, "New schedule");
  const submit = h("button", { type: "submit", class: "primary" }, "Create schedule");
  const cancel = h("button", { type: "button", class: "cancel-edit" }, "Cancel");
  const formResult = h("p", { class: "form-error", role: "alert", hidden: true });
  const form = h("form", { class: "create-form schedule-form", novalidate: true },
    formTitle,
    h("div", { class: "form-row" }, label("Type", "type"), label("Name", "name"),
      label("Max attempts", "maxAttempts")),
    timingChoice, messages.timing, cronBlock, intervalBlock,
    label("When fires were missed", "misfire"),
    label("Payload (JSON, optional)", "payload"), zones,
    formResult, h("div", { class: "buttons" }, cancel, submit));
  const formPanel = h("section", { class: "panel schedule-form-panel", hidden: true }, form);
  let editing = null; // the schedule being edited, or null for a new one

  const timing = () => form.querySelector('input[name="timing"]:checked').value;
  function showTiming() {
    cronBlock.hidden = timing() !== "cron";
    intervalBlock.hidden = timing() !== "interval";
  }
  for (const radio of form.querySelectorAll('input[name="timing"]')) radio.addEventListener("change", showTiming);

  function values() {
    return Object.fromEntries([...Object.entries(inputs).map(([f, el]) => [f, el.value]),
      ["timing", timing()]]);
  }

  function showProblems(problems) {
    for (const [field, element] of Object.entries(messages)) {
      element.textContent = problems[field] || "";
      element.hidden = !problems[field];
      const input = inputs[field];
      if (!input) continue;
      input.setAttribute("aria-invalid", problems[field] ? "true" : "false");
      if (problems[field]) input.setAttribute("aria-describedby", element.id);
      else input.removeAttribute("aria-describedby");
    }
  }

  function openForm(schedule = null) {
    editing = schedule;
    const s = schedule || {};
    formTitle.textContent = schedule ? `Edit ${schedule.name}` : "New schedule";
    submit.textContent = schedule ? "Save changes" : "Create schedule";
    inputs.type.value = s.type ?? "";
    inputs.name.value = s.name ?? "";
    inputs.cron.value = s.cron ?? "";
    inputs.intervalSeconds.value = s.intervalSeconds ?? "";
    inputs.timezone.value = s.timezone ?? "UTC";
    inputs.misfire.value = s.misfire ?? "run_once";
    inputs.payload.value = s.payload === null || s.payload === undefined ? "" : JSON.stringify(s.payload);
    inputs.maxAttempts.value = s.maxAttempts ?? "";
    const kind = schedule && schedule.cron === null ? "interval" : "cron";
    for (const radio of form.querySelectorAll('input[name="timing"]')) radio.checked = radio.value === kind;
    showTiming();
    showProblems({});
    formResult.hidden = true;
    formPanel.hidden = false;
    formPanel.dataset.mode = schedule ? "edit" : "create";
    if (schedule) formPanel.dataset.scheduleId = schedule.id;
    else delete formPanel.dataset.scheduleId;
    inputs.type.focus();
  }

  function closeForm() {
    formPanel.hidden = true;
    const opener = editing ? tbody.querySelector(`tr[data-schedule-id="${CSS.escape(editing.id)}"] button.edit`) : newButton;
    editing = null;
    opener?.focus();
  }
  cancel.addEventListener("click", closeForm);
  formPanel.addEventListener("keydown", (event) => { if (event.key === "Escape") closeForm(); });

  inputs.payload.addEventListener("input", () => {
    const { problems } = checkSchedule(values());
    messages.payload.textContent = problems.payload || "";
    messages.payload.hidden = !problems.payload;
    inputs.payload.setAttribute("aria-invalid", problems.payload ? "true" : "false");
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { problems, body } = checkSchedule(values(), editing);
    showProblems(problems);
    formResult.hidden = true;
    if (Object.keys(problems).length) {
      inputs[Object.keys(problems)[0]]?.focus();
      return;
    }
    submit.disabled = true;
    const wasEditing = editing;
    try {
      const path = wasEditing ? `/api/v1/schedules/${encodeURIComponent(wasEditing.id)}` : "/api/v1/schedules";
      const saved = await request(path, { method: wasEditing ? "PATCH" : "POST", body });
      outcome.dataset.state = "ok";
      outcome.dataset.scheduleId = saved.id;
      outcome.textContent = wasEditing
        ? `Saved ${saved.name}: next fire ${formatTime(saved.nextFireAt)}.`
        : `Created ${saved.name}: first fire ${formatTime(saved.nextFireAt)}.`;
      formPanel.hidden = true;
      editing = null;
      await refresh();
      tbody.querySelector(`tr[data-schedule-id="${CSS.escape(saved.id)}"] button.edit`)?.focus();
    } catch (error) {
      const byField = {};
      for (const item of error.fields || []) {
        const field = item.field === "body" ? null : item.field;
        if (field && messages[field]) byField[field] = item.message;
      }
      // The server names `cron` when neither or both timetables were given.
      showProblems(byField);
      const first = Object.keys(byField)[0];
      if (first) inputs[first]?.focus();
      formResult.textContent = error.message;
      formResult.hidden = false;
    } finally {
      submit.disabled = false;
    }
  });

  // --- delete confirmation ---
  const confirmText = h("p", {});
  const confirmNo = h("button", { type: "button", class: "cancel-delete" }, "Cancel");
  const confirmYes = h("button", { type: "button", class: "danger confirm-delete" }, "Delete");
  const dialog = h("dialog", { class: "confirm-dialog", "aria-labelledby": "schedule-delete-title" },
    h("h2", { id: "schedule-delete-title" }, "Delete this schedule?"), confirmText,
    h("p", { class: "hint" }, "Jobs it already created stay. This cannot be undone."),
    h("div", { class: "buttons" }, confirmNo, confirmYes));
  let deleting = null;
  confirmNo.addEventListener("click", () => dialog.close("cancel"));
  confirmYes.addEventListener("click", () => dialog.close("delete"));
  dialog.addEventListener("close", async () => {
    const schedule = deleting;
    deleting = null;
    if (!schedule) return;
    if (dialog.returnValue !== "delete") {
      tbody.querySelector(`tr[data-schedule-id="${CSS.escape(schedule.id)}"] button.delete`)?.focus();
      return;
    }
    try {
      await request(`/api/v1/schedules/${encodeURIComponent(schedule.id)}`, { method: "DELETE" });
      outcome.dataset.state = "ok";
      outcome.textContent = `Deleted ${schedule.name}.`;
    } catch (error) {
      outcome.dataset.state = "error";
      outcome.textContent = `${schedule.name}: ${error.message}`;
    }
    await refresh();
    newButton.focus();
  });
  function askDelete(schedule) {
    deleting = schedule;
    confirmText.textContent = `${schedule.name} (${schedule.type}), ${timetable(schedule)}.`;
    dialog.returnValue = "";
    dialog.showModal();
    confirmNo.focus();
  }

  // --- the list ---
  const tbody = h("tbody");
  const column = (text, title) => h("th", { scope: "col", title }, text);
  const table = h("table", { class: "jobs schedules" },
    h("thead", {}, h("tr", {}, column("State"), column("Type"), column("Name"),
      column("Timetable"), column("Next fire"), column("Last fire"), column("Last success"),
      column("Fires", FIRES_LEGEND), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
    tbody);
  const newButton = h("button", { type: "button", class: "primary new-schedule", onclick: () => openForm() }, "New schedule");
  const panel = h("section", { class: "panel", dataset: { panel: "schedules" } },
    h("div", { class: "schedules-head" }, h("h2", {}, "Schedules"), newButton),
    h("p", { class: "hint" }, "Recurring jobs: each fire creates one job in the queue."));
  const state = new RequestState(panel, "the schedules", () => context.refreshNow());
  const emptyButton = h("button", { type: "button", class: "link", onclick: () => openForm() }, "create one");
  const empty = h("p", { class: "hint schedules-empty", hidden: true }, "No schedules yet — ", emptyButton, ".");
  const outcome = h("p", { class: "form-result", role: "status" });
  const legend = h("p", { class: "hint fires-legend" }, `Fires — ${FIRES_LEGEND}.`);
  const wrap = h("div", { class: "table-wrap" }, table);
  panel.append(outcome, wrap, empty, legend);
  root.append(formPanel, panel, dialog);

  async function act(schedule, action, button, done) {
    button.disabled = true;
    try {
      const answer = await request(
        `/api/v1/schedules/${encodeURIComponent(schedule.id)}/${action}`, { method: "POST" });
      outcome.dataset.state = "ok";
      outcome.dataset.scheduleId = schedule.id;
      outcome.textContent = done(answer);
    } catch (error) {
      outcome.dataset.state = "error";
      outcome.textContent = `${schedule.name}: ${error.message}`;
    }
    await refresh();
  }

  function buttons(schedule) {
    const toggle = schedule.state === "paused"
      ? h("button", { type: "button", class: "resume",
        onclick: (event) => act(schedule, "resume", event.currentTarget,
          (s) => `Resumed ${s.name}: next fire ${formatTime(s.nextFireAt)}.`) }, "Resume")
      : h("button", { type: "button", class: "pause",
        onclick: (event) => act(schedule, "pause", event.currentTarget,
          (s) => `Paused ${s.name}.`) }, "Pause");
    const run = h("button", { type: "button", class: "run-now",
      onclick: (event) => act(schedule, "run", event.currentTarget,
        (job) => `Created job ${job.id} for ${job.name} (${job.status}).`) }, "Run now");
    const edit = h("button", { type: "button", class: "edit", "aria-label": `Edit ${schedule.name}`,
      onclick: () => openForm(schedule) }, "Edit");
    const remove = h("button", { type: "button", class: "delete", "aria-label": `Delete ${schedule.name}`,
      onclick: () => askDelete(schedule) }, "Delete");
    return h("td", { class: "buttons-cell" }, h("div", { class: "row-buttons" }, toggle, run, edit, remove));
  }

  const when = (ms) => h("time", ms ? { datetime: new Date(ms).toISOString(), title: new Date(ms).toString() } : {}, formatTime(ms));
  const cell = (label, field, ...content) => h("td", { dataset: { label, field } }, ...content);

  function render(schedules) {
    // Polling re-renders the rows: keep the keyboard's place on the same button.
    const focused = document.activeElement;
    const row = tbody.contains(focused) ? focused.closest("tr")?.dataset.scheduleId : null;
    const which = row ? focused.className : null;
    tbody.replaceChildren(...schedules.map((schedule) => h("tr",
      { dataset: { scheduleId: schedule.id, state: schedule.state } },
      cell("State", "state", badge(schedule.state)), cell("Type", "type", schedule.type),
      h("td", { class: "name-cell", dataset: { label: "Name", field: "name" } }, schedule.name),
      cell("Timetable", "timetable", timetable(schedule)),
      cell("Next fire", "nextFireAt", when(schedule.nextFireAt)),
      cell("Last fire", "lastFireAt", when(schedule.lastFireAt)),
      cell("Last success", "lastSuccessAt", when(schedule.lastSuccessAt)),
      h("td", { dataset: { label: "Fires", field: "fires" }, title: FIRES_LEGEND }, h("span", {}, ...firesParts(schedule.fires))),
      buttons(schedule))));
    if (row) tbody.querySelector(`tr[data-schedule-id="${CSS.escape(row)}"] button.${CSS.escape(which)}`)?.focus();
    empty.hidden = schedules.length > 0;
    wrap.hidden = schedules.length === 0;
    legend.hidden = schedules.length === 0;
  }

  async function refresh() {
    const answer = await state.run(() => request("/api/v1/schedules"));
    if (answer !== undefined) render(answer?.schedules ?? []);
  }

  return { refresh, restyle() {}, destroy() { if (dialog.open) dialog.close(); } };
}
