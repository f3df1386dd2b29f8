// The settings the seed dashboard offers, kept in localStorage: polling interval, maximum
// points per chart, the theme, after how many minutes a running job is marked slow
// (0: only when it runs longer than its function's p95), and the charts' time range
// (chosen in the views, ranges.js). Stored values are checked on read, so a hand-edited or
// older entry falls back to the defaults instead of breaking the page.

const KEY = "job-exporter.settings";

export const LIMITS = {
  pollSeconds: { min: 1, max: 300 },
  maxPoints: { min: 10, max: 2000 },
  slowMinutes: { min: 0, max: 10080 }, // a week
};

/** The charts' time ranges, in seconds (the stats endpoints take a `window` up to a day). */
export const RANGES = [
  { id: "15m", seconds: 900, label: "15 min", phrase: "the last 15 minutes" },
  { id: "1h", seconds: 3600, label: "1 h", phrase: "the last hour" },
  { id: "6h", seconds: 21600, label: "6 h", phrase: "the last 6 hours" },
  { id: "24h", seconds: 86400, label: "24 h", phrase: "the last 24 hours" },
];

const DEFAULTS = { pollSeconds: 5, maxPoints: 300, slowMinutes: 60, theme: null, range: "1h" };

const listeners = new Set();
let current = load();

function load() {
  let saved = {};
  try {
    saved = JSON.parse(localStorage.getItem(KEY) || "{}") || {};
  } catch {
    saved = {};
  }
  const settings = { ...DEFAULTS };
  for (const field of Object.keys(LIMITS)) {
    const value = Number(saved[field]);
    if (Number.isInteger(value) && value >= LIMITS[field].min && value <= LIMITS[field].max) {
      settings[field] = value;
    }
  }
  if (saved.theme === "dark" || saved.theme === "light") settings.theme = saved.theme;
  if (RANGES.some((range) => range.id === saved.range)) settings.range = saved.range;
  return settings;
}

/** Problems with proposed settings, by field; empty when they can be saved. */
export function validate(proposed) {
  const problems = {};
  for (const [field, { min, max }] of Object.entries(LIMITS)) {
    const value = Number(proposed[field]);
    if (!Number.isInteger(value) || value < min || value > max) {
      problems[field] = `must be a whole number from ${min} to ${max}`;
    }
  }
  if (!["dark", "light"].includes(proposed.theme)) problems.theme = "must be dark or light";
  return problems;
}

export function settings() {
  return { ...current, theme: effectiveTheme() };
}

export function effectiveTheme() {
  if (current.theme) return current.theme;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

export function save(changes) {
  current = { ...current, ...changes };
  localStorage.setItem(KEY, JSON.stringify(current));
  applyTheme();
  for (const listener of listeners) listener(settings());
}

export function onChange(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function applyTheme() {
  document.documentElement.dataset.theme = effectiveTheme();
}
