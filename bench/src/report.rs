//! The evaluation's report: Markdown tables (`report.md`) and PNG plots in one folder.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;

use crate::eval::{EvalArgs, Params};
use crate::stats::{Run, Summary, ms, sorted_ms};

const MB: f64 = 1024.0 * 1024.0;

struct Memory {
    run: Run,
    samples: Vec<(f64, u64, u64)>,
    /// Core and Worker RSS of the fresh platform before the run, and after it.
    idle: (u64, u64),
    after: (u64, u64),
}

struct Workload {
    group: String,
    label: String,
    shape: String,
    runs: Vec<Run>,
}

/// Everything measured, in the order it was measured.
pub(crate) struct Report {
    command: String,
    started: SystemTime,
    started_at: Duration,
    load_start: String,
    storage: &'static str,
    params: Params,
    binaries: Vec<(String, u64)>,
    notes: Vec<String>,
    skipped: Vec<(String, String)>,
    artifacts: Vec<(String, String, u64)>,
    workloads: Vec<Workload>,
    hello: Vec<(String, usize, Vec<Run>)>,
    throughput: Vec<(String, Vec<Run>)>,
    memory: Option<Memory>,
    idle_rss: (u64, u64),
    final_rss: (u64, u64),
    /// Python functions cached, and the worker's RSS before and after them.
    python_memory: Option<(usize, u64, u64)>,
}

impl Report {
    pub(crate) fn new(args: &EvalArgs, bin_dir: &Path, params: Params) -> Self {
        let command = std::env::args()
            .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
            .collect::<Vec<_>>()
            .join(" ");
        let binaries = ["funless-core", "funless-worker"]
            .iter()
            .map(|b| {
                let size = std::fs::metadata(bin_dir.join(b))
                    .map(|m| m.len())
                    .unwrap_or_default();
                (b.to_string(), size)
            })
            .collect();
        let started = SystemTime::now();
        Self {
            command,
            started,
            started_at: started.duration_since(UNIX_EPOCH).unwrap_or_default(),
            load_start: load_average(),
            storage: if args.database_url.is_some() {
                "PostgreSQL"
            } else {
                "SQLite (temporary directory)"
            },
            params,
            binaries,
            notes: Vec::new(),
            skipped: Vec::new(),
            artifacts: Vec::new(),
            workloads: Vec::new(),
            hello: Vec::new(),
            throughput: Vec::new(),
            memory: None,
            idle_rss: (0, 0),
            final_rss: (0, 0),
            python_memory: None,
        }
    }

    pub(crate) fn note(&mut self, note: String) {
        self.notes.push(note);
    }

    pub(crate) fn skip(&mut self, what: &str, reason: String) {
        self.skipped.push((what.to_string(), reason));
    }

    pub(crate) fn artifact(&mut self, function: &str, file: &str, bytes: u64) {
        self.artifacts
            .push((function.to_string(), file.to_string(), bytes));
    }

    pub(crate) fn idle_rss(&mut self, core: u64, worker: u64) {
        self.idle_rss = (core, worker);
    }

    pub(crate) fn final_rss(&mut self, core: u64, worker: u64) {
        self.final_rss = (core, worker);
    }

    /// The worker's RSS before the Python functions were uploaded and after `count` of them
    /// were compiled, cached and invoked once.
    pub(crate) fn python_memory(&mut self, count: usize, before: u64, after: u64) {
        self.python_memory = Some((count, before, after));
    }

    pub(crate) fn workload(&mut self, group: &str, label: &str, shape: String, runs: Vec<Run>) {
        self.workloads.push(Workload {
            group: group.to_string(),
            label: label.to_string(),
            shape,
            runs,
        });
    }

    pub(crate) fn hello(&mut self, label: &str, concurrency: usize, runs: Vec<Run>) {
        self.hello.push((label.to_string(), concurrency, runs));
    }

    pub(crate) fn throughput(&mut self, label: &str, runs: Vec<Run>) {
        self.throughput.push((label.to_string(), runs));
    }

    pub(crate) fn memory(
        &mut self,
        run: Run,
        samples: Vec<(f64, u64, u64)>,
        idle: (u64, u64),
        after: (u64, u64),
    ) {
        self.memory = Some(Memory {
            run,
            samples,
            idle,
            after,
        });
    }

    fn hello_summary(&self, prefix: &str, concurrency: usize) -> Option<Summary> {
        self.hello
            .iter()
            .find(|(l, c, _)| l.starts_with(prefix) && *c == concurrency)
            .map(|(_, _, runs)| Summary::of(runs))
    }

