//! The command line: clap definitions of `fl`'s global options and subcommands, plus the value
//! parsers that turn bad input into usage errors (exit code 2) before any request is made.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value};

/// The default module, which always exists.
pub(crate) const DEFAULT_MODULE: &str = "_";

/// `fl`: the command-line client of FunLess.
#[derive(Debug, Parser)]
#[command(name = "fl", version, about, propagate_version = true)]
pub(crate) struct Cli {
    /// Options valid before or after any subcommand.
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Global options. Each falls back to the config file (`fl config`), then to a default.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// URL of the FunLess Core's API, or host:port; several Cores' comma-separated (fl tries
    /// the next on a connection error) [config: host] [default: http://127.0.0.1:4000]
    #[arg(short = 'H', long, env = "FL_HOST", global = true, value_name = "URL")]
    pub(crate) host: Option<String>,
    /// Bearer token [config: token; admin commands: admin_token]
    #[arg(
        long,
        env = "FL_TOKEN",
        global = true,
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub(crate) token: Option<String>,
    /// Print the server's JSON answer as it is (for scripts). On `fn invoke`, `--json` followed
    /// by a JSON object is FunLess's `--json ARGS` (the function's arguments) instead
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// The command groups, as in FunLess.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Functions: upload, invoke, inspect, delete
    #[command(name = "fn", subcommand)]
    Fn(FnCommand),
    /// Modules (namespaces of functions)
    #[command(name = "mod", subcommand)]
    Mod(ModCommand),
    /// Administration (needs an admin token)
    #[command(subcommand, visible_alias = "a")]
    Admin(AdminCommand),
    /// APP scheduling scripts (create and delete need an admin token)
    #[command(subcommand)]
    App(AppCommand),
    /// Records of invocations: result, error, timing, worker, logs
    #[command(subcommand)]
    Activation(ActivationCommand),
    /// Long-running services kept alive under a child spec (restart, intensity, replicas)
    #[command(subcommand)]
    Svc(crate::svc::SvcCommand),
    /// Secrets: named values, write-only, that functions' settings refer to
    /// (`fl fn config set NAME --secret KEY=SECRET`)
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Read or write the config file (~/.fl/config, or $FL_CONFIG)
    #[command(subcommand, visible_aliases = ["cfg", "c"])]
    Config(ConfigCommand),
}

/// `fl secret ...`
#[derive(Debug, Subcommand)]
pub(crate) enum SecretCommand {
    /// Create a secret, or rotate it (functions referring to it get the new value from their
    /// next invocation); the value is read from standard input unless --value gives it
    #[command(visible_aliases = ["c", "set"])]
    Create {
        /// Secret name (letters, digits and '_')
        #[arg(value_parser = parse_name)]
        name: String,
        /// The value (it then shows in the shell's history and the process list: prefer
        /// standard input)
        #[arg(long)]
        value: Option<String>,
    },
    /// List your secrets (names and times; values are never shown)
    #[command(visible_aliases = ["l", "ls"])]
    List,
    /// Delete a secret
    #[command(visible_aliases = ["d", "rm"])]
    Delete {
        /// Secret name
        #[arg(value_parser = parse_name)]
        name: String,
    },
}

