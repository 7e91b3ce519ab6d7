// The FunLess JSON API as the console uses it: the token of the signed-in user (this tab's
// session storage only, sent as a bearer header, never in a URL), FunLess's error shape
// turned into ApiError, and a deadline on every request.

const TOKEN_KEY = "funless.token";
const ADMIN_KEY = "funless.admin";

// The API sits beside /ui/ on the same origin (also behind a proxy that adds a prefix).
const ROOT = new URL("../", document.baseURI);

/** Default deadline of a request, ms. */
const DEADLINE_MS = 30000;

export class ApiError extends Error {
  constructor(status, detail, headers) {
    super(detail);
    this.status = status;
    this.detail = detail;
    this.headers = headers ?? new Headers();
  }
}

export const session = {
  token: () => sessionStorage.getItem(TOKEN_KEY),
  admin: () => sessionStorage.getItem(ADMIN_KEY) === "true",
  save(token, admin) {
    sessionStorage.setItem(TOKEN_KEY, token);
    sessionStorage.setItem(ADMIN_KEY, String(admin));
  },
  clear() {
    sessionStorage.removeItem(TOKEN_KEY);
    sessionStorage.removeItem(ADMIN_KEY);
  },
};

let refused = () => {};

/** Called with the server's message when the token stops being accepted (401). */
export function onRefused(handler) {
  refused = handler;
}

/**
 * One request. `json` is sent as a JSON body, `form` (FormData) as multipart. Resolves to
 * {status, data, headers} (data: the `data` of FunLess's envelope), rejects with ApiError.
 */
export async function call(method, path, { json, form, token, deadlineMs = DEADLINE_MS } = {}) {
  const headers = { accept: "application/json" };
  const bearer = token ?? session.token();
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  let body;
  if (json !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form) {
    body = form;
  }
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), deadlineMs);
  let response;
  let text;
  try {
    response = await fetch(new URL(path.replace(/^\//, ""), ROOT), {
      method,
      headers,
      body,
      cache: "no-store",
      credentials: "omit",
      signal: controller.signal,
    });
    text = await response.text();
  } catch (e) {
    const why = controller.signal.aborted
      ? `no answer within ${Math.round(deadlineMs / 1000)} s`
      : `cannot reach the Core (${e.message})`;
    throw new ApiError(0, why);
  } finally {
    clearTimeout(timer);
  }
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    const detail = parsed?.errors?.detail ?? (text.trim() || response.statusText);
    if (response.status === 401 && !token) refused(detail);
    throw new ApiError(response.status, detail, response.headers);
  }
  return { status: response.status, data: parsed?.data, headers: response.headers, text };
}

export const get = (path, options) => call("GET", path, options);
export const del = (path, options) => call("DELETE", path, options);
export const post = (path, json, options) => call("POST", path, { ...options, json });

/** The Core's Prometheus text (public, no token). */
export async function metricsText() {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), DEADLINE_MS);
  try {
    const response = await fetch(new URL("metrics", ROOT), {
      cache: "no-store",
      credentials: "omit",
      signal: controller.signal,
    });
    if (!response.ok) throw new ApiError(response.status, `metrics: ${response.statusText}`);
    return await response.text();
  } catch (e) {
    if (e instanceof ApiError) throw e;
    throw new ApiError(0, `cannot read the Core's metrics (${e.message})`);
  } finally {
    clearTimeout(timer);
  }
}

export const enc = encodeURIComponent;

/** Path of a function in the API. */
export const fnPath = (module, name) => `/v1/fn/${enc(module)}/${enc(name)}`;

/** Runs `work` over `items` with at most `limit` at once; results in order. */
export async function pool(items, limit, work) {
  const results = new Array(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i], i);
    }
  });
  await Promise.all(lanes);
  return results;
}

/** Most functions the console lists (each costs a request or two). */
export const MAX_FUNCTIONS = 500;

/** Every module and function the token sees: [{module, name}], sorted. */
export async function functionNames() {
  const modules = (await get("/v1/fn")).data ?? [];
  const lists = await pool(modules, 4, async (m) => {
    try {
      const info = (await get(`/v1/fn/${enc(m.name)}`)).data;
      return info.functions.map((f) => ({ module: m.name, name: f.name }));
    } catch (e) {
      // A module deleted between the two requests.
      if (e.status === 404) return [];
      throw e;
    }
  });
  const all = lists.flat().sort((a, b) => `${a.module}/${a.name}`.localeCompare(`${b.module}/${b.name}`));
  return { modules: modules.map((m) => m.name).sort(), functions: all.slice(0, MAX_FUNCTIONS), more: all.length > MAX_FUNCTIONS };
}

/** Each function's full record (form, size, hash, limits, events, sinks). */
export async function functionInfos(names) {
  const infos = await pool(names, 4, async (f) => {
    try {
      return (await get(fnPath(f.module, f.name))).data;
    } catch (e) {
      if (e.status === 404) return null;
      throw e;
    }
  });
  return infos.filter(Boolean);
}
