// Summary: every job of every source, as totals and the three standard charts.

import { request } from "./api.js";
import { ChartGroup } from "./charts.js";
import { formatCount, h, RequestState } from "./ui.js";

const TILES = [
  ["running", "Running"], ["pending", "Pending"], ["started", "Started"],
  ["completed", "Completed"], ["failed", "Failed"], ["lost", "Lost"],
];

export function mount(root, context) {
  const tiles = h("div", { class: "tiles" });
  const values = {};
  for (const [field, label] of TILES) {
    values[field] = h("strong", {}, "–");
    tiles.append(h("div", { class: `tile tile-${field}`, dataset: { tile: field } },
      h("span", {}, label), values[field]));
  }
  const panel = h("section", { class: "panel", dataset: { panel: "summary" } },
    h("h2", {}, "All jobs"), tiles);
  root.append(panel);
  const state = new RequestState(panel, "the summary", () => context.refreshNow());
  const charts = new ChartGroup(panel);

  return {
    async refresh() {
      const answer = await state.run(() => request("/api/v1/stats/summary",
        { query: { points: context.settings().maxPoints } }));
      if (!answer) return;
      for (const [field] of TILES) values[field].textContent = formatCount(answer.totals?.[field]);
      charts.update(answer.series, context.settings().maxPoints);
    },
    restyle() { charts.restyle(); },
    destroy() { charts.destroy(); },
  };
}
