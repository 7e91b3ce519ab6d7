// Functions: the list (form, size, hash, limits, events, sinks), upload, and one function's
// page with its invoke panel, kept versions (with rollback), update form and delete.

import { ApiError, call, del, fnPath, functionInfos, functionNames, get, post } from "./api.js";
import {
  add, bytes, confirmButton, errorBox, facts, field, fnLink, formName, h, ms, notify, pretty, row,
  shortHash, statusText, table, when,
} from "./ui.js";
import { uploadForm } from "./upload.js";

const COLUMNS = [
  { label: "Function" },
  { label: "Form" },
  { label: "Size", num: true },
  { label: "Hash" },
  { label: "Memory", num: true },
  { label: "Time limit", num: true },
  { label: "Tag" },
  { label: "Events / sinks" },
  { label: "Updated" },
];

/** #/functions */
export async function list({ root }) {
  const listing = h("div", { id: "functions", "aria-busy": "true" }, h("p", null, "Loading…"));
  const uploadSlot = h("div");
  add(
    root,
    h("h1", null, "Functions"),
    h("details", { class: "panel", id: "upload" }, h("summary", null, h("strong", null, "Upload a function")), uploadSlot),
    h("h2", null, "All functions"),
    listing,
  );
  const names = await functionNames();
  uploadSlot.append(uploadForm({ modules: names.modules, done: () => refresh() }));
  const refresh = async () => {
    try {
      const fresh = await functionNames();
      listing.replaceChildren(await render(fresh));
    } catch (e) {
      listing.replaceChildren(errorBox(e, "Cannot list the functions"));
    }
  };
  listing.replaceChildren(await render(names));
  listing.removeAttribute("aria-busy");
}

async function render(names) {
  if (names.functions.length === 0) {
    return h("p", { id: "functions-empty" }, "No functions yet: upload one above, or with ",
      h("code", null, "fl fn upload NAME FILE"), ".");
  }
  const infos = await functionInfos(names.functions);
  const rows = infos.map((f) =>
    row(COLUMNS, [
      fnLink(f.module, f.name),
      formName(f.abi),
      bytes(f.size),
      shortHash(f.hash),
      bytes(f.metadata.capacity),
      ms(f.metadata.timeout_ms),
      f.metadata.tag ?? "—",
      `${f.connectors?.length ?? 0} / ${f.sinks?.length ?? 0}`,
      new Date(f.updated_at).toLocaleString(),
    ], { "data-fn": `${f.module}/${f.name}` }));
  return h("div", null,
    table(COLUMNS, rows, { "aria-label": "Functions" }),
    names.more ? h("p", { class: "muted" }, "Only the first functions are listed.") : null);
}

/** #/function/MOD/NAME */
export async function detail({ root, parts }) {
  const [module, name] = parts;
  if (!module || !name) throw new ApiError(404, "no function named in the address");
  const info = (await get(fnPath(module, name))).data;
  add(
    root,
    h("p", null, h("a", { href: "#/functions" }, "← Functions")),
    h("h1", null, `${module}/${name}`),
    facts([
      ["Form", formName(info.abi), "form"],
      ["Size", `${bytes(info.size)} (${info.size} bytes)`, "size"],
      ["Hash (SHA-256)", h("code", { class: "hash" }, info.hash), "hash"],
      ["Version", String(info.version), "version"],
      ["Canary", info.canary ? `version ${info.canary.version} gets ${info.canary.percent}% of invocations` : "none", "canary"],
      ["Memory", bytes(info.metadata.capacity), "capacity"],
      ["Time limit", ms(info.metadata.timeout_ms), "timeout"],
      ["Runs again if its worker is lost", info.metadata.retryable === false ? "no" : "yes"],
      ["Tag", info.metadata.tag ?? "—"],
      ["Hosts it may reach", (info.metadata.allow_hosts ?? []).join(", ") || "none of its own"],
      ["Created", new Date(info.created_at).toLocaleString()],
      ["Updated", new Date(info.updated_at).toLocaleString()],
    ]),
    connectors(info),
    sinks(info),
    invokePanel(module, name),
    h("h2", null, "Latest activations"),
    latest(module, name),
    h("h2", null, "Versions"),
    versions(module, name, info.canary),
    h("details", { class: "panel" }, h("summary", null, h("strong", null, "Update code or settings")),
      uploadForm({
        existing: info,
        done: (created, m, newName) => {
          if (newName !== name) location.hash = `#/function/${encodeURIComponent(m)}/${encodeURIComponent(newName)}`;
        },
      })),
    h("h2", null, "Delete"),
    h("p", null, "Deleting stops its event connectors and sinks; the workers drop its code."),
    confirmButton("Delete", `Delete ${module}/${name} for good?`, async () => {
      try {
        await del(fnPath(module, name));
        notify(`Deleted ${module}/${name}.`);
        location.hash = "#/functions";
      } catch (e) {
        root.append(errorBox(e, "Not deleted"));
      }
    }, "fn-delete"),
  );
}

