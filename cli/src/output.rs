//! What `fl` prints on stdout: a readable line per item by default, or the server's body as is
//! with `--json`. Everything writes to a `Write` (not `println!`), so a closed pipe is an error
//! that `main` can handle and the printers can be tested.

use std::io::{self, Write};

use funless_api::types::{
    ActivationInfo, ActivationStatus, ActorNode, BroadcastReport, CanaryInfo, ClusterTree,
    ConfigInfo, ConnectorInfo, CreatedSubject, DEFAULT_CAPACITY_BYTES, FunctionCreated,
    FunctionInfo, ModuleInfo, Named, VersionInfo,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::client::Reply;

/// Prints `reply`: its body as is with `json`, else its payload through `readable`.
pub(crate) fn reply<T: DeserializeOwned>(
    out: &mut dyn Write,
    json: bool,
    reply: &Reply<T>,
    readable: impl FnOnce(&mut dyn Write, T) -> io::Result<()>,
) -> anyhow::Result<()> {
    if json {
        raw(out, &reply.body)?;
    } else {
        readable(out, reply.data()?)?;
    }
    Ok(())
}

/// The body as received, newline-terminated; nothing for an empty body (204).
pub(crate) fn raw(out: &mut dyn Write, body: &str) -> io::Result<()> {
    if body.is_empty() {
        return Ok(());
    }
    out.write_all(body.as_bytes())?;
    if !body.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// One name per line.
pub(crate) fn names(out: &mut dyn Write, names: &[Named]) -> io::Result<()> {
    for named in names {
        writeln!(out, "{}", named.name)?;
    }
    Ok(())
}

/// FunLess's `--count` line, when asked for.
pub(crate) fn count(out: &mut dyn Write, wanted: bool, n: usize) -> io::Result<()> {
    if wanted {
        writeln!(out, "Count: {n}")?;
    }
    Ok(())
}

/// A module and its functions.
pub(crate) fn module(out: &mut dyn Write, module: &ModuleInfo) -> io::Result<()> {
    writeln!(out, "module: {}", module.name)?;
    if module.functions.is_empty() {
        writeln!(out, "functions: none")
    } else {
        writeln!(out, "functions:")?;
        for function in &module.functions {
            writeln!(out, "  {}", function.name)?;
        }
        Ok(())
    }
}

/// A function's details.
pub(crate) fn function(out: &mut dyn Write, info: &FunctionInfo) -> io::Result<()> {
    writeln!(out, "name: {}", info.name)?;
    writeln!(out, "module: {}", info.module)?;
    if info.version > 0 {
        writeln!(out, "version: {}", info.version)?;
    }
    writeln!(out, "hash: {}", info.hash)?;
    writeln!(out, "abi: {}", info.abi.as_str())?;
    writeln!(out, "size: {} bytes", info.size)?;
    let capacity = info.metadata.capacity.unwrap_or(DEFAULT_CAPACITY_BYTES);
    writeln!(out, "capacity: {capacity} bytes ({} MiB)", capacity >> 20)?;
    if let Some(ms) = info.metadata.timeout_ms {
        writeln!(out, "timeout: {ms} ms")?;
    }
    if info.metadata.retryable == Some(false) {
        writeln!(out, "retryable: no")?;
    }
    if let Some(tag) = &info.metadata.tag {
        writeln!(out, "tag: {tag}")?;
    }
    if let Some(canary) = &info.canary {
        writeln!(
            out,
            "canary: version {} gets {}% of invocations",
            canary.version, canary.percent
        )?;
    }
    writeln!(out, "created: {}", info.created_at)?;
    writeln!(out, "updated: {}", info.updated_at)?;
    connectors(out, &info.connectors)?;
    for sink in &info.sinks {
        writeln!(
            out,
            "sink: {} {}: {} delivered, {} pending, {} failed attempts, {} dropped{}",
            sink.kind,
            sink.url,
            sink.delivered,
            sink.pending,
            sink.failed_attempts,
            sink.dropped,
            sink.last_error
                .as_deref()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        )?;
    }
    Ok(())
}

/// Event connectors, one line each.
fn connectors(out: &mut dyn Write, list: &[ConnectorInfo]) -> io::Result<()> {
    for c in list {
        let state = if c.connected {
            "connected".to_string()
        } else {
            format!(
                "not connected ({})",
                c.last_error.as_deref().unwrap_or("connecting")
            )
        };
        writeln!(
            out,
            "event: {}: {state}, {} messages, {} reconnects",
            c.source, c.messages, c.reconnects
        )?;
    }
    Ok(())
}

/// The answer of a function create or update (`verb` is "created" or "updated").
pub(crate) fn function_created(
    out: &mut dyn Write,
    verb: &str,
    module: &str,
    created: &FunctionCreated,
) -> io::Result<()> {
    writeln!(out, "{verb} function {module}/{}", created.name)?;
    if let Some(canary) = &created.canary {
        writeln!(
            out,
            "canary: version {} gets {}% of invocations (the current version the rest)",
            canary.version, canary.percent
        )?;
    } else if created.version > 0 {
        writeln!(out, "version: {}", created.version)?;
    }
    writeln!(out, "hash: {}", created.hash)?;
    writeln!(out, "abi: {}", created.abi.as_str())?;
    broadcast(out, &created.workers)?;
    connectors(out, created.events.as_deref().unwrap_or_default())
}

fn broadcast(out: &mut dyn Write, report: &BroadcastReport) -> io::Result<()> {
    if !report.waited {
        writeln!(
            out,
            "workers: not waited for (the code is sent to them in the background)"
        )?;
    } else if report.cached.is_empty() && report.failed.is_empty() {
        writeln!(
            out,
            "workers: none connected (the code is sent when a worker needs it)"
        )?;
    }
    if !report.cached.is_empty() {
        writeln!(out, "cached by: {}", report.cached.join(", "))?;
    }
    for failure in &report.failed {
        writeln!(out, "failed on {}: {}", failure.worker, failure.reason)?;
    }
    Ok(())
}

/// A configuration: `KEY=VALUE` lines of what invocations get, each inherited one marked.
pub(crate) fn config(out: &mut dyn Write, info: &ConfigInfo) -> io::Result<()> {
    if let Some(version) = info.version {
        writeln!(out, "version: {version}")?;
    }
    for (key, value) in &info.effective {
        let inherited = info
            .function
            .as_ref()
            .is_some_and(|own| !own.contains_key(key));
        let from = if inherited { " (from the module)" } else { "" };
        writeln!(out, "{key}={value}{from}")?;
    }
    for (key, secret) in &info.secrets {
        writeln!(out, "{key}: secret {secret}")?;
    }
    Ok(())
}

/// A function's kept versions, one line each, newest first.
pub(crate) fn versions(out: &mut dyn Write, list: &[VersionInfo]) -> io::Result<()> {
    for v in list {
        let mut line = format!(
            "{:>4}{} {} {} {} bytes {}",
            v.version,
            if v.current { "*" } else { " " },
            v.hash.get(..12).unwrap_or(&v.hash),
            v.abi.as_str(),
            v.size,
            v.created_at
        );
        if let Some(by) = &v.created_by {
            line.push_str(&format!(" by {by}"));
        }
        if let Some(of) = v.rollback_of {
            line.push_str(&format!(" (rollback to {of})"));
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// A function's canary and each version's invocations by outcome.
pub(crate) fn canary(out: &mut dyn Write, info: &CanaryInfo) -> io::Result<()> {
    writeln!(
        out,
        "canary: version {} gets {}% (current: version {}), since {}",
        info.version, info.percent, info.current, info.since
    )?;
    if info.versions.is_empty() {
        return writeln!(out, "no invocations yet");
    }
    for tally in &info.versions {
        let outcomes: Vec<String> = tally
            .outcomes
            .iter()
            .map(|(outcome, n)| format!("{outcome} {n}"))
            .collect();
        writeln!(
            out,
            "{:>4} {:<6} {} invocations: {}",
            tally.version,
            tally.track,
            tally.invocations,
            outcomes.join(", ")
        )?;
    }
    Ok(())
}

/// A function's output, pretty-printed.
pub(crate) fn value(out: &mut dyn Write, value: &Value) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// A new subject and its token.
pub(crate) fn created_subject(out: &mut dyn Write, subject: &CreatedSubject) -> io::Result<()> {
    writeln!(out, "name: {}", subject.name)?;
    writeln!(out, "token: {}", subject.token)
}

/// One activation record.
pub(crate) fn activation(out: &mut dyn Write, info: &ActivationInfo) -> io::Result<()> {
    writeln!(out, "activation: {}", info.activation_id)?;
    writeln!(out, "function: {}/{}", info.module, info.function)?;
    writeln!(out, "status: {}", status(info.status))?;
    writeln!(out, "started: {} (Unix ms)", info.started_at_ms)?;
    if let Some(ms) = info.duration_ms {
        writeln!(out, "duration: {ms:.2} ms")?;
    }
    if let Some(worker) = &info.worker {
        writeln!(out, "worker: {worker}")?;
    }
    if let Some(error) = &info.error {
        match &error.reason {
            Some(reason) => writeln!(out, "error ({reason}): {}", error.detail)?,
            None => writeln!(out, "error: {}", error.detail)?,
        }
    }
    if let Some(result) = &info.result {
        write!(out, "result: ")?;
        value(out, result)?;
    }
    if !info.logs.is_empty() {
        writeln!(out, "logs:")?;
        for line in &info.logs {
            writeln!(out, "  {line}")?;
        }
    }
    Ok(())
}

/// Activation records, one line each, newest first.
pub(crate) fn activations(out: &mut dyn Write, list: &[ActivationInfo]) -> io::Result<()> {
    for info in list {
        let duration = info
            .duration_ms
            .map(|ms| format!("{ms:.2} ms"))
            .unwrap_or_else(|| "-".into());
        writeln!(
            out,
            "{}  {:<7}  {:>10}  {}",
            info.activation_id,
            status(info.status),
            duration,
            info.worker.as_deref().unwrap_or("-")
        )?;
    }
    Ok(())
}

/// The Core's tree and each worker's, one actor a line, indented by depth.
pub(crate) fn cluster_tree(out: &mut dyn Write, tree: &ClusterTree) -> io::Result<()> {
    actor_tree(out, &tree.core, 0)?;
    for worker in &tree.workers {
        match (&worker.tree, &worker.error) {
            (Some(node), _) => actor_tree(out, node, 0)?,
            (None, error) => writeln!(
                out,
                "{} ({}): no tree: {}",
                worker.name,
                worker.state,
                error.as_deref().unwrap_or("unknown")
            )?,
        }
    }
    Ok(())
}

fn actor_tree(out: &mut dyn Write, node: &ActorNode, depth: usize) -> io::Result<()> {
    let strategy = node
        .strategy
        .as_deref()
        .map(|s| format!(" {s}"))
        .unwrap_or_default();
    let linked = if node.linked > 0 {
        format!(", {} linked", node.linked)
    } else {
        String::new()
    };
    writeln!(
        out,
        "{:indent$}{} [{}{}] {}, restarts {}, up {:.1} s{} - {}",
        "",
        node.name,
        node.kind,
        strategy,
        node.state,
        node.restarts,
        node.uptime_ms as f64 / 1000.0,
        linked,
        node.role,
        indent = depth * 2
    )?;
    for child in &node.children {
        actor_tree(out, child, depth + 1)?;
    }
    Ok(())
}

fn status(status: ActivationStatus) -> &'static str {
    match status {
        ActivationStatus::Running => "running",
        ActivationStatus::Success => "success",
        ActivationStatus::Error => "error",
    }
}

#[cfg(test)]
mod tests {
    use funless_api::types::{Abi, FunctionMetadata, WorkerFailure};
    use serde_json::json;

    use super::*;

    fn text(print: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
        let mut buf = Vec::new();
        print(&mut buf).expect("writes");
        String::from_utf8(buf).expect("utf-8")
    }

    fn created(workers: BroadcastReport) -> FunctionCreated {
        FunctionCreated {
            canary: None,
            events: None,
            sinks: None,
            name: "hello".into(),
            hash: "ab12".into(),
            abi: Abi::WasiCommand,
            version: 3,
            workers,
        }
    }

    #[test]
    fn function_created_lists_workers() {
        let report = BroadcastReport {
            waited: true,
            cached: vec!["w1".into(), "w2".into()],
            failed: vec![WorkerFailure {
                worker: "w3".into(),
                reason: "out of memory".into(),
            }],
        };
        assert_eq!(
            text(|out| function_created(out, "created", "_", &created(report))),
            "created function _/hello\nversion: 3\nhash: ab12\nabi: wasi_command\n\
             cached by: w1, w2\nfailed on w3: out of memory\n"
        );
        let none = text(|out| {
            function_created(
                out,
                "updated",
                "m",
                &created(BroadcastReport {
                    waited: true,
                    ..Default::default()
                }),
            )
        });
        assert!(none.starts_with("updated function m/hello\n"), "{none}");
        assert!(none.contains("workers: none connected"), "{none}");
        let no_wait =
            text(|out| function_created(out, "created", "_", &created(Default::default())));
        assert!(no_wait.contains("not waited for"), "{no_wait}");
    }

    #[test]
    fn function_shows_default_capacity() {
        let info = FunctionInfo {
            name: "f".into(),
            module: "_".into(),
            hash: "h".into(),
            abi: Abi::Funless,
            size: 10,
            metadata: FunctionMetadata::default(),
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-02T00:00:00Z".into(),
            canary: None,
            version: 2,
            connectors: Vec::new(),
            sinks: Vec::new(),
        };
        let shown = text(|out| function(out, &info));
        assert!(shown.contains("abi: funless\n"), "{shown}");
        assert!(shown.contains("version: 2\n"), "{shown}");
        assert!(
            shown.contains("capacity: 67108864 bytes (64 MiB)\n"),
            "{shown}"
        );
        assert!(!shown.contains("tag:"), "{shown}");
    }

    #[test]
    fn versions_mark_the_current_one() {
        let v = |version, current, rollback_of| VersionInfo {
            version,
            current,
            hash: "0123456789abcdef".into(),
            abi: Abi::WasiCommand,
            size: 5,
            created_at: "2026-01-01T00:00:00Z".into(),
            created_by: Some("ops".into()),
            rollback_of,
        };
        assert_eq!(
            text(|out| versions(out, &[v(3, true, Some(1)), v(2, false, None)])),
            "   3* 0123456789ab wasi_command 5 bytes 2026-01-01T00:00:00Z by ops (rollback to 1)\n\
             \x20  2  0123456789ab wasi_command 5 bytes 2026-01-01T00:00:00Z by ops\n"
        );
    }

    #[test]
    fn module_and_names() {
        let info = ModuleInfo {
            name: "m".into(),
            functions: vec![Named { name: "a".into() }, Named { name: "b".into() }],
        };
        assert_eq!(
            text(|out| module(out, &info)),
            "module: m\nfunctions:\n  a\n  b\n"
        );
        assert_eq!(text(|out| names(out, &info.functions)), "a\nb\n");
    }

    #[test]
    fn values_are_pretty_and_raw_is_newline_terminated() {
        assert_eq!(
            text(|out| value(out, &json!({"a": 1}))),
            "{\n  \"a\": 1\n}\n"
        );
        assert_eq!(text(|out| raw(out, "{\"a\":1}")), "{\"a\":1}\n");
        assert_eq!(text(|out| raw(out, "")), "");
    }

    #[test]
    fn canary_lists_each_version_by_outcome() {
        let mut info = CanaryInfo {
            version: 2,
            percent: 10,
            current: 1,
            since: "2026-01-01T00:00:00Z".into(),
            versions: Vec::new(),
        };
        assert_eq!(
            text(|out| canary(out, &info)),
            "canary: version 2 gets 10% (current: version 1), since 2026-01-01T00:00:00Z\n\
             no invocations yet\n"
        );
        let tally =
            |version, track: &str, outcomes: &[(&str, u64)]| funless_api::types::CanaryTally {
                version,
                track: track.into(),
                invocations: outcomes.iter().map(|(_, n)| n).sum(),
                outcomes: outcomes.iter().map(|(o, n)| (o.to_string(), *n)).collect(),
            };
        info.versions = vec![
            tally(1, "stable", &[("ok", 90)]),
            tally(2, "canary", &[("function_error", 3), ("ok", 7)]),
        ];
        assert_eq!(
            text(|out| canary(out, &info)),
            "canary: version 2 gets 10% (current: version 1), since 2026-01-01T00:00:00Z\n   \
             1 stable 90 invocations: ok 90\n   \
             2 canary 10 invocations: function_error 3, ok 7\n"
        );
    }
}
