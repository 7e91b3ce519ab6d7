// Workers: each worker's state, tags, memory, CPU load, invocations in flight and cached code,
// read every two seconds; charts of the Core's invocations per second and latency from its
// own /metrics.

import { functionInfos, functionNames, get, metricsText } from "./api.js";
import { LineChart } from "./chart.js";
import { parse, rates, totals } from "./metrics.js";
import { add, bytes, errorBox, facts, h, ms } from "./ui.js";

const PERIOD_MS = 2000;

const perSecond = (v) => `${v.toFixed(v < 10 ? 1 : 0)}/s`;

/** #/workers */
export async function show({ root, admin, page }) {
  const rate = new LineChart({
    id: "chart-rate",
    title: "Invocations per second",
    series: [{ label: "all" }, { label: "failed" }],
    format: perSecond,
  });
  const latency = new LineChart({
    id: "chart-latency",
    title: "Latency seen by the Core",
    series: [{ label: "mean" }, { label: "90th percentile" }],
    format: ms,
  });
  const metricsProblem = h("div");
  const list = h("div", { id: "workers", class: "cards-grid", "aria-live": "off" });
  const listProblem = h("div");
  const updated = h("p", { class: "muted", id: "workers-updated" }, "");
  add(
    root,
    h("h1", null, "Workers"),
    updated,
    h("section", { "aria-label": "Core metrics" }, h("div", { class: "cards-grid" }, h("div", { class: "card" }, rate.el), h("div", { class: "card" }, latency.el)), metricsProblem),
    h("h2", null, "Workers"),
    admin ? listProblem : h("p", { class: "error" }, "The list of workers needs the admin token; the charts above are public."),
    list,
  );

  // Names of cached code: hash → "module/function", for what this token can see.
  const names = new Map();
  if (admin) {
    functionNames()
      .then((n) => functionInfos(n.functions))
      .then((infos) => infos.forEach((f) => names.set(f.hash, `${f.module}/${f.name}`)))
      .catch(() => {});
  }

  const cards = new Map();
  let previous = null;
  await page.every(PERIOD_MS, async () => {
    const [metrics, workers] = await Promise.allSettled([
      metricsText(),
      admin ? get("/v1/workers") : Promise.resolve(null),
    ]);
    if (metrics.status === "fulfilled") {
      const now = { at: performance.now(), totals: totals(parse(metrics.value)) };
      if (previous) {
        const r = rates(previous.totals, now.totals, (now.at - previous.at) / 1000);
        rate.push([r.perSecond, r.failedPerSecond]);
        latency.push([r.meanMs, r.p90Ms]);
      }
      previous = now;
      metricsProblem.replaceChildren();
    } else {
      metricsProblem.replaceChildren(errorBox(metrics.reason, "Cannot read the metrics"));
    }
    if (workers.status === "fulfilled" && workers.value) {
      listProblem.replaceChildren();
      const seen = new Set();
      for (const w of workers.value.data) {
        seen.add(w.name);
        let card = cards.get(w.name);
        if (!card) {
          card = new WorkerCard(w.name);
          cards.set(w.name, card);
          list.append(card.el);
        }
        card.update(w, names);
      }
      for (const [name, card] of cards) {
        if (!seen.has(name)) {
          card.el.remove();
          cards.delete(name);
        }
      }
      if (cards.size === 0) list.replaceChildren(h("p", { id: "workers-empty" }, "No worker has joined this Core yet."));
      else list.querySelector("#workers-empty")?.remove();
    } else if (workers.status === "rejected") {
      listProblem.replaceChildren(errorBox(workers.reason, "Cannot list the workers"));
    }
    updated.textContent = `Updated ${new Date().toLocaleTimeString()}, every ${PERIOD_MS / 1000} s.`;
  });
}

const STATES = { ready: ["✔ ready", "state-ok"], joining: ["… joining", "state-warn"], lost: ["✘ lost", "state-bad"] };

class WorkerCard {
  constructor(name) {
    this.chart = new LineChart({
      id: `chart-inflight-${name}`,
      title: "In flight",
      series: [{ label: "invocations" }],
      format: (v) => String(Math.round(v)),
    });
    this.body = h("div");
    this.el = h("article", { class: "card worker", "data-worker": name, "aria-label": `worker ${name}` },
      h("h3", null, name), this.body, this.chart.el);
  }

  update(w, names) {
    const [state, cls] = STATES[w.state] ?? [w.state, ""];
    const used = w.memory_total - w.memory_free;
    const load = w.cpu_load_permille / 1000;
    const cached = w.cached.map((hash) => names.get(hash) ?? `${hash.slice(0, 12)}…`);
    this.body.replaceChildren(facts([
      ["State", h("span", { class: cls }, state), "state"],
      ["Tags", w.tags.length ? w.tags.join(", ") : "none", "tags"],
      ["Memory", h("span", null, h("meter", { min: 0, max: w.memory_total, value: used, "aria-hidden": "true" }),
        `${bytes(used)} used of ${bytes(w.memory_total)} (${bytes(w.memory_free)} free)`), "memory"],
      ["CPU load", h("span", null, h("meter", { min: 0, max: 1, high: 0.8, value: Math.min(1, load), "aria-hidden": "true" }),
        `${load.toFixed(2)} per CPU (1-minute average, ${w.cpus} CPU${w.cpus === 1 ? "" : "s"})`), "cpu"],
      ["In flight", String(w.in_flight), "in_flight"],
      ["Cached code", `${w.cached.length} module${w.cached.length === 1 ? "" : "s"}, ${bytes(w.cache_bytes)} of ${bytes(w.cache_capacity)}; ${w.cache_evictions} evicted`, "cache"],
      ["Holds", cached.length ? cached.join(", ") : "nothing yet", "cached"],
      ["Allocator", w.allocator, "allocator"],
    ]));
    this.chart.push([w.in_flight]);
  }
}
