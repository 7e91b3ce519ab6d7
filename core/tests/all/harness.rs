//! Starting and stopping real processes, and talking to them.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

/// A port free right now on 127.0.0.1.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn target_dir() -> PathBuf {
    // .../target/debug/deps/all-<hash> → .../target/debug
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// A binary of the workspace, built by `cargo test --workspace`.
pub fn bin(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run the suite with `cargo test --workspace` (it builds every binary)",
        path.display()
    );
    path
}

pub use funless_testkit::{example, example_path, js_example, js_example_path};

/// Output lines of a child process, collected by a reader thread.
#[derive(Clone, Default)]
pub struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn follow(&self, stream: impl std::io::Read + Send + 'static) {
        let lines = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
    }

    /// Whether any line contains `needle`.
    pub fn contains(&self, needle: &str) -> bool {
        self.0.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    /// All lines so far.
    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }

    /// The first line containing `needle`.
    pub fn find(&self, needle: &str) -> Option<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains(needle))
            .cloned()
    }
}

/// Waits for `what` to hold, up to `limit`, polling.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out after {limit:?} waiting for {what}");
}

/// A child process killed on drop, whose logs are printed if the test fails.
pub struct Process {
    pub name: String,
    child: Child,
    pub logs: Lines,
}

impl Process {
    pub fn spawn(name: &str, mut command: Command) -> Self {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Functions' log lines too (debug in the Core's log), so that a test searching
            // the logs (secrets.rs) searches them.
            .env(
                "RUST_LOG",
                "info,ractor_cluster=info,funless::function=debug",
            )
            .env("NO_COLOR", "1")
            .env_remove("FUNLESS_COOKIE");
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let logs = Lines::default();
        logs.follow(child.stdout.take().unwrap());
        logs.follow(child.stderr.take().unwrap());
        Self {
            name: name.to_string(),
            child,
            logs,
        }
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends a signal by name (`STOP`, `CONT`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {}", self.name);
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `limit` for the process to exit by itself; its exit code (`None`: still
    /// running, or ended by a signal).
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "----- logs of {} -----\n{}\n-----",
                self.name,
                self.logs.text()
            );
        }
    }
}

/// A running Core process.
pub struct Core {
    pub process: Process,
    pub url: String,
    pub cluster: SocketAddr,
    _data_dir: tempfile::TempDir,
    pub admin_token: String,
    pub token: String,
    pub cookie: String,
}

/// A Core that refused to start ([`Core::try_restart`]): why, and what starts it again.
pub struct StoppedCore {
    pub logs: String,
    data_dir: tempfile::TempDir,
    cluster_port: u16,
    cookie: String,
}

impl StoppedCore {
    /// Starts it again on its data directory, cluster port and cookie.
    pub fn start(self, options: CoreOptions) -> Core {
        Core::launch(options, self.data_dir, self.cluster_port, self.cookie)
    }
}

/// Options of a Core process.
#[derive(Default, Clone)]
pub struct CoreOptions {
    pub embedded_worker: bool,
    pub database_url: Option<String>,
    pub extra: Vec<String>,
    /// Run in this network namespace (`ip netns exec`), listening on every address there,
    /// and reach it at `host`.
    pub netns: Option<InNetns>,
    /// Keep the Core's default egress policy (public addresses only). Otherwise the Core may
    /// reach 127.0.0.0/8, where the tests' sinks and brokers listen.
    pub strict_egress: bool,
}

/// A network namespace to run a process in, and the address the test reaches it at.
#[derive(Clone)]
pub struct InNetns {
    pub name: String,
    pub host: String,
}

impl Core {
    pub fn start(options: CoreOptions) -> Self {
        let cookie = format!("test-cookie-{}", free_port());
        Self::fresh(options, cookie)
    }

    /// A Core with this cookie (a new data directory and cluster port).
    pub fn start_with_cookie(options: CoreOptions, cookie: &str) -> Self {
        Self::fresh(options, cookie.to_string())
    }