/// `fl activation ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ActivationCommand {
    /// Show an activation: status, result or error, timing, worker, logs
    Get {
        /// Activation id (from `fl fn invoke --async`, or the x-funless-activation-id header)
        id: String,
    },
    /// Print only an activation's log lines
    Logs {
        /// Activation id
        id: String,
    },
    /// The newest activations of a function
    List {
        #[command(flatten)]
        target: FnTarget,
        /// How many (1 to 200)
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

/// `fl app ...`
#[derive(Debug, Subcommand)]
pub(crate) enum AppCommand {
    /// Upload an APP script (YAML), checked by the server
    Create {
        /// Script name
        #[arg(value_parser = parse_name)]
        name: String,
        /// The YAML file
        file: PathBuf,
    },
    /// List the scripts
    List,
    /// Show a script's YAML
    Get {
        /// Script name
        name: String,
    },
    /// Delete a script
    Delete {
        /// Script name
        name: String,
    },
}

/// `fl fn ...` (FunLess's subcommands and aliases, plus get, list, update)
#[derive(Debug, Subcommand)]
pub(crate) enum FnCommand {
    /// Upload a function (.wasm module or component, or .js source)
    #[command(visible_alias = "up")]
    Upload(UploadArgs),
    /// Create a function: a source folder is built first (`fn build`), a .wasm or .js file is
    /// uploaded as it is
    #[command(visible_alias = "c")]
    Create(UploadArgs),
    /// Replace the code (and metadata) of an existing function
    Update(UpdateArgs),
    /// Invoke a function and print its output
    #[command(visible_alias = "i", disable_version_flag = true)]
    Invoke(InvokeArgs),
    /// Show a function
    Get(FnTarget),
    /// List the functions of a module
    List(ModuleOpt),
    /// Delete a function (with --version: one kept version of it)
    #[command(visible_alias = "d", disable_version_flag = true)]
    Delete(DeleteArgs),
    /// List a function's kept versions, newest first (* marks the current one)
    Versions(FnTarget),
    /// Make a kept version current again (a new version with its code and metadata)
    #[command(disable_version_flag = true)]
    Rollback(RollbackArgs),
    /// Send a share of a function's invocations to another kept version, watch how each
    /// version fares, then promote it or abort
    #[command(subcommand)]
    Canary(FnCanaryCommand),
    /// A function's configuration: settings its invocations get as environment variables
    /// (JavaScript: as `config`, the second argument of its main)
    #[command(subcommand)]
    Config(FnConfigCommand),
    /// Build a function's source folder into the file to upload (Rust: a .wasm with cargo;
    /// JavaScript: the source itself, nothing to compile; Python: a .wasm with componentize-py,
    /// from a folder or one .py file)
    #[command(visible_alias = "b")]
    Build(BuildArgs),
    /// Start a new function from a template shipped inside fl (no network needed)
    #[command(visible_alias = "n")]
    New(NewArgs),
}

/// Arguments of `fn build`.
#[derive(Debug, Args)]
pub(crate) struct BuildArgs {
    /// Function name (the output is NAME.wasm or NAME.js)
    #[arg(value_parser = parse_name)]
    pub(crate) name: String,
    /// The function's source folder (or one Python file)
    pub(crate) source: PathBuf,
    /// Folder to write the built file to
    #[arg(short, long, default_value = ".")]
    pub(crate) destination: PathBuf,
    /// The source's language (default: from the folder's files)
    #[arg(short, long = "language", visible_alias = "lang", value_name = "LANG", value_parser = crate::templates::parse_language)]
    pub(crate) language: Option<&'static crate::templates::Language>,
}

/// Arguments of `fn new`.
#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// Function name (also the folder's name)
    #[arg(value_parser = parse_name)]
    pub(crate) name: String,
    /// The function's language
    #[arg(short, long = "lang", visible_alias = "language", value_name = "LANG", value_parser = crate::templates::parse_language)]
    pub(crate) language: &'static crate::templates::Language,
    /// A folder holding FunLess's `template/<lang>` folders to use instead of the templates
    /// inside fl (used when it has one for the language)
    #[arg(short, long, default_value = ".")]
    pub(crate) template_dir: PathBuf,
    /// Folder to create the function's folder in
    #[arg(short, long, default_value = ".")]
    pub(crate) out_dir: PathBuf,
}

/// Arguments of `fn delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    #[command(flatten)]
    pub(crate) target: FnTarget,
    /// Delete only this kept version (not the current one)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) version: Option<u64>,
}

/// Arguments of `fn rollback`.
#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    #[command(flatten)]
    pub(crate) target: FnTarget,
    /// The kept version to restore (`fl fn versions` lists them)
    #[arg(value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) version: u64,
}

