// The page's entry point: routes between the views by the address's hash, polls the
// shown view at the configured interval, and wires the settings dialog and theme switch.

import { setToken, token } from "./api.js";
import * as settingsStore from "./settings.js";
import * as summaryView from "./view-summary.js";
import * as typesView from "./view-types.js";
import * as nameView from "./view-name.js";
import * as trackedView from "./view-tracked.js";
import * as jobsView from "./view-jobs.js";
import * as schedulesView from "./view-schedules.js";

const VIEWS = {
  summary: summaryView, types: typesView, name: nameView, tracked: trackedView, jobs: jobsView,
  schedules: schedulesView,
};

const root = document.getElementById("view");
let current = null; // { name, view }
let timer = null;
let pollToken = 0; // only the newest poll schedules the next, so polls never pile up

function route() {
  const [path, query = ""] = location.hash.replace(/^#\/?/, "").split("?");
  return { name: VIEWS[path] ? path : "summary", params: new URLSearchParams(query) };
}

async function poll() {
  clearTimeout(timer);
  const mine = ++pollToken;
  if (current && !document.hidden) {
    try {
      await current.view.refresh();
    } catch (error) {
      console.error("refresh failed", error);
    }
  }
  if (mine === pollToken) {
    timer = setTimeout(poll, settingsStore.settings().pollSeconds * 1000);
  }
}

function show() {
  const { name, params } = route();
  // A view that follows its filters in the address (Tracked) takes new ones in place.
  if (current?.name === name && current.view.navigate) {
    if (current.params.toString() !== params.toString()) {
      current.params = params;
      current.view.navigate(params);
    }
    return;
  }
  if (current?.name === name && name !== "name") return;
  if (current?.name === name && name === "name" && current.params.toString() === params.toString()) return;
  current?.view.destroy();
  root.replaceChildren();
  const context = {
    params,
    settings: settingsStore.settings,
    refreshNow: () => poll(),
  };
  current = { name, params, view: VIEWS[name].mount(root, context) };
  document.body.dataset.view = name;
  for (const link of document.querySelectorAll(".tabs a")) {
    link.setAttribute("aria-current", link.dataset.view === name ? "page" : "false");
  }
  poll();
}

function setUpSettings() {
  const dialog = document.getElementById("settings");
  const form = document.getElementById("settings-form");
  const error = document.getElementById("settings-error");
  document.getElementById("settings-open").addEventListener("click", () => {
    const values = settingsStore.settings();
    form.pollSeconds.value = values.pollSeconds;
    form.maxPoints.value = values.maxPoints;
    form.slowMinutes.value = values.slowMinutes;
    form.theme.value = values.theme;
    form.token.value = token();
    error.hidden = true;
    dialog.showModal();
  });
  document.getElementById("settings-cancel").addEventListener("click", () => dialog.close());
  form.addEventListener("submit", (event) => {
    const proposed = {
      pollSeconds: Number(form.pollSeconds.value),
      maxPoints: Number(form.maxPoints.value),
      slowMinutes: form.slowMinutes.value.trim() === "" ? NaN : Number(form.slowMinutes.value),
      theme: form.theme.value,
    };
    const problems = settingsStore.validate(proposed);
    if (Object.keys(problems).length) {
      event.preventDefault();
      const labels = {
        pollSeconds: "Polling interval", maxPoints: "Maximum points", theme: "Theme",
        slowMinutes: "Mark running jobs older than",
      };
      error.textContent = Object.entries(problems).map(([f, m]) => `${labels[f]} ${m}.`).join(" ");
      error.hidden = false;
      return;
    }
    setToken(form.token.value.trim());
    settingsStore.save(proposed);
  });
  document.getElementById("theme-toggle").addEventListener("click", () => {
    settingsStore.save({ theme: settingsStore.effectiveTheme() === "dark" ? "light" : "dark" });
  });
}

settingsStore.onChange(() => {
  current?.view.restyle();
  poll();
});
matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
  settingsStore.applyTheme();
  current?.view.restyle();
});
document.addEventListener("visibilitychange", () => { if (!document.hidden) poll(); });
window.addEventListener("hashchange", show);
settingsStore.applyTheme();
setUpSettings();
show();