    fn throughput_of(&self, prefix: &str) -> Option<Summary> {
        self.throughput
            .iter()
            .find(|(l, _)| l.starts_with(prefix))
            .map(|(_, runs)| Summary::of(runs))
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// `YYYY-MM-DD HH:MM UTC` of a time since the epoch (civil-from-days, proleptic Gregorian).
fn utc(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let days = (secs / 86_400) as i64;
    let (h, m) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{d:02} {h:02}:{m:02} UTC")
}

fn machine() -> String {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map(|kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown memory".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!("{cores} cores ({cpu}), {memory}, Linux {kernel}")
}

fn f3(d: Duration) -> String {
    let v = ms(d);
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / MB)
}

fn yes(met: bool) -> &'static str {
    if met { "**met**" } else { "**not met**" }
}

fn slug(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Writes `report.md` and the PNG plots into `out`.
pub(crate) fn write(report: &Report, out: &Path, plots: bool) -> anyhow::Result<()> {
    let mut md = String::new();
    let mut plot_errors = Vec::new();
    let mut plot = |name: &str, draw: &dyn Fn(&Path) -> anyhow::Result<()>| -> Option<String> {
        if !plots {
            return None;
        }
        match draw(&out.join(name)) {
            Ok(()) => Some(name.to_string()),
            Err(e) => {
                plot_errors.push(format!("{name}: {e:#}"));
                None
            }
        }
    };
    let p = &report.params;
    let elapsed = report.started.elapsed().unwrap_or_default();
    let _ = writeln!(md, "# FunLess evaluation report\n");
    let _ = writeln!(
        md,
        "Produced by `{}` on {} in {:.0} s.\n",
        report.command,
        utc(report.started_at),
        elapsed.as_secs_f64()
    );
    let _ = writeln!(md, "- Machine: {}.", machine());
    let _ = writeln!(
        md,
        "- Load average (1, 5, 15 min) at the start: {}; at the end: {}. Everything (Core, \
         Worker, the load generator, the floors and the peer) shares these cores.",
        report.load_start,
        load_average()
    );
    let _ = writeln!(
        md,
        "- Platform: one `funless-core` and one `funless-worker` process on 127.0.0.1, {}; \
         release binaries {}.",
        report.storage,
        report
            .binaries
            .iter()
            .map(|(b, s)| format!("`{b}` {:.1} MB", *s as f64 / MB))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        md,
        "- Each workload ran {} time(s); percentiles pool all runs' requests (nearest rank), \
         throughput is the mean of the runs', and \"p50 range\" is the lowest and highest \
         median of a single run. Latency is client-side, from sending the request to the \
         whole answer (keep-alive connections, one per client). MB = 2^20 bytes.",
        p.repeat
    );
    let _ = writeln!(
        md,
        "- RSS of the platform that ran the workloads: Core {} MB and Worker {} MB idle after \
         start, {} MB and {} MB after every workload but the memory run.",
        mb(report.idle_rss.0),
        mb(report.idle_rss.1),
        mb(report.final_rss.0),
        mb(report.final_rss.1)
    );
    if let Some((count, before, after)) = report.python_memory {
        let _ = writeln!(
            md,
            "- Python: the worker's RSS went from {} MB to {} MB with {count} Python functions \
             compiled, cached and invoked once ({} MB each).",
            mb(before),
            mb(after),
            mb(after.saturating_sub(before) / count.max(1) as u64)
        );
    }
    for note in &report.notes {
        let _ = writeln!(md, "- {note}");
    }

    // Targets of issue 8.
    let _ = writeln!(md, "\n## Targets\n");
    let _ = writeln!(md, "| target | measured | result |\n|---|---|---|");
    let ours = report.throughput_of("FunLess");
    match (&ours, report.throughput_of("wasmtime serve")) {
        (Some(o), Some(w)) => {
            let _ = writeln!(
                md,
                "| `hello` throughput at concurrency 64 ≥ `wasmtime serve`'s | {:.0} vs {:.0} req/s ({:.2}×) | {} |",
                o.throughput,
                w.throughput,
                o.throughput / w.throughput.max(f64::MIN_POSITIVE),
                yes(o.throughput >= w.throughput)
            );
        }
        (Some(o), None) => {
            let _ = writeln!(
                md,
                "| `hello` throughput at concurrency 64 ≥ `wasmtime serve`'s | {:.0} req/s; peer not run | skipped |",
                o.throughput
            );
        }
        _ => {}
    }
    if let Some(s) = report.hello_summary("FunLess", 4) {
        let _ = writeln!(
            md,
            "| median latency at concurrency 4 < 1 ms | {} ms | {} |",
            f3(s.p50),
            yes(s.p50 < Duration::from_millis(1))
        );
        let _ = writeln!(
            md,
            "| p99 latency at concurrency 4 < 5 ms | {} ms | {} |",
            f3(s.p99),
            yes(s.p99 < Duration::from_millis(5))
        );
    }
    for c in [1, 4] {
        if let (Some(o), Some(f)) = (
            report.hello_summary("FunLess", c),
            report.hello_summary("in-process", c),
        ) {
            let _ = writeln!(
                md,
                "| whole-path overhead over the in-process floor, concurrency {c} (reported) | +{} ms per invocation at the median ({} − {} ms) | reported |",
                f3(o.p50.saturating_sub(f.p50)),
                f3(o.p50),
                f3(f.p50)
            );
        }
    }
    if let Some(Memory { samples, .. }) = &report.memory {
        let core = samples.iter().map(|s| s.1).max().unwrap_or_default();
        let worker = samples.iter().map(|s| s.2).max().unwrap_or_default();
        let _ = writeln!(
            md,
            "| worker RSS < 40 MB during the `hellojs` run | peak {} MB | {} |",
            mb(worker),
            yes((worker as f64) < 40.0 * MB)
        );
        let _ = writeln!(
            md,
            "| Core (SQLite) RSS < 30 MB during the `hellojs` run | peak {} MB | {} |",
            mb(core),
            yes((core as f64) < 30.0 * MB)
        );
    }

    // The paper's workloads.
    let _ = writeln!(md, "\n## Workloads\n");
    let _ = writeln!(
        md,
        "| workload | shape | requests | p50 | p90 | p99 | max | throughput (req/s) | errors | p50 range |\n|---|---|---|---|---|---|---|---|---|---|"
    );
    for w in &report.workloads {
        let s = Summary::of(&w.runs);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {}–{} |",
            w.label,
            w.shape,
            s.n + s.errors,
            f3(s.p50),
            f3(s.p90),
            f3(s.p99),
            f3(s.max),
            s.throughput,
            s.errors,
            f3(s.p50_range.0),
            f3(s.p50_range.1)
        );
    }
    let _ = writeln!(md, "\nLatencies in ms.");
    let mut groups: Vec<&str> = report.workloads.iter().map(|w| w.group.as_str()).collect();
    groups.dedup();
    for group in groups {
        let series: Vec<(String, Vec<f64>)> = report
            .workloads
            .iter()
            .filter(|w| w.group == group)
            .map(|w| (w.label.clone(), sorted_ms(&w.runs)))
            .collect();
        let title = format!("{group}: latency CDF");
        let name = format!("cdf_{}.png", slug(group));
        if let Some(file) = plot(&name, &|path| crate::plot::cdf(path, &title, &series)) {
            let _ = writeln!(md, "\n![{title}]({file})");
        }
    }
    let errors: Vec<String> = report
        .workloads
        .iter()
        .filter_map(|w| {
            Summary::of(&w.runs)
                .first_error
                .map(|e| format!("- {}: {e}", w.label))
        })
        .collect();
    if !errors.is_empty() {
        let _ = writeln!(md, "\nFirst error of each workload that had errors:\n");
        for e in errors {
            let _ = writeln!(md, "{e}");
        }
    }

    // hello against the floors and the peer.
    if !report.hello.is_empty() {
        let _ = writeln!(md, "\n## `hello`: the platform, the floors and the peer\n");
        let _ = writeln!(
            md,
            "{} requests per client after {} warm-up requests each.\n",
            p.hello_requests, p.hello_warmup
        );
        let _ = writeln!(
            md,
            "| path | clients | p50 | p90 | p99 | max | req/s | errors | p50 / in-process floor | p50 / network floor |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for (label, c, runs) in &report.hello {
            let s = Summary::of(runs);
            let ratio = |prefix: &str| {
                report
                    .hello_summary(prefix, *c)
                    .filter(|f| !f.p50.is_zero())
                    .map(|f| format!("{:.1}×", ms(s.p50) / ms(f.p50)))
                    .unwrap_or_else(|| "–".into())
            };
            let _ = writeln!(
                md,
                "| {label} | {c} | {} | {} | {} | {} | {:.0} | {} | {} | {} |",
                f3(s.p50),
                f3(s.p90),
                f3(s.p99),
                f3(s.max),
                s.throughput,
                s.errors,
                ratio("in-process"),
                ratio("network floor")
            );
        }
        for c in [1, 4] {
            let series: Vec<(String, Vec<f64>)> = report
                .hello
                .iter()
                .filter(|(_, cc, _)| *cc == c)
                .map(|(l, _, runs)| (l.clone(), sorted_ms(runs)))
                .collect();
            let title = format!("hello, {c} client(s): latency CDF");
            let name = format!("cdf_hello_c{c}.png");
            if let Some(file) = plot(&name, &|path| crate::plot::cdf(path, &title, &series)) {
                let _ = writeln!(md, "\n![{title}]({file})");
            }
        }
    }

    if !report.throughput.is_empty() {
        let _ = writeln!(md, "\n## Throughput: `hello` at concurrency 64\n");
        let _ = writeln!(
            md,
            "64 clients sending back to back for {} s after {} s of warm-up, per run.\n",
            p.throughput.as_secs_f64(),
            p.throughput_warmup.as_secs_f64()
        );
        let _ = writeln!(
            md,
            "| path | req/s (mean of runs) | lowest–highest run | p50 | p99 | max | errors |\n|---|---|---|---|---|---|---|"
        );
        for (label, runs) in &report.throughput {
            let s = Summary::of(runs);
            let lo = runs
                .iter()
                .map(Run::throughput)
                .fold(f64::INFINITY, f64::min);
            let hi = runs.iter().map(Run::throughput).fold(0.0, f64::max);
            let _ = writeln!(
                md,
                "| {label} | {:.0} | {:.0}–{:.0} | {} | {} | {} | {} |",
                s.throughput,
                lo,
                hi,
                f3(s.p50),
                f3(s.p99),
                f3(s.max),
                s.errors
            );
        }
    }

    if let Some(memory) = &report.memory {
        let (run, samples) = (&memory.run, &memory.samples);
        let s = run.summary();
        let _ = writeln!(
            md,
            "\n## Memory: `hellojs`, 4 clients invoking continuously\n"
        );
        let _ = writeln!(
            md,
            "On a Core and Worker started for this run alone (SQLite or the same database), \
             `hellojs` uploaded, then {} s of 4 clients; RSS (`VmRSS` of `/proc/<pid>/status`) \
             sampled every second; {} invocations ({:.0} req/s), p50 {} ms, p99 {} ms, {} \
             errors.\n",
            p.memory.as_secs_f64(),
            s.n + s.errors,
            s.throughput,
            f3(s.p50),
            f3(s.p99),
            s.errors
        );
        let _ = writeln!(
            md,
            "| process | idle (fresh, before the upload) | first sample | mean | peak | after the run |\n|---|---|---|---|---|---|"
        );
        for (name, pick, idle, last) in [
            (
                "funless-core",
                (|s: &(f64, u64, u64)| s.1) as fn(&(f64, u64, u64)) -> u64,
                memory.idle.0,
                memory.after.0,
            ),
            ("funless-worker", |s| s.2, memory.idle.1, memory.after.1),
        ] {
            let values: Vec<u64> = samples.iter().map(pick).collect();
            let mean = values.iter().sum::<u64>() / values.len().max(1) as u64;
            let _ = writeln!(
                md,
                "| {name} | {} MB | {} MB | {} MB | {} MB | {} MB |",
                mb(idle),
                mb(values.first().copied().unwrap_or_default()),
                mb(mean),
                mb(values.iter().max().copied().unwrap_or_default()),
                mb(last)
            );
        }
        let points: Vec<(f64, f64, f64)> = samples
            .iter()
            .map(|(t, c, w)| (*t, *c as f64 / MB, *w as f64 / MB))
            .collect();
        let title = "hellojs: RSS over time (4 clients)";
        if let Some(file) = plot("memory_hellojs.png", &|path| {
            crate::plot::memory(path, title, &points)
        }) {
            let _ = writeln!(md, "\n![{title}]({file})");
        }
    }

    let _ = writeln!(md, "\n## Artifact sizes\n");
    let _ = writeln!(
        md,
        "| function | file (under examples/) | bytes |\n|---|---|---|"
    );
    for (function, file, bytes) in &report.artifacts {
        let _ = writeln!(md, "| {function} | `{file}` | {bytes} |");
    }

    let _ = writeln!(md, "\n## Skipped\n");
    if report.skipped.is_empty() {
        let _ = writeln!(md, "Nothing.");
    } else {
        let _ = writeln!(md, "| what | why |\n|---|---|");
        for (what, why) in &report.skipped {
            let _ = writeln!(
                md,
                "| {what} | {} |",
                why.replace('\n', " ").replace('|', "\\|")
            );
        }
    }
    if !plot_errors.is_empty() {
        let _ = writeln!(md, "\nPlots that failed: {}", plot_errors.join("; "));
    }
    let path = out.join("report.md");
    std::fs::write(&path, &md).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(Duration::ZERO), "1970-01-01 00:00 UTC");
        assert_eq!(
            utc(Duration::from_secs(1_709_208_000)),
            "2024-02-29 12:00 UTC"
        );
    }
}