function connectors(info) {
  if (!info.connectors?.length) return null;
  const columns = [{ label: "Type" }, { label: "Source" }, { label: "State" }, { label: "Messages", num: true }, { label: "Reconnects", num: true }];
  return h("section", null, h("h2", null, "Event connectors"), table(columns, info.connectors.map((c) =>
    row(columns, [c.type, c.source, c.connected ? "✔ connected" : `✘ not connected${c.last_error ? `: ${c.last_error}` : ""}`, c.messages, c.reconnects]))));
}

function sinks(info) {
  if (!info.sinks?.length) return null;
  const columns = [{ label: "Type" }, { label: "URL" }, { label: "Delivered", num: true }, { label: "Pending", num: true }, { label: "Failed attempts", num: true }, { label: "Dropped", num: true }, { label: "Last error" }];
  return h("section", null, h("h2", null, "Sinks"), table(columns, info.sinks.map((s) =>
    row(columns, [s.type, s.url, s.delivered, s.pending, s.failed_attempts, s.dropped, s.last_error ?? "—"]))));
}

/** The invoke panel: JSON args, the answer, its time, the worker and the activation. */
function invokePanel(module, name) {
  const args = h("textarea", { id: "invoke-args", class: "code", rows: 4, spellcheck: "false" }, "{}");
  const background = h("input", { type: "checkbox", id: "invoke-async" });
  const run = h("button", { type: "submit", class: "primary", id: "invoke-run" }, "Invoke");
  const out = h("div", { id: "invoke-result", "aria-live": "polite" });
  const form = h("form", { class: "panel", id: "invoke" },
    h("h2", null, "Invoke"),
    field("Arguments (a JSON object)", args, "(Ctrl+Enter runs it)"),
    h("label", { class: "check" }, background, "In the background (answer at once with an activation id)"),
    h("div", { class: "actions" }, run),
    out);
  args.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) form.requestSubmit();
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let parsed;
    try {
      parsed = JSON.parse(args.value.trim() || "{}");
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("the arguments must be a JSON object, like {\"name\": \"Edge\"}");
    } catch (e) {
      out.replaceChildren(errorBox(e, "Not sent"));
      return;
    }
    run.disabled = true;
    out.replaceChildren(h("p", null, "Running…"));
    const started = performance.now();
    try {
      const answer = await call("POST", fnPath(module, name), {
        json: { args: parsed, blocking: !background.checked },
        deadlineMs: 660000,
      });
      const took = performance.now() - started;
      out.replaceChildren(answer.status === 202 ? started202(answer) : answered(answer, took));
    } catch (e) {
      const took = performance.now() - started;
      const reason = e.headers?.get?.("x-funless-error-reason");
      out.replaceChildren(
        errorBox(e, reason ? `The function failed (${reason})` : "The invocation failed"),
        h("p", { class: "muted" }, `after ${ms(took)}`),
      );
    } finally {
      run.disabled = false;
    }
  });
  return form;
}

