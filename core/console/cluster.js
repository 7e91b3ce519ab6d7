// Cluster: the supervision trees of the Core and every worker with their restart counts, the
// APP scheduling scripts, and (admin) the subjects and their tokens.

import { call, del, enc, get, post } from "./api.js";
import { confirmButton, errorBox, field, fill, h, notify, row, table, uptime } from "./ui.js";

const TREE_MS = 5000;

/** #/cluster */
export async function show({ root, admin, page }) {
  const tree = h("section", { id: "tree", "aria-labelledby": "tree-title" });
  const scripts = h("section", { id: "scripts", "aria-labelledby": "scripts-title" });
  const subjects = h("section", { id: "subjects", "aria-labelledby": "subjects-title" });
  root.append(h("h1", null, "Cluster"), tree, scripts, subjects);
  appScripts(scripts, admin);
  if (admin) {
    subjectList(subjects);
  } else {
    tree.append(h("h2", { id: "tree-title" }, "Supervision trees"), h("p", { class: "error" }, "The supervision trees need the admin token."));
    subjects.append(h("h2", { id: "subjects-title" }, "Subjects and tokens"), h("p", { class: "error" }, "Subjects and tokens need the admin token."));
    return;
  }
  const body = h("div", { "aria-live": "off" });
  const auto = h("input", { type: "checkbox", id: "tree-auto", checked: true });
  tree.append(h("h2", { id: "tree-title" }, "Supervision trees"),
    h("p", null, "Every long-running part of each process, its supervisor's strategy, and how often it was restarted."),
    h("label", { class: "check" }, auto, `Refresh every ${TREE_MS / 1000} s`), body);
  const closed = new Set();
  await page.every(TREE_MS, async () => {
    if (!auto.checked && body.childElementCount) return;
    try {
      const data = (await get("/v1/admin/tree")).data;
      for (const d of body.querySelectorAll("details[data-path]")) {
        if (d.open) closed.delete(d.dataset.path);
        else closed.add(d.dataset.path);
      }
      fill(
        body,
        nodeTree("core", data.core, closed),
        data.workers.map((w) =>
          w.tree
            ? nodeTree(w.name, w.tree, closed, w.state)
            : h("p", { class: "error" }, `Worker ${w.name} (${w.state}): ${w.error ?? "no tree"}`)),
      );
    } catch (e) {
      body.replaceChildren(errorBox(e, "Cannot read the supervision trees"));
    }
  });
}

/** One process's tree. */
function nodeTree(process, top, closed, state) {
  return h("div", { class: "panel", "data-node": process },
    h("h3", null, process === "core" ? "Core" : `Worker ${process}`, state ? ` (${state})` : ""),
    h("ul", { class: "tree root" }, actor(top, process, closed)));
}

/** An actor and, for a supervisor, its children (collapsible). */
function actor(n, path, closed) {
  const restarted = n.restarts > 0 ? h("strong", { class: "state-warn" }, ` ⟳ restarted ${n.restarts}×`) : " restarts 0";
  const line = [
    h("span", { class: "name" }, n.name),
    ` ${n.role} · ${n.kind}${n.strategy ? ` (${n.strategy})` : ""} · ${n.restart} · `,
    h("span", { class: n.state === "running" ? "state-ok" : "state-bad" }, n.state === "running" ? "✔ running" : `✘ ${n.state}`),
    ` · up ${uptime(n.uptime_ms)}`,
    n.linked ? ` · ${n.linked} linked` : "",
    " ·", restarted,
  ];
  if (!n.children?.length) return h("li", { "data-actor": path }, line);
  const details = h("details", { "data-path": path, open: !closed.has(path) },
    h("summary", null, line),
    h("ul", { class: "tree" }, n.children.map((c) => actor(c, `${path}/${c.name}`, closed))));
  return h("li", { "data-actor": path }, details);
}

