// By type: one panel per background job type (HTTP, TASK, CRON, ...), each with the three
// standard charts. Panels are kept per type across polls and added or removed as types come
// and go, so the charts update in place.

import { request } from "./api.js";
import { ChartGroup } from "./charts.js";
import { currentRange, rangeControl } from "./ranges.js";
import { h, RequestState } from "./ui.js";

export function mount(root, context) {
  const ranges = rangeControl();
  const header = h("section", { class: "panel panel-plain" },
    h("div", { class: "panel-head" }, h("h2", {}, "By job type"), ranges.element));
  const grid = h("div", { class: "type-grid" });
  root.append(header, grid);
  const state = new RequestState(header, "the job types", () => context.refreshNow());
  const empty = h("p", { class: "hint", hidden: true }, "No job types seen yet.");
  header.append(empty);
  const panels = new Map();

  function panelFor(type) {
    let panel = panels.get(type);
    if (!panel) {
      const element = h("section", { class: "panel", dataset: { panel: "type", type } },
        h("h3", {}, h("span", { class: "type-badge" }, type)));
      grid.append(element);
      panel = { element, charts: new ChartGroup(element, { height: 140 }) };
      panels.set(type, panel);
    }
    return panel;
  }

  return {
    async refresh() {
      const range = currentRange();
      const points = context.settings().maxPoints;
      const answer = await state.run(() => request("/api/v1/stats/types",
        { query: { points, window: range.seconds } }));
      if (!answer) return;
      const seen = new Set();
      for (const series of answer.types) {
        seen.add(series.type);
        panelFor(series.type).charts.update(series, points, range.seconds);
      }
      for (const [type, panel] of panels) {
        if (!seen.has(type)) {
          panel.charts.destroy();
          panel.element.remove();
          panels.delete(type);
        }
      }
      empty.hidden = panels.size > 0;
    },
    restyle() { for (const panel of panels.values()) panel.charts.restyle(); },
    destroy() {
      ranges.destroy();
      for (const panel of panels.values()) panel.charts.destroy();
    },
  };
}
