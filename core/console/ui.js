// DOM helpers and formatting shared by the pages. Everything from the server is inserted as
// text (textContent), never parsed as HTML.

/** An element: h("a", {href: "#/x", class: "c", onclick: fn}, "text", child, [more]). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  addAll(el, children);
  return el;
}

/** An SVG element (attributes only). */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  setAttrs(el, attrs);
  addAll(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "value" && "value" in el) {
      el.value = value;
    } else if (key === "checked" && "checked" in el) {
      el.checked = Boolean(value);
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

/** Appends children to `el`, skipping null, undefined and false, flattening arrays. */
export function add(el, ...children) {
  addAll(el, children);
  return el;
}

/** Replaces the children of `el` (as `add`). */
export function fill(el, ...children) {
  el.replaceChildren();
  addAll(el, children);
  return el;
}

function addAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** A labelled form field; `control` is an input, select or textarea element. */
export function field(label, control, hint) {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 9)}`;
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label, hint ? h("small", null, ` ${hint}`) : null), control);
}

/** An error box with the message (role=alert, read out at once). */
export function errorBox(error, prefix) {
  const text = error?.detail ?? error?.message ?? String(error);
  const status = error?.status ? ` (HTTP ${error.status})` : "";
  return h("p", { class: "error", role: "alert" }, prefix ? `${prefix}: ` : "", text, status);
}

let noticeTimer;
let noticeAt = 0;

/** A short message under the header, read out politely; gone after a while. */
export function notify(text) {
  const box = document.getElementById("notice");
  box.textContent = text;
  box.hidden = false;
  noticeAt = Date.now();
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => {
    box.hidden = true;
  }, 8000);
}

/** Hides the message unless it was just given (it may announce the page being opened). */
export function staleNotice() {
  if (Date.now() - noticeAt > 1500) document.getElementById("notice").hidden = true;
}

/**
 * A button that asks again before doing something that cannot be undone: the first press
 * shows "question" with a confirm and a cancel button (keyboard focus moves to cancel).
 */
export function confirmButton(label, question, action, id) {
  const wrap = h("span", { class: "actions" });
  const first = h("button", { type: "button", class: "danger", id }, label);
  const confirm = h("button", { type: "button", class: "danger", id: id ? `${id}-confirm` : undefined }, `Yes, ${label.toLowerCase()}`);
  const cancel = h("button", { type: "button" }, "Cancel");
  const ask = h("span", { class: "actions", hidden: true }, h("span", null, question), confirm, cancel);
  first.addEventListener("click", () => {
    first.hidden = true;
    ask.hidden = false;
    cancel.focus();
  });
  cancel.addEventListener("click", () => {
    ask.hidden = true;
    first.hidden = false;
    first.focus();
  });
  confirm.addEventListener("click", async () => {
    confirm.disabled = cancel.disabled = true;
    try {
      await action();
    } finally {
      confirm.disabled = cancel.disabled = false;
      ask.hidden = true;
      first.hidden = false;
    }
  });
  wrap.append(first, ask);
  return wrap;
}

/** A table that turns into cards on a phone: columns [{label, num?}], rows of cells. */
export function table(columns, rows, attrs) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { class: "cards", ...attrs },
      h("thead", null, h("tr", null, columns.map((c) => h("th", { scope: "col", class: c.num ? "num" : null }, c.label)))),
      h("tbody", null, rows),
    ),
  );
}

/** A row of `table`: cells in column order, each labelled for the phone layout. */
export function row(columns, cells, attrs) {
  return h(
    "tr",
    attrs,
    cells.map((cell, i) => h("td", { "data-label": columns[i].label, class: columns[i].num ? "num" : null }, cell)),
  );
}

/** A list of label / value pairs; a value can be an element, `data-field` names it. */
export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs.filter(Boolean).map(([label, value, name]) => [h("dt", null, label), h("dd", { "data-field": name }, value ?? "—")]),
  );
}

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** 1536 → "1.5 KiB". */
export function bytes(n) {
  if (n === undefined || n === null) return "—";
  let value = Number(n);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${UNITS[unit]}`;
}

/** Milliseconds, with a precision that fits. */
export function ms(n) {
  if (n === undefined || n === null || Number.isNaN(n)) return "—";
  if (n < 1) return `${(n * 1000).toFixed(0)} µs`;
  if (n < 100) return `${n.toFixed(1)} ms`;
  if (n < 10000) return `${n.toFixed(0)} ms`;
  return `${(n / 1000).toFixed(1)} s`;
}

/** A duration in ms as "3 h 2 min", "42 s". */
export function uptime(n) {
  const s = Math.floor(n / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${m % 60} min`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** Unix ms as local date and time. */
export function when(unixMs) {
  const d = new Date(unixMs);
  return `${d.toLocaleDateString()} ${d.toLocaleTimeString()}`;
}

/** The form of a function, in words. */
export function formName(abi) {
  return (
    {
      funless: "FunLess ABI",
      wasi_command: "WASI command",
      wasi_component: "WASI component",
      javascript: "JavaScript",
    }[abi] ?? abi
  );
}

/** An activation's status as symbol and word (readable without colour). */
export function statusText(status) {
  return (
    {
      success: ["✔ success", "state-ok"],
      error: ["✘ error", "state-bad"],
      running: ["… running", "state-warn"],
    }[status] ?? [status, ""]
  );
}

/** JSON pretty-printed for a <pre>. */
export function pretty(value) {
  return JSON.stringify(value, null, 2);
}

/** A link to a function's page. */
export function fnLink(module, name) {
  return h("a", { href: `#/function/${encodeURIComponent(module)}/${encodeURIComponent(name)}` }, `${module}/${name}`);
}

/** The first characters of a hash, the whole in its title. */
export function shortHash(hash) {
  return h("code", { title: hash, class: "hash" }, `${hash.slice(0, 12)}…`);
}
