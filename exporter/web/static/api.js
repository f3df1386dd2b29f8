// The page's only way out: JSON requests to this exporter's own API, with a timeout, and
// errors ({"error", "errors"}, docs/contract.md §4) turned into one readable message.

const TIMEOUT_MS = 15000;
const TOKEN_KEY = "job-exporter.token";

/** The API token, when the exporter requires one: kept for this tab only (sessionStorage). */
export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(message, status, fields = []) {
    super(message);
    this.status = status;
    this.fields = fields;
  }
}

function describe(body, status) {
  if (body && typeof body === "object" && typeof body.error === "string") {
    const details = (body.errors || [])
      .map((e) => [e.index !== undefined ? `item ${e.index}` : "", e.field, e.message]
        .filter((part) => part !== undefined && part !== "").join(": "))
      .filter(Boolean);
    return details.length ? `${body.error} (${details.join("; ")})` : body.error;
  }
  return `the exporter answered HTTP ${status}`;
}

/** GET or POST `path`; resolves to the decoded JSON (null for 204), rejects with ApiError. */
export async function request(path, { method = "GET", body, query } = {}) {
  const url = new URL(path, location.origin);
  for (const [name, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(name, value);
  }
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  let response;
  try {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (token()) headers.Authorization = `Bearer ${token()}`;
    response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: controller.signal,
      cache: "no-store",
    });
  } catch (error) {
    const why = error.name === "AbortError" ? "timed out" : "could not reach the exporter";
    throw new ApiError(`${method} ${url.pathname}: ${why}`, 0);
  } finally {
    clearTimeout(timer);
  }
  if (response.status === 204) return null;
  let decoded = null;
  const text = await response.text();
  try {
    decoded = text ? JSON.parse(text) : null;
  } catch {
    if (response.ok) throw new ApiError(`${url.pathname}: the answer was not JSON`, response.status);
  }
  if (!response.ok) {
    let message = describe(decoded, response.status);
    if (response.status === 401) message += " (enter the API token in Settings)";
    throw new ApiError(message, response.status, decoded?.errors || []);
  }
  return decoded;
}
