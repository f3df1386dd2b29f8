// Summary: every job of every source, as totals, the three standard charts over the chosen
// time range, and the job functions that failed most in that range.

import { request } from "./api.js";
import { ChartGroup } from "./charts.js";
import { currentRange, rangeControl } from "./ranges.js";
import { formatCount, h, RequestState } from "./ui.js";

const TILES = [
  ["running", "Running"], ["pending", "Pending"], ["started", "Started"],
  ["completed", "Completed"], ["failed", "Failed"], ["lost", "Lost"],
];
const FAILING_LIMIT = 10;

/** The By name view's address for one job function. */
export function nameLink(row) {
  return `#/name?${new URLSearchParams({ source: row.source, type: row.type, name: row.name })}`;
}

function formatRatio(ratio) {
  const percent = ratio * 100;
  return `${percent >= 10 || percent === 0 ? percent.toFixed(0) : percent.toFixed(1)}%`;
}

function topFailing(root, context) {
  const hint = h("p", { class: "hint" });
  const body = h("tbody");
  const table = h("table", { class: "failing" },
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Job function"),
      h("th", { scope: "col", class: "wide" }, "Source"),
      h("th", { scope: "col", class: "num", title: "Failed and lost runs" }, "Failures"),
      h("th", { scope: "col", class: "num" }, "Finished"),
      h("th", { scope: "col", class: "num", title: "Failures over runs finished" }, "Ratio"))),
    body);
  const empty = h("p", { class: "empty-note", hidden: true });
  const panel = h("section", { class: "panel", dataset: { panel: "failing" } },
    h("h2", {}, "Top failing"), hint);
  root.append(panel);
  const state = new RequestState(panel, "the failing job functions", () => context.refreshNow());
  panel.append(table, empty);
  table.hidden = true;

  return async function refresh() {
    const range = currentRange();
    hint.textContent = `Job functions with the most failed and lost runs in ${range.phrase}.`;
    const answer = await state.run(() => request("/api/v1/stats/failing",
      { query: { window: range.seconds, limit: FAILING_LIMIT } }));
    if (!answer) {
      table.hidden = true;
      empty.hidden = true;
      return;
    }
    body.replaceChildren(...answer.failing.map((row) => h("tr", { dataset: { name: row.name } },
      h("td", { class: "name-cell" },
        h("a", { href: nameLink(row) }, row.name), " ",
        h("span", { class: "type-badge" }, row.type)),
      h("td", { class: "wide" }, row.source),
      h("td", { class: "num failures" }, formatCount(row.failures)),
      h("td", { class: "num" }, formatCount(row.finished)),
      h("td", { class: "num" }, formatRatio(row.ratio)))));
    table.hidden = answer.failing.length === 0;
    empty.hidden = answer.failing.length > 0;
    empty.textContent = `No job failed in ${range.phrase}.`;
  };
}

export function mount(root, context) {
  const tiles = h("div", { class: "tiles" });
  const values = {};
  for (const [field, label] of TILES) {
    values[field] = h("strong", {}, "–");
    tiles.append(h("div", { class: `tile tile-${field}`, dataset: { tile: field } },
      h("span", {}, label), values[field]));
  }
  const ranges = rangeControl();
  const panel = h("section", { class: "panel", dataset: { panel: "summary" } },
    h("div", { class: "panel-head" }, h("h2", {}, "All jobs"), ranges.element), tiles);
  root.append(panel);
  const state = new RequestState(panel, "the summary", () => context.refreshNow());
  const charts = new ChartGroup(panel);
  const refreshFailing = topFailing(root, context);

  return {
    async refresh() {
      const range = currentRange();
      const points = context.settings().maxPoints;
      const [answer] = await Promise.all([
        state.run(() => request("/api/v1/stats/summary",
          { query: { points, window: range.seconds } })),
        refreshFailing(),
      ]);
      if (!answer) return;
      for (const [field] of TILES) values[field].textContent = formatCount(answer.totals?.[field]);
      charts.update(answer.series, points, range.seconds);
    },
    restyle() { charts.restyle(); },
    destroy() { ranges.destroy(); charts.destroy(); },
  };
}
