//! `fl`: the command-line client of FunLess. Parses the command line, resolves host and token
//! (flag, then environment, then config file, then default), makes one request and prints the
//! answer. Errors go to stderr as `error: ...` with exit code 1 (2 for usage errors).
//!
//! Output is written through `io::Write` rather than `println!`, so the workspace's
//! `clippy::print_stdout` lint needs no exception here and a closed pipe (`fl fn list | head`)
//! ends the program quietly instead of panicking.

mod args;
mod build;
mod client;
mod config;
mod error;
mod output;
mod progress;
mod python;
mod svc;
mod templates;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;

use crate::args::{
    ActivationCommand, AdminCommand, AppCommand, Cli, Command, ConfigCommand, FnCanaryCommand,
    FnCommand, FnConfigCommand, GlobalArgs, ModCommand, ModConfigCommand, SecretCommand,
    UploadArgs, UserCommand,
};
use crate::client::{Client, Upload};
use crate::config::Config;
use funless_api::types::{CanarySplit, ConfigChange, FunctionMetadata};

/// Where the Core's API listens unless told otherwise.
const DEFAULT_HOST: &str = "http://127.0.0.1:4000";

fn main() -> ExitCode {
    let cli = Cli::parse_from(args::funless_json_args(std::env::args_os().collect()));
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = io::stdout();
    let result = runtime
        .block_on(run(cli, &mut stdout))
        .and_then(|()| Ok(stdout.flush()?));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Settings from the flags, the environment and the config file.
struct Settings {
    global: GlobalArgs,
    config: Config,
    config_path: Option<PathBuf>,
}

impl Settings {
    fn host(&self) -> &str {
        non_empty(self.global.host.as_deref())
            .or(non_empty(self.config.host.as_deref()))
            .unwrap_or(DEFAULT_HOST)
    }

    /// The token of user commands: `--token`/`FL_TOKEN`, else config `token`.
    fn user_client(&self) -> Result<Client> {
        let token =
            non_empty(self.global.token.as_deref()).or(non_empty(self.config.token.as_deref()));
        Client::new(self.host(), token.map(str::to_string))
    }

    /// The token of admin commands: `--token`/`FL_TOKEN`, else config `admin_token`, else
    /// config `token` (whose subject may be an admin).
    fn admin_client(&self) -> Result<Client> {
        let token = non_empty(self.global.token.as_deref())
            .or(non_empty(self.config.admin_token.as_deref()))
            .or(non_empty(self.config.token.as_deref()));
        Client::new(self.host(), token.map(str::to_string))
    }
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

async fn run(cli: Cli, out: &mut dyn Write) -> Result<()> {
    let config_path = config::path_from_env();
    let config = match &config_path {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let settings = Settings {
        global: cli.global,
        config,
        config_path,
    };
    let json = settings.global.json;
    match cli.command {
        Command::Config(command) => config_command(settings, command, out),
        Command::Mod(command) => mod_command(&settings.user_client()?, json, command, out).await,
        Command::Fn(command) => fn_command(&settings.user_client()?, json, command, out).await,
        Command::App(command) => app_command(&settings, json, command, out).await,
        Command::Svc(command) => svc::run(&settings.user_client()?, json, command, out).await,
        Command::Secret(command) => {
            secret_command(&settings.user_client()?, json, command, out).await
        }
        Command::Activation(command) => {
            activation_command(&settings.user_client()?, json, command, out).await
        }
        Command::Admin(AdminCommand::Tree) => {
            let reply = settings.admin_client()?.tree().await?;
            output::reply(out, json, &reply, |out, tree| {
                output::cluster_tree(out, &tree)
            })
        }
        Command::Admin(AdminCommand::User(command)) => {
            let client = settings.admin_client()?;
            match command {
                UserCommand::Create { name } => {
                    let reply = client.create_subject(&name).await?;
                    output::reply(out, json, &reply, |out, subject| {
                        output::created_subject(out, &subject)
                    })?;
                    if !json {
                        eprintln!("note: the token is shown only this once: keep it");
                    }
                    Ok(())
                }
                UserCommand::List => {
                    let reply = client.list_subjects().await?;
                    output::reply(out, json, &reply, |out, names| output::names(out, &names))
                }
                UserCommand::Revoke { name } => {
                    let reply = client.revoke_subject(&name).await?;
                    if json {
                        output::raw(out, &reply.body)?;
                    } else {
                        writeln!(out, "revoked subject {name}")?;
                    }
                    Ok(())
                }
            }
        }
    }
}

async fn app_command(
    settings: &Settings,
    json: bool,
    command: AppCommand,
    out: &mut dyn Write,
) -> Result<()> {
    match command {
        AppCommand::Create { name, file } => {
            let yaml = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            // Any subject may create one, as in FunLess.
            let reply = settings
                .user_client()?
                .create_app_script(&name, yaml)
                .await?;
            output::reply(out, json, &reply, |out, script| {
                writeln!(out, "created APP script {}", script.name)
            })
        }
        AppCommand::List => {
            let reply = settings.user_client()?.list_app_scripts().await?;
            output::reply(out, json, &reply, |out, names| output::names(out, &names))
        }
        AppCommand::Get { name } => {
            let reply = settings.user_client()?.get_app_script(&name).await?;
            output::reply(out, json, &reply, |out, script| {
                write!(out, "{}", script.source)
            })
        }
        AppCommand::Delete { name } => {
            let reply = settings.admin_client()?.delete_app_script(&name).await?;
            if json {
                output::raw(out, &reply.body)?;
            } else {
                writeln!(out, "deleted APP script {name}")?;
            }
            Ok(())
        }
    }
}

async fn mod_command(
    client: &Client,
    json: bool,
    command: ModCommand,
    out: &mut dyn Write,
) -> Result<()> {
    match command {
        ModCommand::List { count } => {
            let reply = client.list_modules().await?;
            output::reply(out, json, &reply, |out, names| {
                output::names(out, &names)?;
                output::count(out, count, names.len())
            })
        }
        ModCommand::Get { name, count } => {
            let reply = client.get_module(&name).await?;
            output::reply(out, json, &reply, |out, module| {
                output::module(out, &module)?;
                output::count(out, count, module.functions.len())
            })
        }
        ModCommand::Create { name } => {
            let reply = client.create_module(&name).await?;
            output::reply(out, json, &reply, |out, module| {
                writeln!(out, "created module {}", module.name)
            })
        }
        ModCommand::Update { name, new_name } => {
            let reply = client.rename_module(&name, &new_name).await?;
            output::reply(out, json, &reply, |out, module| {
                writeln!(out, "renamed module {name} to {}", module.name)
            })
        }
        ModCommand::Config(command) => {
            let (module, change) = match command {
                ModConfigCommand::Get { module } => (module, None),
                ModConfigCommand::Set {
                    module,
                    settings,
                    secrets,
                } => (module, Some(setting_change(settings, secrets))),
                ModConfigCommand::Unset { module, keys } => (module, Some(unset_change(keys))),
            };
            let reply = match &change {
                None => client.config(&module, None).await?,
                Some(change) => client.change_config(&module, None, change).await?,
            };
            output::reply(out, json, &reply, |out, info| output::config(out, &info))
        }
        ModCommand::Delete { name } => {
            let reply = client.delete_module(&name).await?;
            if json {
                output::raw(out, &reply.body)?;
            } else {
                writeln!(out, "deleted module {name}")?;
            }
            Ok(())
        }
    }
}

async fn fn_command(
    client: &Client,
    json: bool,
    command: FnCommand,
    out: &mut dyn Write,
) -> Result<()> {
    match command {
        FnCommand::Upload(upload) => {
            if upload.file.is_dir() {
                bail!(
                    "{} is a folder: upload takes a .wasm, .js or .py file (`fl fn create` builds a folder first)",
                    upload.file.display()
                );
            }
            let module = upload.module.module.clone();
            let reply = client
                .create_function(&module, read_upload(upload)?)
                .await?;
            output::reply(out, json, &reply, |out, created| {
                output::function_created(out, "created", &module, &created)
            })
        }
        FnCommand::Create(upload) => {
            let module = upload.module.module.clone();
            let upload = if upload.file.is_dir() {
                built_upload(upload)?
            } else {
                read_upload(upload)?
            };
            let reply = client.create_function(&module, upload).await?;
            output::reply(out, json, &reply, |out, created| {
                output::function_created(out, "created", &module, &created)
            })
        }
        FnCommand::Update(update) => {
            let module = update.upload.module.module.clone();
            let function = update.upload.name.clone();
            let mut upload = read_upload(update.upload)?;
            if let Some(new_name) = update.rename {
                upload.name = new_name;
            }
            upload.canary = update.canary;
            let reply = client.update_function(&module, &function, upload).await?;
            output::reply(out, json, &reply, |out, created| {
                output::function_created(out, "updated", &module, &created)
            })
        }
        FnCommand::Build(args) => {
            let built = build::build(&args.source, args.language)?;
            std::fs::create_dir_all(&args.destination)
                .with_context(|| format!("creating {}", args.destination.display()))?;
            let dest = args.destination.join(format!(
                "{}.{}",
                args.name,
                build::extension(built.language)
            ));
            std::fs::copy(&built.path, &dest).with_context(|| {
                format!("copying {} to {}", built.path.display(), dest.display())
            })?;
            writeln!(out, "built {}", dest.display())?;
            Ok(())
        }
        FnCommand::New(args) => {
            let made =
                templates::create(args.language, &args.name, &args.template_dir, &args.out_dir)?;
            writeln!(
                out,
                "created {} function {} in {}",
                args.language.name,
                args.name,
                made.display()
            )?;
            Ok(())
        }
        FnCommand::Invoke(invoke) if invoke.no_wait => {
            let target = &invoke.target;
            let reply = client
                .invoke_async(
                    &target.module.module,
                    &target.name,
                    invoke.version,
                    invoke.merged_args(),
                    invoke.script.clone(),
                )
                .await?;
            output::reply(out, json, &reply, |out, started| {
                writeln!(out, "{}", started.activation_id)
            })
        }
        FnCommand::Invoke(invoke) => {
            let target = &invoke.target;
            let reply = client
                .invoke(
                    &target.module.module,
                    &target.name,
                    invoke.version,
                    invoke.merged_args(),
                    invoke.script.clone(),
                )
                .await?;
            output::reply(out, json, &reply, |out, data| output::value(out, &data))
        }
        FnCommand::Get(target) => {
            let reply = client
                .get_function(&target.module.module, &target.name)
                .await?;
            output::reply(out, json, &reply, |out, info| output::function(out, &info))
        }
        FnCommand::List(module) => {
            let reply = client.get_module(&module.module).await?;
            output::reply(out, json, &reply, |out, module| {
                output::names(out, &module.functions)
            })
        }
        FnCommand::Delete(args) => {
            let (module, name) = (&args.target.module.module, &args.target.name);
            let reply = match args.version {
                Some(version) => client.delete_version(module, name, version).await?,
                None => client.delete_function(module, name).await?,
            };
            if json {
                output::raw(out, &reply.body)?;
            } else if let Some(version) = args.version {
                writeln!(out, "deleted version {version} of function {module}/{name}")?;
            } else {
                writeln!(out, "deleted function {module}/{name}")?;
            }
            Ok(())
        }
        FnCommand::Versions(target) => {
            let reply = client.versions(&target.module.module, &target.name).await?;
            output::reply(out, json, &reply, |out, list| output::versions(out, &list))
        }
        FnCommand::Config(command) => fn_config_command(client, json, command, out).await,
        FnCommand::Canary(command) => fn_canary_command(client, json, command, out).await,
        FnCommand::Rollback(args) => {
            let module = &args.target.module.module;
            let reply = client
                .rollback(module, &args.target.name, args.version)
                .await?;
            output::reply(out, json, &reply, |out, created| {
                output::function_created(out, "rolled back", module, &created)
            })
        }
    }
}

async fn fn_canary_command(
    client: &Client,
    json: bool,
    command: FnCanaryCommand,
    out: &mut dyn Write,
) -> Result<()> {
    let reply = match command {
        FnCanaryCommand::Start {
            target,
            version,
            percent,
        } => {
            let split = CanarySplit { version, percent };
            client
                .set_canary(&target.module.module, &target.name, split)
                .await?
        }
        FnCanaryCommand::Status(target) => {
            client.canary(&target.module.module, &target.name).await?
        }
        FnCanaryCommand::Abort(target) => {
            let (module, name) = (&target.module.module, &target.name);
            let reply = client.end_canary(module, name).await?;
            if !json {
                writeln!(out, "ended the canary of function {module}/{name}")?;
            }
            reply
        }
        FnCanaryCommand::Promote(target) => {
            let module = &target.module.module;
            let reply = client.promote_canary(module, &target.name).await?;
            return output::reply(out, json, &reply, |out, created| {
                output::function_created(out, "promoted the canary of", module, &created)
            });
        }
    };
    output::reply(out, json, &reply, |out, info| output::canary(out, &info))
}

async fn fn_config_command(
    client: &Client,
    json: bool,
    command: FnConfigCommand,
    out: &mut dyn Write,
) -> Result<()> {
    let (target, change) = match command {
        FnConfigCommand::Get(target) => (target, None),
        FnConfigCommand::Set {
            target,
            settings,
            secrets,
        } => (target, Some(setting_change(settings, secrets))),
        FnConfigCommand::Unset { target, keys } => (target, Some(unset_change(keys))),
    };
    let (module, name) = (&target.module.module, Some(target.name.as_str()));
    let reply = match &change {
        None => client.config(module, name).await?,
        Some(change) => client.change_config(module, name, change).await?,
    };
    output::reply(out, json, &reply, |out, info| output::config(out, &info))
}

fn setting_change(settings: Vec<(String, String)>, secrets: Vec<(String, String)>) -> ConfigChange {
    ConfigChange {
        set: settings.into_iter().collect(),
        secrets: secrets.into_iter().collect(),
        unset: Vec::new(),
    }
}

fn unset_change(keys: Vec<String>) -> ConfigChange {
    ConfigChange {
        unset: keys,
        ..ConfigChange::default()
    }
}

async fn secret_command(
    client: &Client,
    json: bool,
    command: SecretCommand,
    out: &mut dyn Write,
) -> Result<()> {
    match command {
        SecretCommand::Create { name, value } => {
            let value = match value {
                Some(value) => value,
                None => {
                    let mut text = String::new();
                    std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                        .context("reading the secret's value from standard input")?;
                    // One trailing newline is the terminal's or echo's, not the value's.
                    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
                    trimmed.strip_suffix('\r').unwrap_or(trimmed).to_string()
                }
            };
            let reply = client.put_secret(&name, value).await?;
            output::reply(out, json, &reply, |out, info| {
                writeln!(out, "stored secret {}", info.name)
            })
        }
        SecretCommand::List => {
            let reply = client.list_secrets().await?;
            output::reply(out, json, &reply, |out, list| {
                for s in list {
                    writeln!(out, "{} (set {})", s.name, s.updated_at)?;
                }
                Ok(())
            })
        }
        SecretCommand::Delete { name } => {
            let reply = client.delete_secret(&name).await?;
            if json {
                output::raw(out, &reply.body)?;
            } else {
                writeln!(out, "deleted secret {name}")?;
            }
            Ok(())
        }
    }
}

async fn activation_command(
    client: &Client,
    json: bool,
    command: ActivationCommand,
    out: &mut dyn Write,
) -> Result<()> {
    match command {
        ActivationCommand::Get { id } => {
            let reply = client.activation(&id).await?;
            output::reply(out, json, &reply, |out, info| {
                output::activation(out, &info)
            })
        }
        ActivationCommand::Logs { id } => {
            let reply = client.activation(&id).await?;
            output::reply(out, json, &reply, |out, info| {
                info.logs
                    .iter()
                    .try_for_each(|line| writeln!(out, "{line}"))
            })
        }
        ActivationCommand::List { target, limit } => {
            let reply = client
                .activations(&target.module.module, &target.name, limit)
                .await?;
            output::reply(out, json, &reply, |out, list| {
                output::activations(out, &list)
            })
        }
    }
}

/// Builds the source folder named on the command line and makes the result an upload.
fn built_upload(mut args: UploadArgs) -> Result<Upload> {
    let language = args
        .lang
        .as_deref()
        .filter(|lang| *lang != "wasm")
        .map(templates::parse_language)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let built = build::build(&args.file, language)?;
    args.lang = Some(match build::extension(built.language) {
        "wasm" => "wasm".to_string(),
        _ => built.language.name.to_string(),
    });
    args.file = built.path.clone();
    read_upload(args)
}

/// Reads the .wasm or .js named on the command line into an upload; a .py file is built
/// first (a Python function is uploaded as the WebAssembly it builds to).
fn read_upload(mut args: UploadArgs) -> Result<Upload> {
    let python = python::is_python_file(&args.file)
        .then(|| build::build_python_file(&args.file))
        .transpose()?;
    if let Some(built) = &python {
        args.file = built.path.clone();
        args.lang = Some("wasm".into());
    }
    let code = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    if code.is_empty() {
        bail!("{} is empty", args.file.display());
    }
    let file_name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("{}.wasm", args.name));
    // A source language names the upload's: Rust and Python build to WebAssembly.
    let language = args
        .lang
        .clone()
        .map(|lang| match lang.as_str() {
            "rust" | "python" => "wasm".into(),
            _ => lang,
        })
        .or_else(|| match args.file.extension().and_then(|e| e.to_str()) {
            Some("js" | "mjs") => Some("js".to_string()),
            Some("wasm") => Some("wasm".to_string()),
            _ => None,
        });
    Ok(Upload {
        name: args.name,
        code,
        file_name,
        language,
        metadata: FunctionMetadata {
            tag: args.tag,
            capacity: args.capacity,
            retryable: args.no_retry.then_some(false),
            timeout_ms: args.timeout_ms,
            allow_hosts: (!args.allow_host.is_empty()).then(|| args.allow_host.clone()),
        },
        wait_for_workers: !args.no_wait,
        events: args.event,
        sinks: args.sink,
        canary: None,
    })
}

fn config_command(settings: Settings, command: ConfigCommand, out: &mut dyn Write) -> Result<()> {
    let json = settings.global.json;
    let mut config = settings.config;
    match command {
        ConfigCommand::Set { key, value } => {
            let path = settings
                .config_path
                .context("cannot locate the config file: set HOME or FL_CONFIG")?;
            config.set(&key, &value)?;
            config.save(&path)?;
            eprintln!("saved {key} to {}", path.display());
            Ok(())
        }
        ConfigCommand::Get { key: Some(key) } => {
            let Some(value) = config.get(&key)? else {
                bail!("{key} is not set");
            };
            if json {
                writeln!(out, "{}", serde_json::Value::from(value))?;
            } else {
                writeln!(out, "{value}")?;
            }
            Ok(())
        }
        ConfigCommand::Get { key: None } => {
            let entries = config.entries();
            if json {
                let object: serde_json::Map<String, serde_json::Value> = entries
                    .iter()
                    .map(|(key, value)| (key.to_string(), (*value).into()))
                    .collect();
                writeln!(out, "{}", serde_json::Value::Object(object))?;
            } else {
                for (key, value) in entries {
                    writeln!(out, "{key} = {value}")?;
                }
            }
            Ok(())
        }
    }
}