    /// A second Core sharing `other`'s database (`options.database_url`, PostgreSQL) and
    /// cookie, with a data directory of its own holding `other`'s first-start tokens (the
    /// tokens are the database's, and only the first Core writes them).
    pub fn start_beside(other: &Core, options: CoreOptions) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        std::fs::copy(other.fl_config(), data_dir.path().join("fl-config.toml")).unwrap();
        // The same cookie: a worker may join both.
        Self::try_launch(options, data_dir, free_port(), other.cookie.clone())
            .unwrap_or_else(|(logs, _)| panic!("core exited:\n{logs}"))
    }

    /// A Core on a new data directory and cluster port. The port was free when chosen, but
    /// another test's process may bind it before this Core does: then it tries another.
    fn fresh(options: CoreOptions, cookie: String) -> Self {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let data_dir = tempfile::tempdir().unwrap();
            match Self::try_launch(options.clone(), data_dir, free_port(), cookie.clone()) {
                Ok(core) => return core,
                Err((logs, _)) if attempts < 5 && logs.contains("Address already in use") => {}
                Err((logs, _)) => panic!("core exited:\n{logs}"),
            }
        }
    }

    /// Kills the Core (SIGKILL) and starts it again on the same data directory, cluster
    /// port and cookie (the API port changes).
    pub fn restart(self, options: CoreOptions) -> Self {
        let Core {
            mut process,
            cluster,
            _data_dir,
            cookie,
            ..
        } = self;
        process.kill();
        drop(process);
        Self::launch(options, _data_dir, cluster.port(), cookie)
    }

    /// As [`Core::restart`], for a start that may be refused: the stopped Core with the
    /// refusal's logs, to start again.
    pub fn try_restart(self, options: CoreOptions) -> Result<Self, StoppedCore> {
        let Core {
            mut process,
            cluster,
            _data_dir,
            cookie,
            ..
        } = self;
        process.kill();
        drop(process);
        let port = cluster.port();
        Self::try_launch(options, _data_dir, port, cookie.clone()).map_err(|(logs, data_dir)| {
            StoppedCore {
                logs,
                data_dir,
                cluster_port: port,
                cookie,
            }
        })
    }

    /// Its data directory (the SQLite store is `funless.db` there).
    pub fn data_dir(&self) -> &std::path::Path {
        self._data_dir.path()
    }

    fn launch(
        options: CoreOptions,
        data_dir: tempfile::TempDir,
        cluster_port: u16,
        cookie: String,
    ) -> Self {
        Self::try_launch(options, data_dir, cluster_port, cookie)
            .unwrap_or_else(|(logs, _)| panic!("core exited:\n{logs}"))
    }

    /// Starts a Core and waits for its API; `Err` with its logs (and the data directory)
    /// when it exits first.
    fn try_launch(
        options: CoreOptions,
        data_dir: tempfile::TempDir,
        cluster_port: u16,
        cookie: String,
    ) -> Result<Self, (String, tempfile::TempDir)> {
        // In a namespace of its own any port is free; the API port is fixed so it is known.
        const NETNS_API_PORT: u16 = 4000;
        let (mut command, listen, cluster_listen) = match &options.netns {
            Some(ns) => {
                let mut command = Command::new("ip");
                command
                    .args(["netns", "exec", &ns.name])
                    .arg(bin("funless-core"));
                (command, format!("0.0.0.0:{NETNS_API_PORT}"), "0.0.0.0")
            }
            None => (
                Command::new(bin("funless-core")),
                "127.0.0.1:0".to_string(),
                "127.0.0.1",
            ),
        };
        command
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--listen", &listen])
            .args(["--cluster-listen", cluster_listen])
            .args(["--cluster-port", &cluster_port.to_string()])
            .args(["--cookie", &cookie]);
        if options.embedded_worker {
            command.arg("--embedded-worker");
        }
        if !options.strict_egress {
            command.args(["--egress-allow-net", "127.0.0.0/8"]);
        }
        if let Some(url) = &options.database_url {
            command.args(["--database-url", url]);
        }
        command.args(&options.extra);
        let mut process = Process::spawn("core", command);
        let logs = process.logs.clone();
        let mut exited = false;
        wait_until(Duration::from_secs(60), "the core's API", || {
            exited = !process.running();
            exited || logs.contains("api listening on")
        });
        if exited && !logs.contains("api listening on") {
            return Err((logs.text(), data_dir));
        }
        let line = logs.find("api listening on").unwrap();
        let addr = line.rsplit("api listening on ").next().unwrap().trim();
        let mut addr: String = addr.chars().take_while(|c| !c.is_whitespace()).collect();
        let mut cluster_host = "127.0.0.1".to_string();
        if let Some(ns) = &options.netns {
            addr = format!("{}:{NETNS_API_PORT}", ns.host);
            cluster_host = ns.host.clone();
        }
        let tokens = std::fs::read_to_string(data_dir.path().join("fl-config.toml")).unwrap();
        let value = |key: &str| -> String {
            tokens
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
                .unwrap()
                .trim_end_matches('"')
                .to_string()
        };
        Ok(Self {
            url: format!("http://{addr}"),
            cluster: SocketAddr::new(cluster_host.parse().unwrap(), cluster_port),
            admin_token: value("admin_token"),
            token: value("token"),
            process,
            _data_dir: data_dir,
            cookie,
        })
    }

    /// The `fl` config file the Core wrote on first start.
    pub fn fl_config(&self) -> PathBuf {
        self._data_dir.path().join("fl-config.toml")
    }

    pub fn client(&self) -> Client {
        Client {
            base: self.url.clone(),
            token: Some(self.token.clone()),
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
        }
    }

    pub fn admin(&self) -> Client {
        Client {
            token: Some(self.admin_token.clone()),
            ..self.client()
        }
    }

    /// Runs `fl` against this Core (its first-start config): exit code, stdout, stderr.
    pub fn fl(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = self.fl_command(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `fl` with these arguments, against this Core (its first-start config) and nothing
    /// from the caller's environment.
    fn fl_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(bin("fl"));
        command
            .args(args)
            .env_clear()
            .env("FL_CONFIG", self.fl_config());
        command
    }

    /// Starts `fl` against this Core with its stdout piped (a command that runs until
    /// killed, such as `svc logs -f`); the caller kills it.
    pub fn fl_spawn(&self, args: &[&str]) -> Child {
        self.fl_command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// A client of a new subject `name`, created by the admin.
    pub fn subject(&self, name: &str) -> Client {
        let (status, body) = self.admin().post_json(
            "/v1/admin/subjects",
            &serde_json::json!({ "subject": { "name": name } }),
        );
        assert_eq!(status, StatusCode::CREATED, "{body}");
        self.client()
            .with_token(body["data"]["token"].as_str().unwrap())
    }

    /// Workers the Core lists.
    pub fn worker_names(&self) -> Vec<String> {
        let (status, body) = self.admin().get("/v1/workers");
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w["state"] == "ready")
            .map(|w| w["name"].as_str().unwrap().to_string())
            .collect()
    }

    /// Each listed worker's name and state (`ready`, `joining`, `lost`).
    pub fn worker_states(&self) -> Vec<(String, String)> {
        let (status, body) = self.admin().get("/v1/workers");
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["name"].as_str().unwrap().to_string(),
                    w["state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    /// Waits until exactly these workers are listed as ready.
    pub fn wait_for_workers(&self, names: &[&str]) {
        self.wait_for_workers_within(names, Duration::from_secs(30));
    }

    /// Waits at most `limit` until exactly these workers are listed as ready.
    pub fn wait_for_workers_within(&self, names: &[&str], limit: Duration) {
        let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        want.sort();
        wait_until(limit, &format!("workers {want:?}"), || {
            self.worker_names() == want
        });
    }
}

/// A running Worker process.
pub struct Worker {
    pub process: Process,
    /// Its precompiled-module folder (kept across a restart with [`Worker::restart`]).
    pub cache_dir: Arc<tempfile::TempDir>,
    /// Its Prometheus endpoint.
    pub metrics_url: String,
    name: String,
    extra: Vec<String>,
    /// How it finds the Core (default `--core <the core's cluster address>`).
    find: Option<Vec<String>>,
    /// A command that runs before the worker and `exec`s it (the same process id).
    wrapper: Vec<String>,
}

impl Worker {
    /// A worker told how to find the Core by `find` (e.g. `--core-dns localhost:PORT`) instead
    /// of `--core`.
    pub fn start_finding(name: &str, core: &Core, find: &[&str], extra: &[&str]) -> Self {
        let find: Vec<String> = find.iter().map(|s| s.to_string()).collect();
        Self::launch_finding(
            name,
            core,
            &core.cookie,
            Arc::new(tempfile::tempdir().unwrap()),
            extra,
            Some(find),
        )
    }

    pub fn start(name: &str, core: &Core) -> Self {
        Self::launch(
            name,
            core,
            &core.cookie,
            Arc::new(tempfile::tempdir().unwrap()),
            &[],
        )
    }

    pub fn start_with(name: &str, core: &Core, extra: &[&str]) -> Self {
        Self::launch(
            name,
            core,
            &core.cookie,
            Arc::new(tempfile::tempdir().unwrap()),
            extra,
        )
    }

    /// A worker started by `wrapper` (a command that ends with `exec "$@"`, given the worker's
    /// command line), e.g. to place it in a cgroup before its first instruction.
    pub fn start_wrapped(name: &str, core: &Core, wrapper: &[&str], extra: &[&str]) -> Self {
        let wrapper: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
        Self::launch_wrapped(
            name,
            core,
            &core.cookie,
            Arc::new(tempfile::tempdir().unwrap()),
            extra,
            None,
            wrapper,
        )
    }

    pub fn start_with_cookie(name: &str, core: &Core, cookie: &str) -> Self {
        Self::launch(
            name,
            core,
            cookie,
            Arc::new(tempfile::tempdir().unwrap()),
            &[],
        )
    }

    /// Kills this worker and starts it again with the same name and cache folder.
    pub fn restart(self, core: &Core) -> Self {
        let (name, dir) = (self.name.clone(), self.cache_dir.clone());
        let extra: Vec<String> = self.extra.clone();
        let find = self.find.clone();
        let wrapper = self.wrapper.clone();
        drop(self);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        Self::launch_wrapped(&name, core, &core.cookie, dir, &extra, find, wrapper)
    }

    fn launch(
        name: &str,
        core: &Core,
        cookie: &str,
        cache_dir: Arc<tempfile::TempDir>,
        extra: &[&str],
    ) -> Self {
        Self::launch_finding(name, core, cookie, cache_dir, extra, None)
    }

    fn launch_finding(
        name: &str,
        core: &Core,
        cookie: &str,
        cache_dir: Arc<tempfile::TempDir>,
        extra: &[&str],
        find: Option<Vec<String>>,
    ) -> Self {
        Self::launch_wrapped(name, core, cookie, cache_dir, extra, find, Vec::new())
    }

    fn launch_wrapped(
        name: &str,
        core: &Core,
        cookie: &str,
        cache_dir: Arc<tempfile::TempDir>,
        extra: &[&str],
        find: Option<Vec<String>>,
        wrapper: Vec<String>,
    ) -> Self {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(bin("funless-worker"));
                command
            }
            None => Command::new(bin("funless-worker")),
        };
        match &find {
            Some(find) => command.args(find),
            None => command.args(["--core", &core.cluster.to_string()]),
        };
        command
            .args(["--name", name])
            .args(["--cluster-listen", "127.0.0.1"])
            .args(["--report-ms", "200"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .args(extra);
        if !extra.contains(&"--cookie-file") {
            command.args(["--cookie", cookie]);
        }
        if !extra.contains(&"--no-disk-cache") {
            command.arg("--cache-dir").arg(cache_dir.path());
        }
        let mut process = Process::spawn(name, command);
        let logs = process.logs.clone();
        wait_until(
            Duration::from_secs(60),
            "the worker's metrics endpoint",
            || {
                assert!(process.running(), "worker exited:\n{}", logs.text());
                logs.contains("metrics listening on")
            },
        );
        let line = logs.find("metrics listening on").unwrap();
        let addr: String = line
            .rsplit("metrics listening on ")
            .next()
            .unwrap()
            .chars()
            .take_while(|c| !c.is_whitespace())
            .collect();
        Self {
            process,
            cache_dir,
            metrics_url: format!("http://{addr}/metrics"),
            name: name.to_string(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            find,
            wrapper,
        }
    }

    /// Successful invocations it ran, whatever the code's source (memory, disk, compiled).
    pub fn invocations_ok(&self) -> f64 {
        ["memory", "disk", "compiled"]
            .iter()
            .map(|source| {
                self.metric(&format!(
                    r#"funless_worker_invocations_total{{source="{source}",outcome="ok"}}"#
                ))
            })
            .sum()
    }

    /// The value of a metric line starting with `series` (name and labels), 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let text = reqwest::blocking::get(&self.metrics_url)
            .unwrap()
            .text()
            .unwrap();
        text.lines()
            .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .map(|v| v.parse().unwrap())
            .unwrap_or(0.0)
    }
}

/// FunLess's function form: `name`, `code` and, if given, `metadata`.
fn function_form(
    name: &str,
    code: Vec<u8>,
    metadata: Option<&Value>,
) -> reqwest::blocking::multipart::Form {
    let mut form = reqwest::blocking::multipart::Form::new().text("name", name.to_string());
    if let Some(metadata) = metadata {
        form = form.text("metadata", metadata.to_string());
    }
    form.part(
        "code",
        reqwest::blocking::multipart::Part::bytes(code).file_name("code.wasm"),
    )
}

/// A small blocking HTTP client speaking the FunLess API.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub token: Option<String>,
    http: reqwest::blocking::Client,
}

fn answer(response: reqwest::blocking::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    // Every error body of every test is exactly FunLess's shape: FunLess's own `fl` refuses
    // any other field.
    if let Some(errors) = body.get("errors") {
        let keys: Vec<&String> = errors
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys, ["detail"], "not FunLess's error shape: {body}");
    }
    (status, body)
}

