// Small DOM helpers shared by the views: building elements safely (text, never raw HTML
// from the API) and the loading and error state every request shows.

/** An element with attributes and children; strings become text nodes, never markup. */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(element.dataset, value);
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, String(value));
  }
  element.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return element;
}

/**
 * The state line of one request: "loading" until its first answer, then quiet; an error
 * shows the message and a "Try again" button, and stays until a request succeeds.
 */
export class RequestState {
  constructor(container, label, retry) {
    this.label = label;
    this.element = h("div", { class: "request-state", role: "status", dataset: { state: "idle" } });
    this.retry = retry;
    container.append(this.element);
    this.loaded = false;
  }

  async run(task) {
    if (!this.loaded) this.show("loading", `Loading ${this.label}…`);
    try {
      const result = await task();
      this.loaded = true;
      this.show("ok", "");
      return result;
    } catch (error) {
      this.show("error", `Could not load ${this.label}: ${error.message}`);
      return undefined;
    }
  }

  show(state, message) {
    this.element.dataset.state = state;
    this.element.replaceChildren();
    if (state === "loading") this.element.append(h("span", { class: "spinner" }), message);
    if (state === "error") {
      this.element.append(h("span", { class: "error-text" }, message));
      if (this.retry) {
        this.element.append(h("button", { type: "button", onclick: () => this.retry() }, "Try again"));
      }
    }
  }
}

export function formatTime(ms) {
  if (ms === null || ms === undefined) return "–";
  const date = new Date(ms);
  const today = new Date();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return date.toDateString() === today.toDateString() ? time : `${date.toLocaleDateString()} ${time}`;
}

export function formatCount(value) {
  if (value === null || value === undefined) return "–";
  return Number(value).toLocaleString();
}
