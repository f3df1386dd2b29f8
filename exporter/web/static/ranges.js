// The time range every chart view shows (15 min, 1 h, 6 h, 24 h): one choice for the
// whole page, kept with the settings (localStorage) so it survives a reload, and a group
// of toggle buttons each view puts beside its heading.

import * as settingsStore from "./settings.js";
import { h } from "./ui.js";

export const RANGES = settingsStore.RANGES;

/** The chosen range: { id, seconds, label, phrase }. */
export function currentRange() {
  const id = settingsStore.settings().range;
  return RANGES.find((range) => range.id === id) || RANGES[1];
}

/** Toggle buttons for the ranges; choosing one saves it, which refreshes the view. */
export function rangeControl() {
  const buttons = RANGES.map((range) => h("button", {
    type: "button",
    class: "range-choice",
    dataset: { range: range.id },
    title: `Show ${range.phrase}`,
    onclick: () => {
      if (currentRange().id !== range.id) settingsStore.save({ range: range.id });
    },
  }, range.label));
  const element = h("div", { class: "ranges", role: "group", "aria-label": "Time range" }, buttons);
  const mark = () => {
    const chosen = currentRange().id;
    for (const button of buttons) {
      button.setAttribute("aria-pressed", String(button.dataset.range === chosen));
    }
  };
  mark();
  const stop = settingsStore.onChange(mark);
  return { element, destroy: stop };
}