impl Client {
    pub fn without_token(&self) -> Self {
        Self {
            token: None,
            ..self.clone()
        }
    }

    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_string()),
            ..self.clone()
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }

    pub fn get(&self, path: &str) -> (StatusCode, Value) {
        answer(self.request(reqwest::Method::GET, path).send().unwrap())
    }

    pub fn delete(&self, path: &str) -> (StatusCode, Value) {
        answer(self.request(reqwest::Method::DELETE, path).send().unwrap())
    }

    pub fn post_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        answer(
            self.request(reqwest::Method::POST, path)
                .json(body)
                .send()
                .unwrap(),
        )
    }

    pub fn put_json(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        answer(
            self.request(reqwest::Method::PUT, path)
                .json(body)
                .send()
                .unwrap(),
        )
    }

    pub fn post_raw(&self, path: &str, body: &'static str) -> (StatusCode, Value) {
        answer(
            self.request(reqwest::Method::POST, path)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .unwrap(),
        )
    }

    /// Uploads a function (create, or update with `update`).
    pub fn upload(
        &self,
        module: &str,
        name: &str,
        code: Vec<u8>,
        update: bool,
    ) -> (StatusCode, Value) {
        let form = function_form(name, code, None);
        let (method, path) = if update {
            (reqwest::Method::PUT, format!("/v1/fn/{module}/{name}"))
        } else {
            (reqwest::Method::POST, format!("/v1/fn/{module}"))
        };
        answer(self.request(method, &path).multipart(form).send().unwrap())
    }

    /// Sends any body with any content type.
    pub fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        answer(
            self.request(method, path)
                .header("content-type", content_type)
                .body(body)
                .send()
                .unwrap(),
        )
    }

    /// Like [`Client::send`], but a transport error is `None`: a server that answers 413
    /// while the client is still sending may close the connection before the client reads
    /// the answer.
    pub fn try_send(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Option<(StatusCode, Value)> {
        // A connection of its own: the server closes it after refusing the body.
        let http = reqwest::blocking::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let mut request = http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        request
            .header("content-type", content_type)
            .body(body)
            .send()
            .ok()
            .map(answer)
    }

    /// Uploads a function with a `metadata` part.
    pub fn upload_with(
        &self,
        module: &str,
        name: &str,
        code: Vec<u8>,
        metadata: Value,
    ) -> (StatusCode, Value) {
        let form = function_form(name, code, Some(&metadata));
        answer(
            self.request(reqwest::Method::POST, &format!("/v1/fn/{module}"))
                .multipart(form)
                .send()
                .unwrap(),
        )
    }

    /// FunLess's update: `PUT /v1/fn/{module}/{function}` with the form's `name` set to
    /// `name` (a rename when it differs).
    pub fn update_named(
        &self,
        module: &str,
        function: &str,
        name: &str,
        code: Vec<u8>,
    ) -> (StatusCode, Value) {
        let form = function_form(name, code, None);
        let path = format!("/v1/fn/{module}/{function}");
        answer(
            self.request(reqwest::Method::PUT, &path)
                .multipart(form)
                .send()
                .unwrap(),
        )
    }

    /// Creates a function with FunLess `events` (a JSON list).
    pub fn upload_with_events(
        &self,
        module: &str,
        name: &str,
        code: Vec<u8>,
        events: Value,
    ) -> (StatusCode, Value) {
        self.upload_with_field(module, name, code, "events", events)
    }

    /// Creates a function with FunLess `sinks` (a JSON list).
    pub fn upload_with_sinks(
        &self,
        module: &str,
        name: &str,
        code: Vec<u8>,
        sinks: Value,
    ) -> (StatusCode, Value) {
        self.upload_with_field(module, name, code, "sinks", sinks)
    }

    /// Creates a function `name` with more text fields (`events`, `sinks`, ...).
    pub fn upload_fields(
        &self,
        module: &str,
        name: &str,
        code: Vec<u8>,
        fields: &[(&'static str, Value)],
    ) -> (StatusCode, Value) {
        let mut form = function_form(name, code, None);
        for (field, value) in fields {
            form = form.text(*field, value.to_string());
        }
        answer(
            self.request(reqwest::Method::POST, &format!("/v1/fn/{module}"))
                .multipart(form)
                .send()
                .unwrap(),
        )
    }

    fn upload_with_field(
        &self,
        module: &str,
        name: &str,
        code: Vec<u8>,
        field: &'static str,
        value: Value,
    ) -> (StatusCode, Value) {
        let form = function_form(name, code, None).text(field, value.to_string());
        answer(
            self.request(reqwest::Method::POST, &format!("/v1/fn/{module}"))
                .multipart(form)
                .send()
                .unwrap(),
        )
    }

    /// Posts a multipart form of text fields.
    pub fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut form = reqwest::blocking::multipart::Form::new();
        for (name, value) in fields {
            form = form.text(name.to_string(), value.to_string());
        }
        answer(
            self.request(reqwest::Method::POST, path)
                .multipart(form)
                .send()
                .unwrap(),
        )
    }

    /// Like [`Client::invoke`], but a transport error (a connection reset, ...) is an `Err`
    /// to count rather than a panic.
    pub fn try_invoke(
        &self,
        module: &str,
        name: &str,
        args: Value,
    ) -> Result<(StatusCode, Value), String> {
        self.request(reqwest::Method::POST, &format!("/v1/fn/{module}/{name}"))
            .json(&serde_json::json!({ "args": args }))
            .send()
            .map(answer)
            .map_err(|e| format!("{e:?}"))
    }

    /// Updates function `name` with more text fields (`canary`, ...).
    pub fn update_fields(
        &self,
        module: &str,
        name: &str,
        code: Vec<u8>,
        fields: &[(&'static str, &str)],
    ) -> (StatusCode, Value) {
        let mut form = function_form(name, code, None);
        for (field, value) in fields {
            form = form.text(*field, value.to_string());
        }
        answer(
            self.request(reqwest::Method::PUT, &format!("/v1/fn/{module}/{name}"))
                .multipart(form)
                .send()
                .unwrap(),
        )
    }

    /// POSTs JSON to `path` and also returns the answer's headers.
    pub fn post_with_headers(
        &self,
        path: &str,
        body: &Value,
    ) -> (StatusCode, Value, reqwest::header::HeaderMap) {
        let response = self
            .request(reqwest::Method::POST, path)
            .json(body)
            .send()
            .unwrap();
        let headers = response.headers().clone();
        let (status, body) = answer(response);
        (status, body, headers)
    }

    /// Invokes and also returns the failure reason header (`x-funless-error-reason`).
    pub fn invoke_with_reason(
        &self,
        module: &str,
        name: &str,
        args: Value,
    ) -> (StatusCode, Value, Option<String>) {
        let response = self
            .request(reqwest::Method::POST, &format!("/v1/fn/{module}/{name}"))
            .json(&serde_json::json!({ "args": args }))
            .send()
            .unwrap();
        let reason = response
            .headers()
            .get("x-funless-error-reason")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let (status, body) = answer(response);
        (status, body, reason)
    }

    pub fn invoke(&self, module: &str, name: &str, args: Value) -> (StatusCode, Value) {
        self.post_json(
            &format!("/v1/fn/{module}/{name}"),
            &serde_json::json!({ "args": args }),
        )
    }
}

/// The FunLess error detail of a body.
pub fn detail(body: &Value) -> &str {
    body["errors"]["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no error detail in {body}"))
}

/// A fresh PostgreSQL database on the local server (127.0.0.1:5432, user postgres), dropped
/// on drop. `FUNLESS_TEST_POSTGRES` overrides the server URL (without database name).
pub struct TempDatabase {
    pub url: String,
    name: String,
    server: String,
}

impl TempDatabase {
    pub fn create() -> Self {
        let server = std::env::var("FUNLESS_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let name = format!("funless_e2e_{}_{}", std::process::id(), free_port());
        psql(&server, &format!("CREATE DATABASE {name}"));
        Self {
            url: format!("{server}/{name}"),
            name,
            server,
        }
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        psql(
            &self.server,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(server: &str, sql: &str) {
    let out = Command::new("psql")
        .arg(format!("{server}/postgres"))
        .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("running psql (PostgreSQL's client must be installed)");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