/** APP scripts: list, view, upload (any subject), delete (admin). */
async function appScripts(section, admin) {
  const list = h("div", { id: "scripts-list" }, h("p", null, "Loading…"));
  const viewer = h("div", { id: "script-view" });
  const name = h("input", { id: "script-name", required: true, pattern: "[_a-zA-Z0-9]{1,160}" });
  const file = h("input", { id: "script-file", type: "file", accept: ".yml,.yaml,text/yaml" });
  const text = h("textarea", { id: "script-text", class: "code", rows: 6, spellcheck: "false", placeholder: "- default:\n    - workers: \"*\"\n      strategy: platform" });
  const outcome = h("div", { "aria-live": "polite" });
  const submit = h("button", { type: "submit", class: "primary", id: "script-submit" }, "Create");
  const form = h("form", { class: "panel", id: "script-form" },
    h("h3", null, "New APP script"),
    field("Name", name),
    field("YAML file", file, "(or paste it below)"),
    field("YAML", text),
    h("div", { class: "actions" }, submit), outcome);
  file.addEventListener("change", async () => {
    const chosen = file.files?.[0];
    if (chosen) text.value = await chosen.text();
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    outcome.replaceChildren();
    submit.disabled = true;
    try {
      const body = new FormData();
      body.append("name", name.value.trim());
      body.append("file", new Blob([text.value], { type: "text/yaml" }), "script.yml");
      await call("POST", "/v1/scripts/app", { form: body });
      notify(`APP script ${name.value.trim()} created.`);
      form.reset();
      await refresh();
    } catch (err) {
      outcome.replaceChildren(errorBox(err, "Not created"));
    } finally {
      submit.disabled = false;
    }
  });
  const columns = [{ label: "Script" }, { label: "" }];
  const refresh = async () => {
    try {
      const scripts = (await get("/v1/scripts/app")).data;
      list.replaceChildren(scripts.length
        ? table(columns, scripts.map((s) => row(columns, [
          s.name,
          h("span", { class: "actions" },
            h("button", { type: "button", onclick: () => view(s.name) }, "View"),
            admin ? confirmButton("Delete", `Delete script ${s.name}?`, async () => {
              try {
                await del(`/v1/scripts/app/${enc(s.name)}`);
                notify(`APP script ${s.name} deleted.`);
                viewer.replaceChildren();
                await refresh();
              } catch (err) {
                list.append(errorBox(err, "Not deleted"));
              }
            }) : null),
        ], { "data-script": s.name })))
        : h("p", { class: "muted" }, "No APP scripts."));
    } catch (err) {
      list.replaceChildren(errorBox(err, "Cannot list the APP scripts"));
    }
  };
  const view = async (scriptName) => {
    try {
      const s = (await get(`/v1/scripts/app/${enc(scriptName)}`)).data;
      viewer.replaceChildren(h("div", { class: "panel" },
        h("h3", null, `Script ${s.name}`, h("span", { class: "muted" }, ` created ${new Date(s.created_at).toLocaleString()}`)),
        h("pre", null, s.source)));
    } catch (err) {
      viewer.replaceChildren(errorBox(err));
    }
  };
  section.append(h("h2", { id: "scripts-title" }, "APP scripts"),
    h("p", null, "Scheduling scripts that place functions by their tag (invoke with ", h("code", null, "--script NAME"), ")."),
    list, viewer, form);
  await refresh();
}

/** Subjects: list, create (its token shown once), revoke. */
async function subjectList(section) {
  const list = h("div", { id: "subjects-list" }, h("p", null, "Loading…"));
  const name = h("input", { id: "subject-name", required: true, pattern: "[_a-zA-Z0-9]{1,160}" });
  const created = h("div", { id: "subject-created", "aria-live": "polite" });
  const form = h("form", { class: "panel", id: "subject-form" },
    h("h3", null, "New subject"), field("Name", name),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create and show its token")), created);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    created.replaceChildren();
    try {
      const s = (await post("/v1/admin/subjects", { subject: { name: name.value.trim() } })).data;
      created.replaceChildren(h("div", { class: "panel" },
        h("p", { class: "ok" }, `Subject ${s.name} created. Its token is shown this once (the Core keeps only its hash):`),
        h("p", { class: "token", "data-field": "token" }, s.token)));
      form.reset();
      await refresh();
    } catch (err) {
      created.replaceChildren(errorBox(err, "Not created"));
    }
  });
  const columns = [{ label: "Subject" }, { label: "" }];
  const refresh = async () => {
    try {
      const subjects = (await get("/v1/admin/subjects")).data;
      list.replaceChildren(subjects.length
        ? table(columns, subjects.map((s) => row(columns, [
          s.name,
          confirmButton("Revoke", `Revoke ${s.name}'s token? It stops working at once.`, async () => {
            try {
              await del(`/v1/admin/subjects/${enc(s.name)}`);
              notify(`${s.name}'s token revoked.`);
              await refresh();
            } catch (err) {
              list.append(errorBox(err, "Not revoked"));
            }
          }),
        ], { "data-subject": s.name })))
        : h("p", { class: "muted" }, "No subjects besides the admin."));
    } catch (err) {
      list.replaceChildren(errorBox(err, "Cannot list the subjects"));
    }
  };
  section.append(h("h2", { id: "subjects-title" }, "Subjects and tokens"),
    h("p", null, "Each subject sees only its own modules. Tokens are stored hashed; a revoked token is refused at once."),
    list, form);
  await refresh();
}