/// `fl fn canary ...`
#[derive(Debug, Subcommand)]
pub(crate) enum FnCanaryCommand {
    /// Start a canary (or change its version or share): PERCENT of the function's invocations
    /// run its kept version VERSION
    #[command(disable_version_flag = true)]
    Start {
        #[command(flatten)]
        target: FnTarget,
        /// A kept version other than the current one (`fl fn versions` lists them)
        #[arg(value_parser = clap::value_parser!(u64).range(1..))]
        version: u64,
        /// The share of invocations it gets, 1 to 99
        #[arg(short, long, default_value_t = 10, value_parser = clap::value_parser!(u8).range(1..=99))]
        percent: u8,
    },
    /// Show the canary and each version's invocations by outcome since it started
    Status(FnTarget),
    /// Make the canary's version the current one (a new version) and end the canary
    Promote(FnTarget),
    /// End the canary: every invocation runs the current version again
    #[command(visible_alias = "end")]
    Abort(FnTarget),
}

/// `fl fn config ...`
#[derive(Debug, Subcommand)]
pub(crate) enum FnConfigCommand {
    /// Show the function's settings, its module's, and what its invocations get
    Get(FnTarget),
    /// Add or replace settings: a new version with the same code
    Set {
        #[command(flatten)]
        target: FnTarget,
        /// KEY=VALUE (KEY: a letter or '_', then letters, digits or '_')
        #[arg(required_unless_present = "secrets", value_name = "KEY=VALUE", value_parser = parse_setting)]
        settings: Vec<(String, String)>,
        /// KEY=SECRET: the setting's value is your secret SECRET (`fl secret create`)
        #[arg(long = "secret", value_name = "KEY=SECRET", value_parser = parse_setting)]
        secrets: Vec<(String, String)>,
    },
    /// Remove settings: a new version with the same code
    Unset {
        #[command(flatten)]
        target: FnTarget,
        /// Setting names
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
}

/// `fl mod config ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ModConfigCommand {
    /// Show the module's settings (its functions inherit them)
    Get {
        /// Module name
        #[arg(value_parser = parse_name)]
        module: String,
    },
    /// Add or replace settings; its functions' next invocations get them
    Set {
        /// Module name
        #[arg(value_parser = parse_name)]
        module: String,
        /// KEY=VALUE (KEY: a letter or '_', then letters, digits or '_')
        #[arg(required_unless_present = "secrets", value_name = "KEY=VALUE", value_parser = parse_setting)]
        settings: Vec<(String, String)>,
        /// KEY=SECRET: the setting's value is your secret SECRET (`fl secret create`)
        #[arg(long = "secret", value_name = "KEY=SECRET", value_parser = parse_setting)]
        secrets: Vec<(String, String)>,
    },
    /// Remove settings
    Unset {
        /// Module name
        #[arg(value_parser = parse_name)]
        module: String,
        /// Setting names
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
}

/// `KEY=VALUE` of a setting: the value is text, as given.
fn parse_setting(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    if key.is_empty() {
        return Err(format!("empty key in {s:?}"));
    }
    Ok((key.to_string(), value.to_string()))
}

/// Arguments of `fn update`.
#[derive(Debug, Args)]
pub(crate) struct UpdateArgs {
    #[command(flatten)]
    pub(crate) upload: UploadArgs,
    /// Also rename the function (FunLess's update with a new name)
    #[arg(long, value_name = "NAME", value_parser = parse_name, conflicts_with = "canary")]
    pub(crate) rename: Option<String>,
    /// Keep the current version current and make the new code its canary, getting this
    /// percentage of invocations (1 to 99; then `fl fn canary promote` or `abort`)
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u8).range(1..=99))]
    pub(crate) canary: Option<u8>,
}

/// A module selector, default `_`.
#[derive(Debug, Args)]
pub(crate) struct ModuleOpt {
    /// Module of the function
    #[arg(short, long, default_value = DEFAULT_MODULE, value_parser = parse_name)]
    pub(crate) module: String,
}

