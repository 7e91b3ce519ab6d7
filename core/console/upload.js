// The form that creates a function (POST /v1/fn/:mod) or replaces one's code and settings
// (PUT /v1/fn/:mod/:fn): the code by file pick or drop, FunLess's metadata, events, sinks.

import { ApiError, call, enc, fnPath, post } from "./api.js";
import { errorBox, field, fnLink, formName, h, shortHash } from "./ui.js";

const NAME_PATTERN = "[_a-zA-Z0-9]{1,160}";
const MIB = 1024 * 1024;

/** A function name from a file name: "hello_fl.wasm" → "hello_fl". */
function nameFromFile(fileName) {
  const base = fileName.replace(/\.[^.]*$/, "").replace(/[^_a-zA-Z0-9]/g, "_");
  return base.slice(0, 160);
}

/**
 * The form. `existing`: the function's record when updating; `modules`: names offered for a
 * new function; `done(created, module, name)` after a success.
 */
export function uploadForm({ existing, modules = ["_"], done }) {
  const updating = Boolean(existing);
  const meta = existing?.metadata ?? {};
  const prefix = updating ? "update" : "upload";
  const module = h("input", { id: `${prefix}-module`, name: "module", value: existing?.module ?? "_", required: true, pattern: NAME_PATTERN, list: `${prefix}-modules`, disabled: updating });
  const modulesList = h("datalist", { id: `${prefix}-modules` }, modules.map((m) => h("option", { value: m })));
  const name = h("input", { id: `${prefix}-name`, name: "name", value: existing?.name ?? "", required: !updating, pattern: NAME_PATTERN, placeholder: updating ? "" : "taken from the file if empty" });
  const code = h("input", { id: `${prefix}-code`, name: "code", type: "file", required: true, accept: ".wasm,.js,.mjs,application/wasm,text/javascript" });
  const chosen = h("span", { class: "muted", "aria-live": "polite" }, "No file chosen yet.");
  const language = h("select", { id: `${prefix}-language`, name: "language" },
    h("option", { value: "" }, "detect"),
    h("option", { value: "wasm" }, "WebAssembly"),
    h("option", { value: "js" }, "JavaScript"));
  const tag = h("input", { id: `${prefix}-tag`, name: "tag", value: meta.tag ?? "" });
  const capacity = h("input", { id: `${prefix}-capacity`, name: "capacity", type: "number", min: "1", step: "1", value: meta.capacity ? Math.round(meta.capacity / MIB) : "" , placeholder: "64" });
  const timeout = h("input", { id: `${prefix}-timeout`, name: "timeout_ms", type: "number", min: "1", step: "1", value: meta.timeout_ms ?? "", placeholder: "60000" });
  const hosts = h("input", { id: `${prefix}-hosts`, name: "allow_hosts", value: (meta.allow_hosts ?? []).join(", "), placeholder: "api.example.org, 10.0.0.5:8080" });
  const retryable = h("input", { type: "checkbox", name: "retryable", checked: meta.retryable !== false });
  const events = h("textarea", { id: `${prefix}-events`, name: "events", class: "code", rows: 3, placeholder: '[{"type": "cron", "params": {"schedule": "*/10 * * * * *"}}]' });
  const sinks = h("textarea", { id: `${prefix}-sinks`, name: "sinks", class: "code", rows: 3, placeholder: '[{"type": "webhook", "params": {"url": "…"}}]' });
  const wait = h("input", { type: "checkbox", name: "wait_for_workers", checked: true });
  const submit = h("button", { type: "submit", class: "primary", id: `${prefix}-submit` }, updating ? "Update" : "Upload");
  const result = h("div", { id: `${prefix}-result`, "aria-live": "polite" });

  const showFile = () => {
    const file = code.files?.[0];
    chosen.textContent = file ? `${file.name}, ${file.size} bytes` : "No file chosen yet.";
    if (file && !updating && !name.value) name.value = nameFromFile(file.name);
  };
  code.addEventListener("change", showFile);
  const drop = h("div", { class: "drop" },
    h("p", null, "Drop a ", h("code", null, ".wasm"), " or ", h("code", null, ".js"), " file here, or choose one:"),
    code, h("p", null, chosen));
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer?.files?.length) {
      code.files = e.dataTransfer.files;
      showFile();
    }
  });

  const form = h("form", { id: `${prefix}-form`, novalidate: false },
    h("div", { class: "row" },
      field("Module", module, updating ? "" : "(created if new)"),
      modulesList,
      field("Name", name, updating ? "(a new name renames it)" : "")),
    h("fieldset", null, h("legend", null, "Code"), drop, field("Language", language)),
    h("fieldset", null, h("legend", null, "Settings"),
      h("div", { class: "row" },
        field("Tag", tag, "(for APP scripts)"),
        field("Memory, MiB", capacity, "(default 64)"),
        field("Time limit, ms", timeout, "(default 60000)")),
      field("Hosts it may reach", hosts, "(comma-separated host or host:port)"),
      h("label", { class: "check" }, retryable, "May run again on another worker if its worker is lost")),
    h("details", null, h("summary", null, "Events and sinks (JSON)"),
      field("Events", events, "(a JSON array; MQTT, NATS, cron)"),
      field("Sinks", sinks, "(a JSON array; CouchDB, webhook)")),
    h("label", { class: "check" }, wait, "Wait until the workers have compiled it"),
    h("div", { class: "actions" }, submit),
    result);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    result.replaceChildren();
    submit.disabled = true;
    try {
      const target = { module: module.value.trim(), name: name.value.trim() || existing?.name };
      const body = buildForm({ name: target.name, code, language, tag, capacity, timeout, hosts, retryable, events, sinks, wait });
      let answer;
      if (updating) {
        answer = await call("PUT", fnPath(existing.module, existing.name), { form: body, deadlineMs: 300000 });
      } else {
        if (!modules.includes(target.module)) await createModule(target.module);
        answer = await call("POST", `/v1/fn/${enc(target.module)}`, { form: body, deadlineMs: 300000 });
      }
      result.replaceChildren(outcome(answer, target));
      done?.(answer.data, target.module, target.name);
    } catch (e) {
      result.replaceChildren(errorBox(e, updating ? "Not updated" : "Not uploaded"));
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

async function createModule(name) {
  try {
    await post("/v1/fn", { module: { name } });
  } catch (e) {
    if (e.status !== 409) throw e;
  }
}

function buildForm(f) {
  const file = f.code.files?.[0];
  if (!file) throw new ApiError(0, "choose the code file (.wasm or .js) first");
  const data = new FormData();
  data.append("name", f.name);
  data.append("code", file, file.name);
  if (f.language.value) data.append("language", f.language.value);
  const metadata = {};
  if (f.tag.value.trim()) metadata.tag = f.tag.value.trim();
  if (f.capacity.value) metadata.capacity = Math.round(Number(f.capacity.value) * MIB);
  if (f.timeout.value) metadata.timeout_ms = Number(f.timeout.value);
  const hosts = f.hosts.value.split(",").map((s) => s.trim()).filter(Boolean);
  if (hosts.length) metadata.allow_hosts = hosts;
  if (!f.retryable.checked) metadata.retryable = false;
  if (Object.keys(metadata).length) data.append("metadata", JSON.stringify(metadata));
  for (const [label, area] of [["events", f.events], ["sinks", f.sinks]]) {
    const text = area.value.trim();
    if (!text) continue;
    try {
      JSON.parse(text);
    } catch (e) {
      throw new ApiError(0, `${label} is not JSON: ${e.message}`);
    }
    data.append(label, text);
  }
  if (!f.wait.checked) data.append("wait_for_workers", "false");
  return data;
}

function outcome(answer, target) {
  const created = answer.data;
  const workers = created.workers ?? { cached: [], failed: [] };
  return h("div", { class: "panel" },
    h("p", { class: "ok" }, answer.status === 201 ? "Created " : "Saved ", fnLink(target.module, created.name),
      `: ${formName(created.abi)}, hash `, shortHash(created.hash), "."),
    workers.cached.length ? h("p", null, `Compiled by ${workers.cached.join(", ")}.`) : null,
    workers.failed.map((f) => h("p", { class: "error" }, `${f.worker}: ${f.reason}`)),
    answer.status === 207 ? h("p", { class: "error" }, "An event connector could not connect yet; it keeps trying.") : null);
}
