//! `fl svc ...`: long-running services (create, list, get, delete, logs with `-f`).

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use funless_api::types::{ServiceInfo, ServiceLogLine, ServiceSpecRequest};

use crate::client::Client;
use crate::output;

/// How often `fl svc logs -f` asks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// `fl svc ...`
#[derive(Debug, Subcommand)]
pub(crate) enum SvcCommand {
    /// Upload a service (a WASI command .wasm, a wasi:cli/run component, or a .js file whose
    /// main runs until it returns) and start it
    Create {
        /// Service name
        #[arg(value_parser = parse_name)]
        name: String,
        /// The program
        file: PathBuf,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// Replace a service's program and/or spec (the options given replace the whole spec);
    /// its replicas restart one at a time, and a failed service runs again
    Update {
        /// Service name
        name: String,
        /// The new program (default: keep it)
        file: Option<PathBuf>,
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// List the services
    List,
    /// Show a service and each replica's state
    Get {
        /// Service name
        name: String,
    },
    /// Stop every replica and delete the service
    Delete {
        /// Service name
        name: String,
    },
    /// Print the newest output lines of a service's replicas
    Logs {
        /// Service name
        name: String,
        /// How many lines per replica (1 to 1000)
        #[arg(long, default_value_t = 100)]
        lines: usize,
        /// Keep printing new lines as they come
        #[arg(short, long)]
        follow: bool,
    },
}

/// A service's child spec on the command line.
#[derive(Debug, Args)]
pub(crate) struct SpecArgs {
    /// permanent (always restarted), transient (only after an abnormal exit) or temporary
    /// (never)
    #[arg(long, value_parser = ["permanent", "transient", "temporary"])]
    restart: Option<String>,
    /// How many copies run, on different workers when possible
    #[arg(long)]
    replicas: Option<u32>,
    /// Most restarts within --period-ms before the service is failed
    #[arg(long)]
    max_restarts: Option<u32>,
    /// The window of --max-restarts, milliseconds
    #[arg(long)]
    period_ms: Option<u64>,
    /// First restart delay of a replica, milliseconds (doubling, up to 30 s)
    #[arg(long)]
    backoff_ms: Option<u64>,
    /// Memory per replica, bytes
    #[arg(long)]
    memory_bytes: Option<u64>,
    /// A host (or host:port) the program may reach; repeat for more
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<String>,
    /// An environment variable of the program, KEY=VALUE; repeat for more
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse_env)]
    env: Vec<(String, String)>,
    /// How long a stopping replica may take to end after its stdin closes, milliseconds
    #[arg(long)]
    stop_grace_ms: Option<u64>,
    /// Run only on workers with this name or --tag
    #[arg(long)]
    tag: Option<String>,
}

impl SpecArgs {
    /// The spec the options give; `None` when none was given.
    fn request(self) -> Option<ServiceSpecRequest> {
        let request = ServiceSpecRequest {
            restart: self.restart,
            max_restarts: self.max_restarts,
            period_ms: self.period_ms,
            backoff_ms: self.backoff_ms,
            replicas: self.replicas,
            memory_bytes: self.memory_bytes,
            allow_hosts: (!self.allow_hosts.is_empty()).then_some(self.allow_hosts),
            env: (!self.env.is_empty()).then(|| self.env.into_iter().collect::<BTreeMap<_, _>>()),
            stop_grace_ms: self.stop_grace_ms,
            tag: self.tag,
        };
        (request != ServiceSpecRequest::default()).then_some(request)
    }
}

/// The program in `file`, with its file name.
fn program(file: &Path) -> Result<(Vec<u8>, String)> {
    let code = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let file_name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "service.wasm".into());
    Ok((code, file_name))
}