/// A function and its module.
#[derive(Debug, Args)]
pub(crate) struct FnTarget {
    /// Function name
    #[arg(value_parser = parse_name)]
    pub(crate) name: String,
    #[command(flatten)]
    pub(crate) module: ModuleOpt,
}

/// Arguments of `fn upload`, `fn create` and `fn update`.
#[derive(Debug, Args)]
pub(crate) struct UploadArgs {
    /// Function name
    #[arg(value_parser = parse_name)]
    pub(crate) name: String,
    /// The code: a WebAssembly module or component (.wasm), JavaScript source (.js), a Python
    /// file defining main(args) (.py, built first), or (for `create`) a source folder to
    /// build first
    pub(crate) file: PathBuf,
    #[command(flatten)]
    pub(crate) module: ModuleOpt,
    /// The code's language: wasm or js (default: from the file's extension, .js/.mjs = js,
    /// else the server tells WebAssembly from JavaScript by content); for a source folder,
    /// a template language (rust, js, python)
    #[arg(short, long, visible_alias = "language", value_name = "LANG", value_parser = ["wasm", "js", "rust", "python"])]
    pub(crate) lang: Option<String>,
    /// Answer at once instead of waiting for the workers to cache the code
    #[arg(long)]
    pub(crate) no_wait: bool,
    /// Memory the function needs: bytes, or with a unit (64MiB, 512K, 1G; server default 64MiB)
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) capacity: Option<u64>,
    /// Never run it twice: when its worker is lost mid-call, answer 503 instead of retrying
    /// on another worker
    #[arg(long)]
    pub(crate) no_retry: bool,
    /// Time limit of one invocation, milliseconds (server default 60000)
    #[arg(long, value_name = "MS")]
    pub(crate) timeout_ms: Option<u64>,
    /// A host (or host:port) the function may reach over HTTP (repeatable; default none)
    #[arg(long, value_name = "HOST")]
    pub(crate) allow_host: Vec<String>,
    /// A free tag, used by scheduling scripts
    #[arg(long)]
    pub(crate) tag: Option<String>,
    /// An event that triggers the function, as FunLess's JSON (repeatable), e.g.
    /// '{"type":"mqtt","params":{"host":"127.0.0.1","port":1883,"topic":"sensors/+"}}',
    /// '{"type":"nats","params":{"host":"127.0.0.1","subject":"jobs"}}' or
    /// '{"type":"cron","params":{"schedule":"*/10 * * * * *"}}'
    #[arg(long, value_name = "JSON", value_parser = parse_json_object_value)]
    pub(crate) event: Vec<Value>,
    /// Where results go, as FunLess's JSON (repeatable), e.g.
    /// '{"type":"couchdb","params":{"url":"http://127.0.0.1:5984/results","username":"u","password":"p"}}'
    /// or '{"type":"webhook","params":{"url":"http://10.0.0.9/hook"}}'
    #[arg(long, value_name = "JSON", value_parser = parse_json_object_value)]
    pub(crate) sink: Vec<Value>,
}

/// Arguments of `fn invoke`.
#[derive(Debug, Args)]
pub(crate) struct InvokeArgs {
    #[command(flatten)]
    pub(crate) target: FnTarget,
    /// Arguments as a JSON object, e.g. '{"name":"x"}' (also FunLess's `--json '{...}'`)
    #[arg(short = 'j', long, value_name = "JSON", value_parser = parse_json_object)]
    pub(crate) json_args: Option<Map<String, Value>>,
    /// One argument KEY=VALUE (repeatable; overrides --json-args). VALUE is taken as JSON when it
    /// parses (3, true, [1,2], "3"), else as a string
    #[arg(short = 'a', long = "arg", visible_alias = "args", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub(crate) args: Vec<(String, Value)>,
    /// Place the invocation with this APP scheduling script
    #[arg(long, value_name = "NAME")]
    pub(crate) script: Option<String>,
    /// Do not wait: print the activation id at once (see `fl activation get`)
    #[arg(long = "async")]
    pub(crate) no_wait: bool,
    /// Invoke this kept version instead of the current one
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) version: Option<u64>,
}

