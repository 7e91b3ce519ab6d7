//! Settings of the node binaries from three places, in this order of precedence: flags, then
//! environment variables (`FUNLESS_*`, as each flag documents), then a TOML file
//! (`--config FILE` or `FUNLESS_CONFIG`), then the built-in defaults. The file uses the flags'
//! long names (`heartbeat-timeout-ms = 3000` or `heartbeat_timeout_ms = 3000`; lists for
//! repeatable flags; `true` for switches), so one list of flags documents all three, and clap
//! validates file values exactly as it validates flags.
//!
//! `--print-config` prints the effective settings as TOML, each with where it came from, and
//! exits; secrets (the cookie) are masked.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

/// Settings that are never printed.
const SECRETS: &[&str] = &["cookie"];
/// Arguments that are about loading settings, not settings.
const META: &[&str] = &["config", "print_config", "help", "version"];

/// The root supervisor's restart intensity, the same flags on the Core and the worker.
#[derive(Debug, Clone, clap::Args)]
pub struct RestartFlags {
    /// Restart intensity of the root supervisor: more than this many restarts within
    /// --restart-period-secs and the process gives up and exits with code 1 (OTP's
    /// intensity).
    #[arg(long, env = "FUNLESS_RESTART_INTENSITY", default_value_t = 5)]
    pub restart_intensity: usize,
    /// The window of --restart-intensity, seconds (OTP's period).
    #[arg(long, env = "FUNLESS_RESTART_PERIOD_SECS", default_value_t = 30)]
    pub restart_period_secs: u64,
}

impl RestartFlags {
    /// The supervisor's intensity these flags give (a period of at least a second).
    pub fn intensity(&self) -> crate::supervisor::Intensity {
        crate::supervisor::Intensity {
            max_restarts: self.restart_intensity,
            within: std::time::Duration::from_secs(self.restart_period_secs.max(1)),
        }
    }
}

/// Threads of a node's runtimes, the same flags on the Core and the worker.
#[derive(Debug, Clone, clap::Args)]
pub struct ThreadFlags {
    /// Threads of the node's own runtime: HTTP, actors, cluster sessions, and every
    /// invocation until its guest computes past its first time slice (1 ms). Default: one, so
    /// that a short call stays on one thread end to end in each process. A Core with its
    /// embedded worker has two such runtimes, the Core's and the worker's, of this many
    /// threads each (docs/BENCHMARKS.md, "Runtime threads").
    #[arg(long, env = "FUNLESS_IO_THREADS")]
    pub io_threads: Option<usize>,
    /// Threads of the worker's compute pool (the worker's, or the Core's embedded worker's):
    /// guests that compute past their first time slice, and services' replicas. Default: one
    /// per core; 0: no pool (guests stay on the node's runtime).
    #[arg(long, env = "FUNLESS_COMPUTE_THREADS")]
    pub compute_threads: Option<usize>,
}

impl ThreadFlags {
    /// A node's own runtime, threads named `name`: --io-threads threads, else one.
    pub fn node_runtime(&self, name: &str) -> std::io::Result<tokio::runtime::Runtime> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.io_threads.unwrap_or(1).max(1))
            .thread_name(name)
            .enable_all()
            .build()
    }
}

/// One per core, the default size of thread pools that share the machine's CPUs.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Egress of functions, shared by the worker and the Core's embedded worker.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct EgressFlags {
    /// Hosts that functions declaring no `allow_hosts` may reach (`host`, `host:port`, `*` for
    /// any host, `*:443` for any host on one port; repeat or comma-separate). A function's own
    /// `allow_hosts` replaces this list. Default: none (no egress).
    #[arg(
        long = "allow-hosts",
        env = "FUNLESS_ALLOW_HOSTS",
        value_delimiter = ','
    )]
    pub allow_hosts: Vec<String>,
    /// A PEM file of extra CA certificates that functions' HTTPS requests trust, besides the
    /// built-in web roots (repeat for several).
    #[arg(long = "egress-ca", env = "FUNLESS_EGRESS_CA", value_delimiter = ',')]
    pub egress_ca: Vec<PathBuf>,
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file cannot be read or is not TOML.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A flag, variable or file value is invalid (clap's message, or `--help`'s text).
    #[error(transparent)]
    Clap(#[from] clap::Error),
}

/// Parsed settings and how to print them.
#[derive(Debug)]
pub struct Loaded<T> {
    /// The settings.
    pub args: T,
    /// Whether `--print-config` was given.
    pub print: bool,
    /// The effective settings as TOML with their sources.
    pub report: String,
}

/// Parses the process's arguments (see the module doc). `T` must have `config:
/// Option<PathBuf>` and `print_config: bool` arguments.
pub fn load<T: CommandFactory + FromArgMatches>() -> Result<Loaded<T>, SettingsError> {
    load_from::<T>(std::env::args_os().collect())
}

