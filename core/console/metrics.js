// The Core's Prometheus text (/metrics) read in the page: samples, totals over every function,
// and rates between two readings (invocations per second, mean and 90th-percentile latency).

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Text → [{name, labels, value}]. */
export function parse(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels = {};
    for (const [, key, value] of (m[2] ?? "").matchAll(LABEL)) labels[key] = value.replace(/\\(.)/g, "$1");
    samples.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return samples;
}

/** What the console draws, summed over every module and function. */
export function totals(samples) {
  const t = { invocations: 0, failed: 0, latencyCount: 0, latencySum: 0, buckets: new Map(), workers: null };
  for (const s of samples) {
    switch (s.name) {
      case "funless_invocations_total":
        t.invocations += s.value;
        if (s.labels.outcome !== "ok") t.failed += s.value;
        break;
      case "funless_invocation_duration_seconds_count":
        t.latencyCount += s.value;
        break;
      case "funless_invocation_duration_seconds_sum":
        t.latencySum += s.value;
        break;
      case "funless_invocation_duration_seconds_bucket": {
        const le = s.labels.le === "+Inf" ? Infinity : Number(s.labels.le);
        t.buckets.set(le, (t.buckets.get(le) ?? 0) + s.value);
        break;
      }
      case "funless_workers_connected":
        t.workers = s.value;
        break;
      default:
    }
  }
  return t;
}

/** Rates between two totals taken `seconds` apart. Latencies in ms, null without calls. */
export function rates(before, after, seconds) {
  const calls = after.latencyCount - before.latencyCount;
  const perSecond = Math.max(0, (after.invocations - before.invocations) / seconds);
  const failedPerSecond = Math.max(0, (after.failed - before.failed) / seconds);
  if (calls <= 0) return { perSecond, failedPerSecond, meanMs: null, p90Ms: null };
  const meanMs = ((after.latencySum - before.latencySum) / calls) * 1000;
  return { perSecond, failedPerSecond, meanMs, p90Ms: quantile(before.buckets, after.buckets, 0.9) * 1000 };
}

/** The q-quantile of the observations between two readings of a cumulative histogram,
 * interpolated inside its bucket (as Prometheus's histogram_quantile). */
export function quantile(before, after, q) {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const counts = bounds.map((le) => after.get(le) - (before.get(le) ?? 0));
  const total = counts[counts.length - 1] ?? 0;
  if (total <= 0) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (let i = 0; i < bounds.length; i++) {
    if (counts[i] >= rank) {
      const upper = bounds[i];
      if (upper === Infinity) return lower;
      const inBucket = counts[i] - below;
      return inBucket > 0 ? lower + (upper - lower) * ((rank - below) / inBucket) : upper;
    }
    lower = bounds[i];
    below = counts[i];
  }
  return lower;
}