impl InvokeArgs {
    /// The `args` object to send: `--json-args`, then each `--arg` over it.
    pub(crate) fn merged_args(&self) -> Map<String, Value> {
        let mut map = self.json_args.clone().unwrap_or_default();
        for (key, value) in &self.args {
            map.insert(key.clone(), value.clone());
        }
        map
    }
}

/// A JSON object, as a value.
fn parse_json_object_value(text: &str) -> Result<Value, String> {
    parse_json_object(text).map(Value::Object)
}

/// `fl mod ...` (FunLess's subcommands and aliases)
#[derive(Debug, Subcommand)]
pub(crate) enum ModCommand {
    /// List modules
    #[command(visible_aliases = ["l", "ls"])]
    List {
        /// Also print how many
        #[arg(short, long)]
        count: bool,
    },
    /// Show a module and its functions
    #[command(visible_alias = "g")]
    Get {
        /// Module name
        #[arg(value_parser = parse_name)]
        name: String,
        /// Also print how many functions
        #[arg(short, long)]
        count: bool,
    },
    /// Create a module
    #[command(visible_alias = "c")]
    Create {
        /// Module name
        #[arg(value_parser = parse_name)]
        name: String,
    },
    /// Rename a module
    #[command(visible_aliases = ["u", "up"])]
    Update {
        /// Current name
        #[arg(value_parser = parse_name)]
        name: String,
        /// New name
        #[arg(value_parser = parse_name)]
        new_name: String,
    },
    /// A module's configuration, inherited by its functions
    #[command(subcommand)]
    Config(ModConfigCommand),
    /// Delete a module (the default module `_` cannot be deleted)
    #[command(visible_aliases = ["d", "rm"])]
    Delete {
        /// Module name
        #[arg(value_parser = parse_name)]
        name: String,
    },
}

/// `fl admin ...`
#[derive(Debug, Subcommand)]
pub(crate) enum AdminCommand {
    /// Subjects (users and their tokens)
    #[command(subcommand, visible_alias = "u")]
    User(UserCommand),
    /// The supervision trees of the Core and of every worker, live (like Erlang's observer)
    Tree,
}

/// `fl admin user ...`
#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Create a subject; its token is shown this once
    #[command(visible_alias = "c")]
    Create {
        /// Subject name
        #[arg(value_parser = parse_name)]
        name: String,
    },
    /// List subjects (names only: tokens are never listed)
    #[command(visible_alias = "l")]
    List,
    /// Revoke a subject's token (effective at once)
    Revoke {
        /// Subject name
        #[arg(value_parser = parse_name)]
        name: String,
    },
}

/// `fl config ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// Set a key: host, token or admin_token (or FunLess's api_host, api_token)
    #[command(visible_alias = "s")]
    Set {
        /// host, token or admin_token (or api_host, api_token)
        key: String,
        /// The value
        value: String,
    },
    /// Print one key, or all keys that are set (tokens included, in full: it is your own file)
    #[command(visible_alias = "g")]
    Get {
        /// host, token or admin_token (or api_host, api_token)
        key: Option<String>,
    },
}

/// FunLess's `fl fn invoke NAME --json '{...}'`: on `fn invoke` (or `fn i`), a `--json`
/// followed by a JSON object is the function's arguments (`--json-args`); `--json` alone stays
/// the global switch for raw output. Other command lines are returned as they are.
pub(crate) fn funless_json_args(mut argv: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let invoke_at = argv
        .windows(2)
        .position(|w| w[0] == "fn" && (w[1] == "invoke" || w[1] == "i"));
    let Some(start) = invoke_at else {
        return argv;
    };
    let object = |v: &std::ffi::OsStr| v.to_str().is_some_and(|v| v.trim_start().starts_with('{'));
    let mut i = start + 2;
    while i < argv.len() {
        if argv[i] == "--" {
            break;
        }
        if argv[i] == "--json" && argv.get(i + 1).is_some_and(|v| object(v)) {
            argv[i] = "--json-args".into();
            i += 1;
        } else if let Some(value) = argv[i].to_str().and_then(|a| a.strip_prefix("--json="))
            && object(std::ffi::OsStr::new(value))
        {
            argv[i] = format!("--json-args={value}").into();
        }
        i += 1;
    }
    argv
}

