// By name: one job function (a source, type and name), picked from a searchable list, with
// the three standard charts. The choice lives in the address (#/name?source=&type=&name=)
// so a reload or a shared link shows the same function; with none chosen, the busiest one.

import { request } from "./api.js";
import { ChartGroup } from "./charts.js";
import { currentRange, rangeControl } from "./ranges.js";
import { formatCount, h, RequestState } from "./ui.js";

const keyOf = (row) => JSON.stringify([row.source, row.type, row.name]);

export function mount(root, context) {
  const params = context.params;
  let chosen = params.get("name")
    ? { source: params.get("source") || "", type: params.get("type") || "", name: params.get("name") }
    : null;

  const search = h("input", { type: "search", placeholder: "Filter by name", "aria-label": "Filter job functions by name",
    value: params.get("q") || "" });
  const select = h("select", { "aria-label": "Job function" });
  const picker = h("div", { class: "picker" }, search, select);
  const title = h("h3", { class: "name-title" });
  const ranges = rangeControl();
  const panel = h("section", { class: "panel", dataset: { panel: "name" } },
    h("div", { class: "panel-head" }, h("h2", {}, "By job function"), ranges.element), picker);
  root.append(panel);
  const listState = new RequestState(panel, "the job functions", () => loadNames());
  const seriesPanel = h("section", { class: "panel" }, title);
  root.append(seriesPanel);
  const seriesState = new RequestState(seriesPanel, "this function's history", () => context.refreshNow());
  const charts = new ChartGroup(seriesPanel);
  let rows = [];

  async function loadNames() {
    const answer = await listState.run(() => request("/api/v1/stats/names",
      { query: { q: search.value.trim(), limit: 200 } }));
    if (!answer) return;
    rows = answer.names;
    const options = rows.map((row) => h("option", { value: keyOf(row) },
      `${row.name} · ${row.type} · ${row.source} (${formatCount(row.started)} started)`));
    if (!options.length) options.push(h("option", { value: "", disabled: true }, "No job function matches"));
    select.replaceChildren(...options);
    if (!chosen && rows.length) choose(rows[0]);
    if (chosen && rows.some((r) => keyOf(r) === keyOf(chosen))) select.value = keyOf(chosen);
  }

  function choose(row) {
    chosen = { source: row.source, type: row.type, name: row.name };
    const query = new URLSearchParams(chosen);
    history.replaceState(null, "", `#/name?${query}`);
    context.refreshNow();
  }

  select.addEventListener("change", () => {
    const row = rows.find((r) => keyOf(r) === select.value);
    if (row) choose(row);
  });
  let debounce;
  search.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(loadNames, 250);
  });
  const ready = loadNames();

  return {
    async refresh() {
      await ready;
      if (!chosen) await loadNames(); // none had history yet: look again on every poll
      if (!chosen) {
        title.textContent = "No job function chosen yet";
        return;
      }
      title.replaceChildren(h("span", { class: "type-badge" }, chosen.type), " ", chosen.name,
        h("span", { class: "muted" }, ` from ${chosen.source}`));
      const range = currentRange();
      const points = context.settings().maxPoints;
      const answer = await seriesState.run(() => request("/api/v1/stats/name",
        { query: { ...chosen, points, window: range.seconds } }));
      if (answer) charts.update(answer.series, points, range.seconds);
    },
    restyle() { charts.restyle(); },
    destroy() { clearTimeout(debounce); ranges.destroy(); charts.destroy(); },
  };
}
