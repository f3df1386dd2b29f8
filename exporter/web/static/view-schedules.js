// Schedules: the recurring jobs (docs/api.md, Schedules) with their timetable, state, next
// fire, last fire and last success, and the buttons that pause, resume and run one now.
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

const badge = (state) => h("span", { class: `badge badge-${state}`, dataset: { state } }, state);

export function mount(root, context) {
  const tbody = h("tbody");
  const table = h("table", { class: "jobs schedules" },
    h("thead", {}, h("tr", {}, h("th", {}, "State"), h("th", {}, "Type"), h("th", {}, "Name"),
      h("th", {}, "Timetable"), h("th", {}, "Next fire"), h("th", { class: "wide" }, "Last fire"),
      h("th", { class: "wide" }, "Last success"), h("th", { class: "wide" }, "Fires"),
      h("th", {}, ""))),
    tbody);
  const panel = h("section", { class: "panel", dataset: { panel: "schedules" } },
    h("h2", {}, "Schedules"),
    h("p", { class: "hint" }, "Recurring jobs: each fire creates one job in the queue. "
      + "Create them with POST /api/v1/schedules."));
  const state = new RequestState(panel, "the schedules", () => context.refreshNow());
  const empty = h("p", { class: "hint", hidden: true }, "No schedules yet.");
  const outcome = h("p", { class: "form-result", role: "status" });
  panel.append(h("div", { class: "table-wrap" }, table), empty, outcome);
  root.append(panel);

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
    return h("td", { class: "buttons-cell" }, toggle, " ", run);
  }

  function render(schedules) {
    tbody.replaceChildren(...schedules.map((schedule) => {
      const fires = schedule.fires || {};
      return h("tr", { dataset: { scheduleId: schedule.id, state: schedule.state } },
        h("td", {}, badge(schedule.state)), h("td", {}, schedule.type),
        h("td", { class: "name-cell" }, schedule.name), h("td", {}, timetable(schedule)),
        h("td", { dataset: { field: "nextFireAt" } }, formatTime(schedule.nextFireAt)),
        h("td", { class: "wide", dataset: { field: "lastFireAt" } }, formatTime(schedule.lastFireAt)),
        h("td", { class: "wide", dataset: { field: "lastSuccessAt" } }, formatTime(schedule.lastSuccessAt)),
        h("td", { class: "wide", dataset: { field: "fires" },
          title: "on time / late / skipped / run now" },
        [fires.onTime, fires.late, fires.skipped, fires.manual].map(formatCount).join(" / ")),
        buttons(schedule));
    }));
    empty.hidden = schedules.length > 0;
  }

  async function refresh() {
    const answer = await state.run(() => request("/api/v1/schedules"));
    if (answer !== undefined) render(answer?.schedules ?? []);
  }

  return { refresh, restyle() {}, destroy() {} };
}