function answered(answer, took) {
  const worker = answer.headers.get("x-funless-worker") ?? "—";
  const id = answer.headers.get("x-funless-activation-id");
  return h("div", null,
    facts([
      ["Outcome", h("span", { class: "state-ok" }, `✔ ${answer.status} OK`)],
      ["Time", `${ms(took)} round trip from this browser`, "time"],
      ["Worker", worker, "worker"],
      ["Activation", id ? h("a", { href: `#/activation/${id}` }, id) : "—", "activation"],
    ]),
    h("h3", null, "Answer"),
    h("pre", { "data-field": "answer" }, pretty(answer.data)));
}

function started202(answer) {
  const id = answer.data.activation_id;
  return h("p", { class: "ok" }, "Started in the background: activation ", h("a", { href: `#/activation/${id}` }, id),
    " (it shows its result there when done).");
}

/** The function's newest records, a link to all of them. */
/** Redraws the page (after a change it shows). */
const redraw = () => window.dispatchEvent(new HashChangeEvent("hashchange"));

/** The canary's version's actions: promote it, or end the canary. */
function canaryActions(module, name, canary, box) {
  const act = (label, question, send, said, id) => confirmButton(label, question, async () => {
    try {
      await send();
      notify(said);
      redraw();
    } catch (e) {
      box.append(errorBox(e, `Not done (${label})`));
    }
  }, id);
  return h("span", null, h("strong", null, `canary, ${canary.percent}%`), " ",
    act("Promote", `Make version ${canary.version} of ${module}/${name} the current one?`,
      () => post(`${fnPath(module, name)}/canary/promote`, {}),
      `${module}/${name} is at version ${canary.version}.`, "fn-canary-promote"), " ",
    act("End canary", `Send every call of ${module}/${name} to its current version again?`,
      () => del(`${fnPath(module, name)}/canary`),
      `The canary of ${module}/${name} ended.`, "fn-canary-end"));
}

/** The kept versions, newest first: the current one, the canary's (promote or end it), and
 * the others with a rollback button. */
function versions(module, name, canary) {
  const box = h("div", { id: "fn-versions" }, h("p", null, "Loading…"));
  const columns = [{ label: "Version", num: true }, { label: "Hash" }, { label: "Size", num: true }, { label: "Made" }, { label: "By" }, { label: "" }];
  get(`${fnPath(module, name)}/versions`).then(({ data }) => {
    box.replaceChildren(table(columns, data.map((v) => row(columns, [
      v.rollback_of ? `${v.version} (rollback to ${v.rollback_of})` : String(v.version),
      h("code", { class: "hash" }, shortHash(v.hash)),
      bytes(v.size),
      new Date(v.created_at).toLocaleString(),
      v.created_by ?? "—",
      v.current ? h("strong", null, "current") : canary?.version === v.version ? canaryActions(module, name, canary, box) : confirmButton("Roll back", `Make version ${v.version} of ${module}/${name} current again?`, async () => {
        try {
          const done = (await post(`${fnPath(module, name)}/rollback`, { version: v.version })).data;
          notify(`${module}/${name} is at version ${done.version} (version ${v.version}'s code).`);
          redraw();
        } catch (e) {
          box.append(errorBox(e, "Not rolled back"));
        }
      }, `fn-rollback-${v.version}`),
    ]))));
  }, (e) => box.replaceChildren(errorBox(e)));
  return box;
}

function latest(module, name) {
  const box = h("div", { id: "fn-activations" }, h("p", null, "Loading…"));
  get(`${fnPath(module, name)}/activations?limit=5`).then(({ data }) => {
    const items = data.map((a) => {
      const [text, cls] = statusText(a.status);
      return h("li", null, h("a", { href: `#/activation/${a.activation_id}` }, when(a.started_at_ms)), " ",
        h("span", { class: cls }, text), ` ${ms(a.duration_ms)} on ${a.worker ?? "—"}`);
    });
    box.replaceChildren(
      items.length ? h("ul", null, items) : h("p", { class: "muted" }, "None kept (the Core keeps records in memory for a while)."),
      h("p", null, h("a", { href: `#/activations?fn=${encodeURIComponent(`${module}/${name}`)}` }, "All its activations →")));
  }, (e) => box.replaceChildren(errorBox(e)));
  return box;
}
