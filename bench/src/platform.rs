//! The platform under test: a Core and one Worker started from release binaries on free
//! 127.0.0.1 ports, with SQLite in a temporary directory (or a PostgreSQL URL), stopped and
//! cleaned up when dropped, also when the evaluation fails half-way. A `wasmtime serve` peer
//! is managed the same way.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A port free right now on 127.0.0.1.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a local port")?;
    Ok(listener.local_addr()?.port())
}

/// A child process killed (and waited for) when dropped, its output in a log file.
pub(crate) struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    pub(crate) fn spawn(name: &str, command: &mut Command, log: PathBuf) -> anyhow::Result<Self> {
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {name} ({:?})", command.get_program()))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails, with the end of its log, when the process has exited.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); its log ends with:\n{}",
                self.name,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// The last lines of its log.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident set size of a process, bytes (`VmRSS` of `/proc/<pid>/status`).
pub(crate) fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .context("no VmRSS line")
}

/// How the platform runs: the Core and one Worker as two processes joined over the cluster,
/// or the Core with its worker embedded (`--embedded-worker`, one process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    TwoProcesses,
    Embedded,
}

/// The cluster cookie of the platforms the bench starts.
pub(crate) const COOKIE: &str = "funless-eval";

/// A running Core and Worker.
pub(crate) struct Platform {
    // Dropped in this order: worker, core, then the directory.
    /// `None` when the worker is embedded in the Core's process.
    worker: Option<Process>,
    core: Process,
    /// `http://127.0.0.1:<port>`.
    pub(crate) api: String,
    /// The default user's token.
    pub(crate) token: String,
    /// The worker's cluster port (two processes only).
    pub(crate) worker_cluster_port: Option<u16>,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Platform {
    /// Starts the Core (SQLite in a temporary directory, or `database_url`), waits for its
    /// API, then starts one Worker and waits until the Core lists it. `token` is needed with
    /// a database that already has subjects (the Core writes its tokens only on first start).
    pub(crate) async fn start(
        bin_dir: &Path,
        database_url: Option<&str>,
        token: Option<&str>,
    ) -> anyhow::Result<Self> {
        Self::start_as(Layout::TwoProcesses, bin_dir, database_url, token).await
    }

    /// As [`Platform::start`], in the given layout.
    pub(crate) async fn start_as(
        layout: Layout,
        bin_dir: &Path,
        database_url: Option<&str>,
        token: Option<&str>,
    ) -> anyhow::Result<Self> {
        Self::start_with(layout, bin_dir, database_url, token, &[]).await
    }

    /// As [`Platform::start_as`], with more arguments for the Core.
    pub(crate) async fn start_with(
        layout: Layout,
        bin_dir: &Path,
        database_url: Option<&str>,
        token: Option<&str>,
        core_args: &[String],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("funless-eval").tempdir()?;
        let (api_port, cluster_port) = (free_port()?, free_port()?);
        let api = format!("http://127.0.0.1:{api_port}");
        let data_dir = dir.path().join("core");
        let mut command = Command::new(bin_dir.join("funless-core"));
        command
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen", &format!("127.0.0.1:{api_port}")])
            .args(["--cluster-listen", "127.0.0.1"])
            .args(["--cluster-port", &cluster_port.to_string()])
            .args(["--cookie", COOKIE])
            .args(core_args)
            .env("RUST_LOG", "warn");
        if let Some(url) = database_url {
            command.args(["--database-url", url]);
        }
        if layout == Layout::Embedded {
            command.arg("--embedded-worker");
        }
        let mut core = Process::spawn("funless-core", &mut command, dir.path().join("core.log"))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        wait_for_core(&client, &mut core, &api).await?;
        let tokens_file = data_dir.join("fl-config.toml");
        let (token, admin) = match token {
            Some(t) => (t.to_string(), None),
            None => {
                let text = std::fs::read_to_string(&tokens_file).with_context(|| {
                    format!(
                        "reading {} (with an existing database, pass --token)",
                        tokens_file.display()
                    )
                })?;
                let user = toml_string(&text, "token").context("no token in fl-config.toml")?;
                (user, toml_string(&text, "admin_token"))
            }
        };

        let worker_cluster_port = match layout {
            Layout::Embedded => None,
            Layout::TwoProcesses => Some(free_port()?),
        };
        let worker = match worker_cluster_port {
            None => None,
            Some(worker_port) => {
                let mut command = Command::new(bin_dir.join("funless-worker"));
                command
                    .args(["--core", &format!("127.0.0.1:{cluster_port}")])
                    .args(["--cookie", COOKIE, "--name", "w1"])
                    .args(["--cluster-listen", "127.0.0.1"])
                    .args(["--cluster-port", &worker_port.to_string()])
                    .arg("--cache-dir")
                    .arg(dir.path().join("cache"))
                    .env("RUST_LOG", "warn");
                Some(Process::spawn(
                    "funless-worker",
                    &mut command,
                    dir.path().join("worker.log"),
                )?)
            }
        };
        let worker_name = match layout {
            Layout::Embedded => "embedded",
            Layout::TwoProcesses => "w1",
        };
        let mut platform = Self {
            worker,
            core,
            api,
            token,
            worker_cluster_port,
            client,
            _dir: dir,
        };
        // On failure the platform is dropped here: both processes are stopped.
        platform
            .wait_for_worker(worker_name, admin.as_deref())
            .await?;
        Ok(platform)
    }

    /// Waits until the Core lists the worker (with the admin token), or, without it, until
    /// an invocation no longer fails for lack of workers.
    async fn wait_for_worker(&mut self, name: &str, admin: Option<&str>) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let quoted = format!("\"{name}\"");
        loop {
            self.check_alive()?;
            let ready = match admin {
                Some(admin) => match self
                    .client
                    .get(format!("{}/v1/workers", self.api))
                    .bearer_auth(admin)
                    .send()
                    .await
                {
                    Ok(r) => r.text().await.unwrap_or_default().contains(&quoted),
                    Err(_) => false,
                },
                None => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    true
                }
            };
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                let log = self.worker.as_ref().unwrap_or(&self.core).log_tail();
                bail!("the Worker did not join in 30 s:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) fn core_pid(&self) -> u32 {
        self.core.pid()
    }

    /// The worker's process (the Core's when the worker is embedded).
    pub(crate) fn worker_pid(&self) -> u32 {
        self.worker.as_ref().unwrap_or(&self.core).pid()
    }

    /// Fails when either process has exited.
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        self.core.check_alive()?;
        match self.worker.as_mut() {
            Some(worker) => worker.check_alive(),
            None => Ok(()),
        }
    }