fn parse_name(s: &str) -> Result<String, String> {
    funless_api::names::validate("the", s).map(|()| s.to_string())
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

/// Runs an `fl svc` command.
pub(crate) async fn run(
    client: &Client,
    json: bool,
    command: SvcCommand,
    out: &mut dyn Write,
) -> Result<()> {
    match command {
        SvcCommand::Create { name, file, spec } => {
            let (code, file_name) = program(&file)?;
            let spec = spec.request().unwrap_or_default();
            let reply = client.create_service(&name, code, file_name, &spec).await?;
            output::reply(out, json, &reply, |out, info| {
                writeln!(out, "created service {}", info.name)?;
                service(out, &info)
            })
        }
        SvcCommand::Update { name, file, spec } => {
            let code = file.as_deref().map(program).transpose()?;
            let spec = spec.request();
            if code.is_none() && spec.is_none() {
                anyhow::bail!("give a new program file, spec options, or both");
            }
            let reply = client.update_service(&name, code, spec.as_ref()).await?;
            output::reply(out, json, &reply, |out, info| {
                writeln!(
                    out,
                    "updated service {} (its replicas restart one at a time)",
                    info.name
                )?;
                service(out, &info)
            })
        }
        SvcCommand::List => {
            let reply = client.list_services().await?;
            output::reply(out, json, &reply, |out, list| {
                for info in list {
                    let running = info
                        .replicas
                        .iter()
                        .filter(|r| r.state == "running")
                        .count();
                    writeln!(
                        out,
                        "{}  {}  {running}/{} running  {}",
                        info.name,
                        info.state,
                        info.replicas.len(),
                        info.spec.restart
                    )?;
                }
                Ok(())
            })
        }
        SvcCommand::Get { name } => {
            let reply = client.get_service(&name).await?;
            output::reply(out, json, &reply, |out, info| service(out, &info))
        }
        SvcCommand::Delete { name } => {
            let reply = client.delete_service(&name).await?;
            if json {
                output::raw(out, &reply.body)?;
            } else {
                writeln!(out, "deleted service {name}")?;
            }
            Ok(())
        }
        SvcCommand::Logs {
            name,
            lines,
            follow,
        } => {
            let mut seen: HashSet<(String, u32, u64, String)> = HashSet::new();
            loop {
                let reply = client.service_logs(&name, lines).await?;
                if json && !follow {
                    output::raw(out, &reply.body)?;
                    return Ok(());
                }
                for line in reply.data()? {
                    let key = (
                        line.worker.clone(),
                        line.replica,
                        line.at_ms,
                        line.line.clone(),
                    );
                    if seen.insert(key) {
                        log_line(out, &line)?;
                    }
                }
                out.flush()?;
                if !follow {
                    return Ok(());
                }
                // Bounded memory while following: old keys can only repeat within one window.
                if seen.len() > 100_000 {
                    seen.clear();
                }
                tokio::time::sleep(FOLLOW_EVERY).await;
            }
        }
    }
}

fn service(out: &mut dyn Write, info: &ServiceInfo) -> std::io::Result<()> {
    writeln!(out, "name:     {}", info.name)?;
    writeln!(out, "state:    {}", info.state)?;
    if let Some(reason) = &info.reason {
        writeln!(out, "reason:   {reason}")?;
    }
    writeln!(
        out,
        "spec:     {} restart, {} replicas, at most {} restarts in {} ms, back-off {} ms, {} bytes",
        info.spec.restart,
        info.spec.replicas,
        info.spec.max_restarts,
        info.spec.period_ms,
        info.spec.backoff_ms,
        info.spec.memory_bytes
    )?;
    writeln!(
        out,
        "code:     {} ({}, {} bytes)",
        info.hash, info.abi, info.size
    )?;
    for replica in &info.replicas {
        let uptime = replica
            .uptime_ms
            .map(|ms| format!(", up {:.1} s", ms as f64 / 1000.0))
            .unwrap_or_default();
        let exit = replica
            .last_exit
            .as_deref()
            .map(|e| format!(", last exit: {e}"))
            .unwrap_or_default();
        writeln!(
            out,
            "replica {}: {} on {}, {} restarts{uptime}{exit}",
            replica.index,
            replica.state,
            replica.worker.as_deref().unwrap_or("-"),
            replica.restarts
        )?;
    }
    Ok(())
}

fn log_line(out: &mut dyn Write, line: &ServiceLogLine) -> std::io::Result<()> {
    writeln!(
        out,
        "[{}.{} {}] {}",
        line.worker, line.replica, line.stream, line.line
    )
}
