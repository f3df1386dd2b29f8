// Time-series charts (uPlot) fed with the stats endpoints' columns.
//
// Each chart knows which columns it draws; `update` swaps its data in place, so polling never
// rebuilds a chart. A theme change rebuilds them, because uPlot bakes colours in at creation.
// The chart's element carries `data-points`, `data-last-t`, `data-values`, `data-lines`
// (non-null values per column) and `data-span` (seconds the x axis spans) after each
// update: what the page shows, readable by people debugging and by the browser tests.
// Given the chosen range, the x axis spans it whole, ending at the newest point.

import uPlot from "./vendor/uPlot.esm.js";

const COLORS = {
  running: "#3b82f6",
  pending: "#a855f7",
  started: "#0ea5e9",
  completed: "#22c55e",
  failed: "#ef4444",
  lost: "#f59e0b",
  avgDuration: "#94a3b8",
  p50: "#14b8a6",
  p95: "#8b5cf6",
  p99: "#ec4899",
};

/** The three charts every view draws, from the same columns. */
export const CHART_SPECS = [
  {
    id: "running",
    title: "Running and pending",
    unit: "jobs",
    lines: [["running", "Running"], ["pending", "Pending"]],
  },
  {
    id: "throughput",
    title: "Started and finished per minute",
    unit: "jobs/min",
    lines: [["started", "Started"], ["completed", "Completed"], ["failed", "Failed"],
      ["lost", "Lost"]],
  },
  {
    id: "duration",
    title: "Run time percentiles",
    unit: "s",
    lines: [["p50", "p50"], ["p95", "p95"], ["p99", "p99"], ["avgDuration", "Mean"]],
  },
];

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function formatValue(value, unit) {
  if (value === null || value === undefined) return "–";
  if (Number.isInteger(value) || Math.abs(value) >= 100 || unit === "jobs") return value.toFixed(0);
  return value.toFixed(Math.abs(value) >= 10 ? 1 : 2);
}

/** 24-hour clock times on the x axis; seconds only when the chart spans under ten minutes. */
function timeTicks(u, ticks) {
  const span = (u.scales.x.max ?? 0) - (u.scales.x.min ?? 0);
  const two = (n) => String(n).padStart(2, "0");
  return ticks.map((t) => {
    const d = new Date(t * 1000);
    const hm = `${two(d.getHours())}:${two(d.getMinutes())}`;
    return span < 600 ? `${hm}:${two(d.getSeconds())}` : hm;
  });
}

function formatTick(value) {
  if (Number.isInteger(value)) return String(value);
  return String(Number(value.toPrecision(3)));
}

export class Chart {
  constructor(container, spec, { height = 180 } = {}) {
    this.spec = spec;
    this.height = height;
    this.element = document.createElement("figure");
    this.element.className = "chart";
    this.element.dataset.chart = spec.id;
    this.element.innerHTML = `<figcaption>${spec.title}<span class="unit">${spec.unit}</span></figcaption>
      <div class="plot"></div><p class="empty" hidden>No data yet: the first samples arrive within seconds.</p>`;
    container.append(this.element);
    this.plotElement = this.element.querySelector(".plot");
    this.emptyElement = this.element.querySelector(".empty");
    this.data = [[], ...spec.lines.map(() => [])];
    this.build();
    this.resizer = new ResizeObserver(() => this.fit());
    this.resizer.observe(this.plotElement);
  }

  build() {
    this.plot?.destroy();
    const axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--grid"), width: 1 },
      ticks: { stroke: cssVar("--grid"), width: 1 } };
    const unit = this.spec.unit;
    this.plot = new uPlot({
      width: Math.max(this.plotElement.clientWidth, 200),
      height: this.height,
      legend: { live: true },
      cursor: { points: { size: 6 } },
      scales: { x: { time: true, range: (u, min, max) => this.xRange || [min, max] }, y: { range: (u, min, max) => [0, Math.max(max ?? 1, 1) * 1.1] } },
      axes: [{ ...axis, space: 80, values: timeTicks }, { ...axis, size: 48, values: (u, ticks) => ticks.map(formatTick) }],
      series: [
        {},
        ...this.spec.lines.map(([column, label]) => ({
          label,
          stroke: COLORS[column],
          width: 2,
          fill: this.spec.lines.length === 1 ? `${COLORS[column]}22` : undefined,
          spanGaps: false,
          value: (u, v) => formatValue(v, unit),
        })),
      ],
    }, this.data, this.plotElement);
  }

  fit() {
    const width = this.plotElement.clientWidth;
    if (width > 0 && Math.abs(width - this.plot.width) > 1) {
      this.plot.setSize({ width, height: this.height });
    }
  }

  /**
   * Show `series` (columns `t` and one per line); thins to `maxPoints` newest points. With
   * `windowSeconds`, the x axis spans that range back from the newest point.
   */
  update(series, maxPoints, windowSeconds) {
    let times = series?.t || [];
    const start = Math.max(0, times.length - maxPoints);
    times = times.slice(start);
    const columns = this.spec.lines.map(([column]) => (series?.[column] || []).slice(start));
    this.data = [times.map((t) => t / 1000), ...columns];
    const last = this.data[0].at(-1);
    this.xRange = windowSeconds && last !== undefined ? [last - windowSeconds, last] : null;
    this.plot.setData(this.data);
    const counts = columns.map((column) => column.filter((v) => v !== null && v !== undefined).length);
    const lines = Object.fromEntries(this.spec.lines.map(([column], n) => [column, counts[n]]));
    const x = this.plot.scales.x;
    this.element.dataset.points = String(times.length);
    this.element.dataset.lastT = String(times.at(-1) ?? "");
    this.element.dataset.values = String(counts.reduce((a, b) => a + b, 0));
    this.element.dataset.lines = JSON.stringify(lines);
    this.element.dataset.span = String(Math.round((x.max ?? 0) - (x.min ?? 0)));
    this.emptyElement.hidden = times.length > 0;
  }

  restyle() {
    this.build();
  }

  destroy() {
    this.resizer.disconnect();
    this.plot.destroy();
    this.element.remove();
  }
}

/** The three standard charts in `container`, updated together. */
export class ChartGroup {
  constructor(container, options) {
    this.element = document.createElement("div");
    this.element.className = "chart-group";
    container.append(this.element);
    this.charts = CHART_SPECS.map((spec) => new Chart(this.element, spec, options));
  }

  update(series, maxPoints, windowSeconds) {
    for (const chart of this.charts) chart.update(series, maxPoints, windowSeconds);
  }

  restyle() {
    for (const chart of this.charts) chart.restyle();
  }

  destroy() {
    for (const chart of this.charts) chart.destroy();
    this.element.remove();
  }
}
