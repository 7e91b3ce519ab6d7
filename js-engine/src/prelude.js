// The JavaScript side of the engine, evaluated once when the engine is initialised (and so
// captured in its snapshot): console, timers, an awaitable sleep and fetch, over the three
// native functions the Rust side installs (__fl_log, __fl_http, __fl_random).
(() => {
  "use strict";
  const g = globalThis;
  const nativeLog = g.__fl_log;
  const nativeHttp = g.__fl_http;
  const nativeRandom = g.__fl_random;
  delete g.__fl_log;
  delete g.__fl_http;
  delete g.__fl_random;

  // A snapshot would otherwise replay one Math.random sequence in every invocation.
  Math.random = () => nativeRandom();

  const show = (value) => {
    if (typeof value === "string") return value;
    if (value instanceof Error) return value.stack ? `${value}\n${value.stack}`.trimEnd() : String(value);
    if (typeof value === "function") return `[Function ${value.name || "anonymous"}]`;
    try {
      const text = JSON.stringify(value);
      return text === undefined ? String(value) : text;
    } catch {
      return String(value);
    }
  };
  const print = (...values) => nativeLog(values.map(show).join(" "));
  g.console = { log: print, info: print, warn: print, error: print, debug: print, trace: print };

  // Timers live here; the Rust event loop asks when the next is due, sleeps the guest (a WASI
  // sleep: the host parks the invocation without holding a thread) and fires the due ones.
  let nextId = 1;
  const timers = new Map();
  const addTimer = (callback, ms, args, repeat) => {
    if (typeof callback !== "function") throw new TypeError("the callback must be a function");
    const delay = Math.max(0, Number(ms) || 0);
    const id = nextId++;
    timers.set(id, { at: Date.now() + delay, callback, args, every: repeat ? Math.max(1, delay) : 0 });
    return id;
  };
  g.setTimeout = (callback, ms, ...args) => addTimer(callback, ms, args, false);
  g.setInterval = (callback, ms, ...args) => addTimer(callback, ms, args, true);
  g.clearTimeout = (id) => void timers.delete(id);
  g.clearInterval = g.clearTimeout;
  g.sleep = (ms) => new Promise((resolve) => addTimer(resolve, ms, [], false));
  g.queueMicrotask = (callback) => void Promise.resolve().then(callback);

  // What a service's main gets as its second argument: whether the platform asked it to stop,
  // and a promise that settles then (to race against its own waits).
  let stopping = false;
  let stopRequested;
  const stopped = new Promise((resolve) => { stopRequested = resolve; });
  const service = Object.freeze({ get stopping() { return stopping; }, stopped });

  Object.defineProperty(g, "__fl_loop", {
    enumerable: false,
    value: Object.freeze({
      service,
      // The platform asked the service to stop.
      stop() {
        if (stopping) return;
        stopping = true;
        stopRequested();
      },
      // Milliseconds until the next timer is due, or -1 when none is pending.
      next() {
        let first = Infinity;
        for (const timer of timers.values()) if (timer.at < first) first = timer.at;
        return first === Infinity ? -1 : Math.max(0, first - Date.now());
      },
      // Runs the timers that are due, earliest first.
      fire() {
        const now = Date.now();
        const due = [...timers.entries()]
          .filter(([, timer]) => timer.at <= now)
          .sort((a, b) => a[1].at - b[1].at || a[0] - b[0]);
        for (const [id, timer] of due) {
          if (!timers.has(id)) continue;
          if (timer.every) timer.at = now + timer.every;
          else timers.delete(id);
          timer.callback(...timer.args);
        }
      },
    }),
  });

  class Headers {
    #map = new Map();
    constructor(init) {
      if (init instanceof Headers) init = [...init.entries()];
      else if (init && !Array.isArray(init)) init = Object.entries(init);
      for (const [name, value] of init || []) this.set(name, value);
    }
    get(name) { return this.#map.get(String(name).toLowerCase()) ?? null; }
    set(name, value) { this.#map.set(String(name).toLowerCase(), String(value)); }
    has(name) { return this.#map.has(String(name).toLowerCase()); }
    delete(name) { this.#map.delete(String(name).toLowerCase()); }
    entries() { return this.#map.entries(); }
    [Symbol.iterator]() { return this.#map.entries(); }
  }

  class Response {
    #body;
    constructor(body, init = {}) {
      this.#body = body == null ? "" : String(body);
      this.status = init.status ?? 200;
      this.statusText = init.statusText ?? "";
      this.headers = new Headers(init.headers);
      this.url = init.url ?? "";
    }
    get ok() { return this.status >= 200 && this.status < 300; }
    async text() { return this.#body; }
    async json() { return JSON.parse(this.#body); }
  }

  const METHODS = ["GET", "POST", "PUT", "DELETE"];
  // fetch over the host's __http_request: only hosts on the function's allow-list answer;
  // a refused or failed request rejects with a TypeError, as fetch does on network errors.
  g.fetch = async (resource, init = {}) => {
    const url = String(typeof resource === "object" && resource !== null && "url" in resource ? resource.url : resource);
    const method = String(init.method || "GET").toUpperCase();
    if (!METHODS.includes(method)) throw new TypeError(`fetch: method ${method} is not supported (${METHODS.join(", ")})`);
    const headers = new Headers(init.headers);
    let body = init.body ?? "";
    if (typeof body !== "string") body = JSON.stringify(body);
    const lines = [...headers.entries()].map(([name, value]) => `${name}:${value}`).join("\n");
    const [code, text] = nativeHttp(METHODS.indexOf(method), url, lines, body);
    const status = Number(code);
    if (status === 0) throw new TypeError(`fetch ${url} failed: refused by the allow-list or unreachable`);
    return new Response(text, { status, url });
  };
  g.Headers = Headers;
  g.Response = Response;
})();