/// [`load`] for a binary's `main`: `--help`, `--version`, invalid flags and `--print-config`
/// print and exit the process here; a bad config file is returned as an error.
pub fn load_or_exit<T: CommandFactory + FromArgMatches>() -> Result<T, SettingsError> {
    use std::io::Write as _;
    match load::<T>() {
        Ok(loaded) if loaded.print => {
            let mut out = std::io::stdout();
            let written = out
                .write_all(loaded.report.as_bytes())
                .and_then(|()| out.flush());
            std::process::exit(i32::from(written.is_err()))
        }
        Ok(loaded) => Ok(loaded.args),
        Err(SettingsError::Clap(e)) => e.exit(),
        Err(e) => Err(e),
    }
}

/// [`load`] over given arguments (the first is the program name).
pub fn load_from<T: CommandFactory + FromArgMatches>(
    argv: Vec<OsString>,
) -> Result<Loaded<T>, SettingsError> {
    let command = T::command();
    // First pass: only to find the file and what flags and variables set; required settings
    // may still be missing here (the file may provide them).
    let first = command
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&argv)?;
    let mut argv = argv;
    let mut from_file = HashSet::new();
    if let Some(path) = first.get_one::<PathBuf>("config") {
        for (id, flags) in file_flags(&command, &first, path)? {
            argv.extend(flags);
            from_file.insert(id);
        }
    }
    let matches = command.clone().try_get_matches_from(&argv)?;
    let args = T::from_arg_matches(&matches)?;
    Ok(Loaded {
        args,
        print: matches.get_flag("print_config"),
        report: report(&command, &matches, &from_file),
    })
}

