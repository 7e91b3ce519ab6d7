// Activations: the newest invocation records, filtered by function and outcome, each with its
// result or error, timing, worker and logs; refreshed while shown, so background invocations
// appear when they finish.

import { ApiError, fnPath, functionNames, get, pool } from "./api.js";
import { errorBox, facts, field, fill, fnLink, h, ms, pretty, statusText, when } from "./ui.js";

/** Functions read for "all functions" (each is one request per refresh). */
const MAX_SCANNED = 50;
const REFRESH_MS = 3000;

/** #/activations?fn=MOD/NAME&outcome=error&limit=20 */
export async function list({ root, params, page }) {
  const names = await functionNames();
  const chosen = params.get("fn") ?? "";
  const outcome = params.get("outcome") ?? "";
  const limit = Math.min(200, Math.max(1, Number(params.get("limit")) || 20));

  const fnSelect = h("select", { id: "act-fn", name: "fn" },
    h("option", { value: "" }, "all functions"),
    names.functions.map((f) => {
      const key = `${f.module}/${f.name}`;
      return h("option", { value: key, selected: key === chosen }, key);
    }));
  const outcomeSelect = h("select", { id: "act-outcome", name: "outcome" },
    [["", "any"], ["success", "✔ success"], ["error", "✘ error"], ["running", "… running"]].map(([v, label]) =>
      h("option", { value: v, selected: v === outcome }, label)));
  const limitInput = h("input", { id: "act-limit", type: "number", min: 1, max: 200, value: limit });
  const live = h("input", { type: "checkbox", id: "act-live", checked: true });
  const filter = h("form", { class: "panel", id: "act-filter" },
    h("div", { class: "row" }, field("Function", fnSelect), field("Outcome", outcomeSelect), field("How many", limitInput),
      h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Show"))),
    h("label", { class: "check" }, live, `Refresh every ${REFRESH_MS / 1000} s`));
  filter.addEventListener("submit", (e) => {
    e.preventDefault();
    const query = new URLSearchParams();
    if (fnSelect.value) query.set("fn", fnSelect.value);
    if (outcomeSelect.value) query.set("outcome", outcomeSelect.value);
    if (limitInput.value) query.set("limit", limitInput.value);
    location.hash = `#/activations?${query}`;
  });

  const results = h("div", { id: "activations", "aria-live": "polite" }, h("p", null, "Loading…"));
  root.append(h("h1", null, "Activations"), filter, results);

  const targets = chosen
    ? names.functions.filter((f) => `${f.module}/${f.name}` === chosen)
    : names.functions.slice(0, MAX_SCANNED);
  if (chosen && targets.length === 0) {
    results.replaceChildren(errorBox(new ApiError(404, `no function ${chosen}`)));
    return;
  }
  const open = new Set();
  const refresh = async () => {
    if (!live.checked && results.dataset.loaded) return;
    try {
      const lists = await pool(targets, 4, async (f) => {
        try {
          return (await get(`${fnPath(f.module, f.name)}/activations?limit=${limit}`)).data;
        } catch (e) {
          if (e.status === 404) return [];
          throw e;
        }
      });
      const records = lists.flat()
        .filter((a) => !outcome || a.status === outcome)
        .sort((a, b) => b.started_at_ms - a.started_at_ms)
        .slice(0, limit);
      for (const d of results.querySelectorAll("details[open]")) open.add(d.dataset.activation);
      for (const d of results.querySelectorAll("details:not([open])")) open.delete(d.dataset.activation);
      results.replaceChildren(render(records, open, !chosen && names.functions.length > MAX_SCANNED));
      results.dataset.loaded = "true";
    } catch (e) {
      results.replaceChildren(errorBox(e, "Cannot read the activations"));
    }
  };
  await page.every(REFRESH_MS, refresh);
}

function render(records, open, partial) {
  if (records.length === 0) {
    return h("p", { id: "activations-empty" }, "No activations kept for this choice. The Core keeps records in memory for a while (",
      h("code", null, "--activation-ttl-secs"), ").");
  }
  return h("div", null,
    partial ? h("p", { class: "muted" }, `Showing the first ${MAX_SCANNED} functions' records; choose a function to see another's.`) : null,
    h("ul", { class: "entries" }, records.map((a) => h("li", null, entry(a, open.has(a.activation_id))))));
}

/** One record as a disclosure: the summary line, and details when opened. */
function entry(a, isOpen) {
  const [text, cls] = statusText(a.status);
  return h("details", { "data-activation": a.activation_id, open: isOpen },
    h("summary", null,
      h("span", null, when(a.started_at_ms)),
      h("span", null, `${a.module}/${a.function}`),
      h("span", { class: cls, "data-field": "status" }, text),
      h("span", null, ms(a.duration_ms)),
      h("span", null, `on ${a.worker ?? "—"}`)),
    h("div", { class: "body" }, body(a)));
}

function body(a) {
  return [
    facts([
      ["Id", h("a", { href: `#/activation/${a.activation_id}` }, a.activation_id)],
      ["Function", fnLink(a.module, a.function)],
      ["Started", new Date(a.started_at_ms).toISOString()],
      ["Took", ms(a.duration_ms)],
      ["Worker", a.worker ?? "—", "worker"],
    ]),
    a.status === "success" ? [h("h3", null, "Result"), h("pre", { "data-field": "result" }, pretty(a.result))] : null,
    a.error ? [h("h3", null, "Error"), h("p", { class: "error", "data-field": "error" }, a.error.detail, a.error.reason ? ` (${a.error.reason})` : "")] : null,
    h("h3", null, "Logs"),
    a.logs?.length ? h("pre", { "data-field": "logs" }, a.logs.join("\n")) : h("p", { class: "muted", "data-field": "logs" }, "No log lines."),
  ];
}

/** #/activation/ID: one record, followed until it finishes. */
export async function one({ root, parts, page }) {
  const [id] = parts;
  if (!id) throw new ApiError(404, "no activation named in the address");
  const box = h("div", { id: "activation" }, h("p", null, "Loading…"));
  root.append(h("p", null, h("a", { href: "#/activations" }, "← Activations")), h("h1", null, `Activation ${id}`), box);
  let done = false;
  await page.every(1000, async () => {
    if (done) return;
    try {
      const a = (await get(`/v1/activations/${encodeURIComponent(id)}`)).data;
      const [text, cls] = statusText(a.status);
      fill(box, h("p", null, h("span", { class: cls, "data-field": "status" }, text)), body(a));
      done = a.status !== "running";
    } catch (e) {
      box.replaceChildren(errorBox(e));
      done = true;
    }
  });
}