    /// `POST /v1/fn/_` with the multipart form (`name`, `code`, optional `metadata`); waits
    /// until the worker has compiled it.
    pub(crate) async fn upload(
        &self,
        name: &str,
        file_name: &str,
        code: Vec<u8>,
        metadata: Option<&serde_json::Value>,
    ) -> anyhow::Result<()> {
        let mut form = reqwest::multipart::Form::new().text("name", name.to_string());
        form = form.part(
            "code",
            reqwest::multipart::Part::bytes(code).file_name(file_name.to_string()),
        );
        if let Some(metadata) = metadata {
            form = form.text("metadata", metadata.to_string());
        }
        let response = self
            .client
            .post(format!("{}/v1/fn/_", self.api))
            .bearer_auth(&self.token)
            .multipart(form)
            .send()
            .await
            .with_context(|| format!("uploading {name}"))?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "uploading {name}: {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// The URL invoking function `name` of the default module.
    pub(crate) fn invoke_url(&self, name: &str) -> String {
        format!("{}/v1/fn/_/{name}", self.api)
    }
}

/// Waits until the Core `core` at `api` answers `GET /health` (30 s at most).
pub(crate) async fn wait_for_core(
    client: &reqwest::Client,
    core: &mut Process,
    api: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        core.check_alive()?;
        if let Ok(r) = client.get(format!("{api}/health")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the Core did not answer in 30 s:\n{}", core.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The string value of `key = "value"` in a flat TOML file.
pub(crate) fn toml_string(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_tokens_file() {
        let text =
            "# comment\nhost = \"http://x\"\ntoken = \"fl_user\"\nadmin_token = \"fl_admin\"\n";
        assert_eq!(toml_string(text, "token").as_deref(), Some("fl_user"));
        assert_eq!(
            toml_string(text, "admin_token").as_deref(),
            Some("fl_admin")
        );
        assert_eq!(toml_string(text, "missing"), None);
    }

    #[test]
    fn reads_our_own_rss() {
        let rss = rss_bytes(std::process::id()).unwrap_or_default();
        assert!(rss > 1 << 20, "{rss}");
    }
}