/// The file's settings as flags, for those not already given by a flag or variable.
fn file_flags(
    command: &clap::Command,
    matches: &ArgMatches,
    path: &Path,
) -> Result<Vec<(String, Vec<OsString>)>, SettingsError> {
    let file_error = |message: String| SettingsError::File {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| file_error(e.to_string()))?;
    let mut out = Vec::new();
    for (key, value) in table {
        // By the flag's long name (`tag`), or its field name (`tags`), dashes or underscores.
        let dashed = key.replace('_', "-");
        let arg = command
            .get_arguments()
            .find(|a| {
                a.get_long() == Some(dashed.as_str())
                    || (a.get_long().is_some() && a.get_id() == key.replace('-', "_").as_str())
            })
            .filter(|a| !META.contains(&a.get_id().as_str()))
            .ok_or_else(|| file_error(format!("unknown setting {key:?}")))?;
        let id = arg.get_id().to_string();
        if matches!(
            matches.value_source(&id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let long = arg.get_long().unwrap_or(id.as_str()).to_string();
        let values = match value {
            toml::Value::Boolean(false) => continue,
            toml::Value::Boolean(true) => {
                out.push((id, vec![OsString::from(format!("--{long}"))]));
                continue;
            }
            toml::Value::Array(items) => {
                items.into_iter().map(scalar).collect::<Result<Vec<_>, _>>()
            }
            other => scalar(other).map(|v| vec![v]),
        }
        .map_err(|e| file_error(format!("{key}: {e}")))?;
        out.push((
            id,
            values
                .into_iter()
                .map(|v| OsString::from(format!("--{long}={v}")))
                .collect(),
        ));
    }
    Ok(out)
}

fn scalar(value: toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(s) => Ok(s),
        toml::Value::Integer(i) => Ok(i.to_string()),
        toml::Value::Float(f) => Ok(f.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!("{other} is not a string, number or boolean")),
    }
}

/// The effective settings as TOML, one per line with its source as a comment.
fn report(command: &clap::Command, matches: &ArgMatches, from_file: &HashSet<String>) -> String {
    let mut out = String::new();
    for arg in command.get_arguments() {
        let id = arg.get_id().as_str();
        let Some(long) = arg.get_long() else { continue };
        if META.contains(&id) {
            continue;
        }
        let source = if from_file.contains(id) {
            "file"
        } else {
            match matches.value_source(id) {
                Some(ValueSource::CommandLine) => "flag",
                Some(ValueSource::EnvVariable) => "environment",
                Some(ValueSource::DefaultValue) => "default",
                _ => "unset",
            }
        };
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|raw| {
                raw.map(|v| v.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let shown = if SECRETS.contains(&id) && !values.is_empty() {
            "\"(set; not shown)\"".to_string()
        } else if arg.get_num_args().is_some_and(|n| n.max_values() == 0) {
            // A switch: present or not.
            (source != "unset" && source != "default").to_string()
        } else if values.is_empty() {
            "# (none)".to_string()
        } else if values.len() == 1 && !matches!(arg.get_action(), clap::ArgAction::Append) {
            toml_scalar(&values[0])
        } else {
            format!(
                "[{}]",
                values
                    .iter()
                    .map(|v| toml_scalar(v))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        if shown.starts_with('#') {
            let _ = writeln!(out, "# {long} = (none)  # {source}");
        } else {
            let _ = writeln!(out, "{long} = {shown}  # {source}");
        }
    }
    out
}

fn toml_scalar(value: &str) -> String {
    if value.parse::<i64>().is_ok() || value == "true" || value == "false" {
        value.to_string()
    } else {
        toml::Value::String(value.to_string()).to_string()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Args {
        #[arg(long, env = "FUNLESS_TEST_CONFIG")]
        config: Option<PathBuf>,
        #[arg(long)]
        print_config: bool,
        #[arg(long, env = "FUNLESS_TEST_TIMEOUT_MS", default_value_t = 3000)]
        timeout_ms: u64,
        #[arg(long, default_value = "127.0.0.1:4000")]
        listen: String,
        #[arg(long)]
        tag: Vec<String>,
        #[arg(long)]
        embedded: bool,
        #[arg(long)]
        cookie: Option<String>,
        #[arg(long)]
        core: String,
    }

    fn load(file: &str, flags: &[&str]) -> Result<Loaded<Args>, SettingsError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("funless.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv: Vec<OsString> = vec!["prog".into(), "--config".into(), path.into()];
        if !file.contains("core =") {
            argv.push("--core=127.0.0.1:1".into());
        }
        argv.extend(flags.iter().map(OsString::from));
        load_from::<Args>(argv)
    }

    #[test]
    fn file_values_fill_in_and_flags_win() {
        let file = "timeout-ms = 500\nlisten = \"0.0.0.0:9\"\ntag = [\"pi\", \"gpu\"]\nembedded = true\ncookie = \"s3cret\"\n";
        let loaded = load(file, &["--listen", "127.0.0.1:1"]).unwrap();
        assert_eq!(loaded.args.timeout_ms, 500);
        assert_eq!(loaded.args.listen, "127.0.0.1:1");
        assert_eq!(loaded.args.tag, vec!["pi", "gpu"]);
        assert!(loaded.args.embedded);
        let report = loaded.report;
        assert!(report.contains("timeout-ms = 500  # file"), "{report}");
        assert!(
            report.contains("listen = \"127.0.0.1:1\"  # flag"),
            "{report}"
        );
        assert!(
            report.contains("tag = [\"pi\", \"gpu\"]  # file"),
            "{report}"
        );
        assert!(!report.contains("s3cret"), "{report}");
        let defaults = load("", &[]).unwrap();
        assert!(defaults.report.contains("timeout-ms = 3000  # default"));
        assert!(defaults.report.contains("embedded = false  # default"));
    }

    #[derive(Debug, Parser)]
    struct WithEgress {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        print_config: bool,
        #[command(flatten)]
        egress: EgressFlags,
    }

    #[test]
    fn egress_defaults_come_from_flags_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("funless.toml");
        std::fs::write(&path, "allow-hosts = [\"*:443\", \"10.0.0.5\"]\n").unwrap();
        let argv = |extra: &[&str]| {
            let mut argv: Vec<OsString> =
                vec!["prog".into(), "--config".into(), path.clone().into()];
            argv.extend(extra.iter().map(OsString::from));
            argv
        };
        let from_file = load_from::<WithEgress>(argv(&[])).unwrap();
        assert_eq!(from_file.args.egress.allow_hosts, ["*:443", "10.0.0.5"]);
        let flags =
            load_from::<WithEgress>(argv(&["--allow-hosts", "a.example,b.example:80"])).unwrap();
        assert_eq!(flags.args.egress.allow_hosts, ["a.example", "b.example:80"]);
        assert!(flags.args.egress.egress_ca.is_empty());
    }

    #[test]
    fn a_required_setting_may_come_from_the_file() {
        let loaded = load("core = \"10.0.0.1:4369\"\n", &[]).unwrap();
        assert_eq!(loaded.args.core, "10.0.0.1:4369");
    }

    #[test]
    fn bad_files_are_refused_with_the_reason() {
        let unknown = load("timout-ms = 5\n", &[]).unwrap_err().to_string();
        assert!(
            unknown.contains("unknown setting \"timout-ms\""),
            "{unknown}"
        );
        let invalid = load("timeout-ms = \"soon\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(invalid.contains("soon"), "{invalid}");
        let broken = load("timeout-ms = \n", &[]).unwrap_err().to_string();
        assert!(broken.contains("config file"), "{broken}");
    }
}