/// A module, function or subject name, checked with FunLess's rule so it is safe in a URL path.
fn parse_name(s: &str) -> Result<String, String> {
    funless_api::names::validate("the", s).map(|()| s.to_string())
}

/// `--capacity`: bytes, or a number with a unit (K/KB/KiB, M/MB/MiB, G/GB/GiB: powers of
/// 1024, as memory is counted).
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("expected a size like 67108864, 64MiB or 512K, got {s:?}"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => return Err(format!("unknown size unit {other:?} (use K, M or G)")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// `-j`: must be a JSON object.
fn parse_json_object(s: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(s) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("must be a JSON object, like '{\"name\":\"x\"}'".to_string()),
        Err(e) => Err(format!("not valid JSON: {e}")),
    }
}

/// `-a KEY=VALUE`: the value is JSON when it parses, else a string.
fn parse_key_value(s: &str) -> Result<(String, Value), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))?;
    if key.is_empty() {
        return Err(format!("empty key in {s:?}"));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((key.to_string(), value))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use serde_json::json;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        let argv = std::iter::once("fl")
            .chain(args.iter().copied())
            .map(std::ffi::OsString::from)
            .collect();
        Cli::try_parse_from(funless_json_args(argv))
    }

    fn invoke_args(args: &[&str]) -> InvokeArgs {
        match parse(args).map(|cli| cli.command) {
            Ok(Command::Fn(FnCommand::Invoke(invoke))) => invoke,
            other => panic!("expected fn invoke, got {other:?}"),
        }
    }

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn arg_values_are_json_when_they_parse() {
        let invoke = invoke_args(&["fn", "invoke", "hello", "-a", "n=3", "-a", "name=x"]);
        assert_eq!(invoke.target.name, "hello");
        assert_eq!(invoke.target.module.module, "_");
        assert_eq!(
            Value::Object(invoke.merged_args()),
            json!({"n": 3, "name": "x"})
        );
    }

    #[test]
    fn arg_values_keep_equals_signs_and_json_types() {
        let invoke = invoke_args(&[
            "fn", "invoke", "f", "--arg", "q=a=b", "-a", "t=true", "-a", "l=[1,2]", "-a",
            "s=\"3\"", "-a", "e=",
        ]);
        assert_eq!(
            Value::Object(invoke.merged_args()),
            json!({"q": "a=b", "t": true, "l": [1, 2], "s": "3", "e": ""})
        );
    }

    #[test]
    fn arg_overrides_json_args() {
        let invoke = invoke_args(&[
            "fn",
            "invoke",
            "f",
            "-m",
            "mymod",
            "-j",
            r#"{"a":1,"b":{"c":2}}"#,
            "-a",
            "a=x",
        ]);
        assert_eq!(invoke.target.module.module, "mymod");
        assert_eq!(
            Value::Object(invoke.merged_args()),
            json!({"a": "x", "b": {"c": 2}})
        );
    }

    #[test]
    fn funless_invoke_command_lines_parse() {
        let invoke = invoke_args(&["fn", "i", "f", "-m", "m", "--json", r#"{"a":1}"#]);
        assert_eq!(invoke.target.module.module, "m");
        assert_eq!(Value::Object(invoke.merged_args()), json!({"a": 1}));
        let invoke = invoke_args(&["fn", "invoke", "f", r#"--json={"b":2}"#]);
        assert_eq!(Value::Object(invoke.merged_args()), json!({"b": 2}));
        let invoke = invoke_args(&["fn", "invoke", "f", "--args", "name=x"]);
        assert_eq!(Value::Object(invoke.merged_args()), json!({"name": "x"}));
        // `--json` alone is still the output switch.
        let cli = parse(&["fn", "invoke", "f", "--json", "-j", r#"{"c":3}"#]).expect("parses");
        assert!(cli.global.json);
        // A FunLess host without a protocol.
        let cli = parse(&["mod", "ls", "-c", "-H", "localhost:4000"]).expect("parses");
        assert_eq!(cli.global.host.as_deref(), Some("localhost:4000"));
        assert!(matches!(
            cli.command,
            Command::Mod(ModCommand::List { count: true })
        ));
    }

    #[test]
    fn funless_aliases_parse() {
        for line in [
            &["fn", "c", "f", "dir", "-l", "rust", "-m", "m"][..],
            &["fn", "up", "f", "f.wasm"],
            &["fn", "d", "f"],
            &["fn", "b", "f", "dir", "-d", "out", "-l", "js"],
            &["fn", "n", "f", "-l", "rust", "-t", ".", "-o", "out"],
            &["mod", "g", "m", "-c"],
            &["mod", "rm", "m"],
            &["mod", "up", "m", "n"],
            &["a", "u", "c", "alice"],
            &["cfg", "s", "api_host", "http://h:1"],
            &["c", "g", "api_token"],
        ] {
            if let Err(e) = parse(line) {
                panic!("{line:?}: {e}");
            }
        }
        assert!(parse(&["fn", "new", "f", "-l", "cobol"]).is_err());
    }

    #[test]
    fn no_args_is_an_empty_object() {
        assert_eq!(
            Value::Object(invoke_args(&["fn", "invoke", "f"]).merged_args()),
            json!({})
        );
    }

    #[test]
    fn bad_invoke_arguments_are_usage_errors() {
        for bad in [
            &["fn", "invoke", "f", "-j", "[1]"][..],
            &["fn", "invoke", "f", "-j", "{nope"],
            &["fn", "invoke", "f", "-a", "novalue"],
            &["fn", "invoke", "f", "-a", "=3"],
        ] {
            let err = parse(bad).expect_err("should not parse");
            assert_eq!(err.exit_code(), 2, "{bad:?}: {err}");
        }
    }

    #[test]
    fn names_are_checked() {
        let err = parse(&["fn", "get", "a/b"]).expect_err("slash in a name");
        assert!(err.to_string().contains("only letters, digits"), "{err}");
        assert!(parse(&["mod", "create", ""]).is_err());
        assert!(parse(&["fn", "list", "--module", "x y"]).is_err());
    }

    #[test]
    fn global_options_go_before_or_after() {
        let before = parse(&["--json", "--host", "http://h:1", "mod", "list"]).expect("parses");
        let after = parse(&["mod", "list", "--json", "--token", "t"]).expect("parses");
        assert!(before.global.json && after.global.json);
        assert_eq!(before.global.host.as_deref(), Some("http://h:1"));
        assert_eq!(after.global.token.as_deref(), Some("t"));
    }

    #[test]
    fn upload_options() {
        let cli = parse(&[
            "fn",
            "upload",
            "hello",
            "h.wasm",
            "--module",
            "m",
            "--no-wait",
            "--capacity",
            "128MiB",
            "--tag",
            "edge",
        ])
        .expect("parses");
        let Command::Fn(FnCommand::Upload(up)) = cli.command else {
            panic!("expected fn upload");
        };
        assert_eq!(up.name, "hello");
        assert_eq!(up.file, PathBuf::from("h.wasm"));
        assert_eq!(up.module.module, "m");
        assert!(up.no_wait);
        assert_eq!(up.capacity, Some(128 << 20));
        assert!(!up.no_retry);
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert_eq!(up.tag.as_deref(), Some("edge"));
    }
}
