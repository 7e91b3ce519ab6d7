// The console's entry: sign-in, the page router (the part of the URL after #), and the
// life of a page (its timers stop when another page is shown or the tab is hidden).

import { ApiError, get, onRefused, session } from "./api.js";
import { errorBox, field, h, staleNotice } from "./ui.js";
import * as functions from "./functions.js";
import * as activations from "./activations.js";
import * as workers from "./workers.js";
import * as cluster from "./cluster.js";

const pages = {
  functions: functions.list,
  function: functions.detail,
  activations: activations.list,
  activation: activations.one,
  workers: workers.show,
  cluster: cluster.show,
};

/** Which nav entry a page belongs to. */
const navOf = { function: "functions", activation: "activations" };

const view = document.getElementById("view");
let current = null;

/** The life of one shown page: its timers, and whether it is still the one on screen. */
class Page {
  constructor() {
    this.timers = [];
    this.live = true;
  }

  /** Runs `tick` now and every `periodMs` while this page is shown and the tab visible; a tick
   * never overlaps the previous one. */
  every(periodMs, tick) {
    let running = false;
    const run = async () => {
      if (!this.live || running || document.hidden) return;
      running = true;
      try {
        await tick();
      } finally {
        running = false;
      }
    };
    this.timers.push(setInterval(run, periodMs));
    return run();
  }

  stop() {
    this.live = false;
    this.timers.forEach(clearInterval);
  }
}

/** "#/function/_/hello?x=1" → {name: "function", parts: ["_", "hello"], params}. */
function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query] = hash.split("?");
  const [name, ...parts] = path.split("/").map(decodeURIComponent);
  return { name: name || "functions", parts, params: new URLSearchParams(query ?? "") };
}

async function render() {
  current?.stop();
  current = null;
  if (!session.token()) {
    showLogin();
    return;
  }
  const { name, parts, params } = route();
  const show = pages[name] ?? functions.list;
  staleNotice();
  chrome(true, navOf[name] ?? name);
  const page = new Page();
  current = page;
  const root = h("div", { class: `page page-${name}` });
  view.replaceChildren(root);
  try {
    await show({ root, parts, params, admin: session.admin(), page });
  } catch (e) {
    if (page.live) root.append(errorBox(e, "Cannot show this page"));
  }
}

/** Shows or hides the navigation and marks the current page. */
function chrome(signedIn, pageName) {
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("who").hidden = !signedIn;
  document.getElementById("who-role").textContent = signedIn
    ? `Signed in with ${session.admin() ? "the admin token" : "a user token"}`
    : "";
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.page === pageName) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function showLogin(message) {
  chrome(false);
  const token = h("input", {
    id: "login-token",
    type: "password",
    name: "token",
    autocomplete: "current-password",
    required: true,
    spellcheck: "false",
  });
  const problem = h("div", { id: "login-error" });
  if (message) problem.append(h("p", { class: "error", role: "alert" }, message));
  const submit = h("button", { type: "submit", class: "primary", id: "login-submit" }, "Sign in");
  const form = h(
    "form",
    { class: "login panel", id: "login" },
    h("h1", null, "Sign in"),
    h("p", null, "Paste an API token: the admin token or a user's, as in fl's config (",
      h("code", null, "funless-data/fl-config.toml"), " on the Core's first start). It stays in this tab only."),
    field("Token", token),
    problem,
    h("div", { class: "actions" }, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    submit.disabled = true;
    problem.replaceChildren();
    try {
      await signIn(token.value.trim());
    } catch (e) {
      problem.append(errorBox(e));
      token.focus();
      token.select();
    } finally {
      submit.disabled = false;
    }
  });
  view.replaceChildren(form);
  token.focus();
}

/** Checks the token with the Core, learns whether it is the admin's, and keeps it. */
async function signIn(token) {
  if (!token) throw new Error("Enter a token.");
  if (/[^\x21-\x7e]/.test(token)) {
    throw new Error("A token has no spaces or accented letters: check what was pasted.");
  }
  try {
    await get("/v1/fn", { token });
  } catch (e) {
    if (e.status === 401) {
      throw new ApiError(401, `The Core refused this token: ${e.detail}. Check it and try again.`);
    }
    throw e;
  }
  let admin = false;
  try {
    await get("/v1/workers", { token });
    admin = true;
  } catch (e) {
    if (e.status !== 403) throw e;
  }
  session.save(token, admin);
  if (location.hash && route().name in pages) render();
  else location.hash = "#/functions";
}

function logOut(message) {
  session.clear();
  current?.stop();
  current = null;
  if (location.hash) history.replaceState(null, "", location.pathname);
  showLogin(message);
}

onRefused((detail) => logOut(`The Core no longer accepts this token (${detail}). Sign in again.`));
document.getElementById("logout").addEventListener("click", () => logOut());
window.addEventListener("hashchange", render);
render();
