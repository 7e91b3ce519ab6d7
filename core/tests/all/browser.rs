//! Debian's Chromium, headless, driven through WebDriver (its `chromedriver`) with fantoccini,
//! behind a blocking interface like the rest of the harness. Every wait has a deadline.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::harness::{Process, free_port, wait_until};

/// How long a page may take to show what a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A program on PATH (or at one of `usual` places).
fn program(name: &str, usual: &[&str]) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| usual.iter().map(PathBuf::from).find(|p| p.is_file()))
}

fn needed(name: &str, usual: &[&str]) -> PathBuf {
    program(name, usual).unwrap_or_else(|| {
        panic!(
            "the web console's browser test needs Chromium and its WebDriver, and `{name}` is \
             not installed: run `apt-get install chromium chromium-driver` (.ci/run installs \
             them)"
        )
    })
}

/// One browser session (one Chromium), closed on drop.
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    _driver: Process,
    _profile: tempfile::TempDir,
    screenshots: PathBuf,
}

impl Browser {
    /// Starts `chromedriver` on a free port and a headless Chromium of `width` × `height`.
    pub fn start(width: u32, height: u32) -> Self {
        let driver_bin = needed("chromedriver", &["/usr/bin/chromedriver"]);
        let chromium = needed("chromium", &["/usr/bin/chromium"]);
        let port = free_port();
        let mut command = Command::new(driver_bin);
        command.arg(format!("--port={port}"));
        let mut driver = Process::spawn("chromedriver", command);
        let logs = driver.logs.clone();
        wait_until(PATIENCE, "chromedriver to listen", || {
            assert!(driver.running(), "chromedriver exited:\n{}", logs.text());
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless",
                    // Tests run as root, where Chromium's sandbox cannot start.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--disable-extensions",
                    "--hide-scrollbars",
                    "--lang=en-GB",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = runtime
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(60),
                    ClientBuilder::new(connector)
                        .capabilities(capabilities)
                        .connect(&format!("http://127.0.0.1:{port}")),
                )
                .await
            })
            .unwrap_or_else(|_| panic!("Chromium did not start within 60 s:\n{}", logs.text()))
            .unwrap_or_else(|e| panic!("starting Chromium: {e}\n{}", logs.text()));
        // The suite writes its screenshots beside its own build, so a test run leaves the
        // checkout as it was; FUNLESS_CONSOLE_SCREENSHOTS=docs/console refreshes the committed
        // ones (a relative path is taken from the repository's root).
        let screenshots = match std::env::var_os("FUNLESS_CONSOLE_SCREENSHOTS") {
            Some(dir) => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir),
            None => std::env::temp_dir().join(format!("funless-console-{}", std::process::id())),
        };
        std::fs::create_dir_all(&screenshots).unwrap();
        Self {
            runtime,
            client: Some(client),
            _driver: driver,
            _profile: profile,
            screenshots,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().unwrap()
    }

    /// Runs one WebDriver command with a deadline.
    fn run<T, E: std::fmt::Display>(
        &self,
        what: &str,
        command: impl std::future::Future<Output = Result<T, E>>,
    ) -> T {
        match self
            .runtime
            .block_on(async { tokio::time::timeout(PATIENCE, command).await })
        {
            Ok(Ok(value)) => value,
            Ok(Err(e)) => panic!("{what}: {e}"),
            Err(_) => panic!("{what}: no answer from the browser within {PATIENCE:?}"),
        }
    }

    pub fn goto(&self, url: &str) {
        self.run(&format!("opening {url}"), self.client().goto(url));
    }

    /// The address shown in the browser's address bar.
    pub fn url(&self) -> String {
        self.run("reading the URL", self.client().current_url())
            .to_string()
    }

    /// Runs JavaScript in the page (`arguments[0]`, ... are `args`) and returns its value.
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.run("running a script", self.client().execute(script, args))
    }

    /// The visible text of the first element matching `css` (an SVG element's text), if there
    /// is one.
    pub fn text(&self, css: &str) -> Option<String> {
        self.js(
            "const e = document.querySelector(arguments[0]); \
             return e ? (e.innerText ?? e.textContent) : null;",
            vec![json!(css)],
        )
        .as_str()
        .map(str::to_string)
    }

    /// Waits until the text of `css` satisfies `check`; returns it.
    pub fn wait_text(&self, css: &str, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut last = None;
        while Instant::now() < deadline {
            last = self.text(css);
            if last.as_deref().is_some_and(&check) {
                return last.unwrap_or_default();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out after {PATIENCE:?} waiting for {what} in {css}; it shows {last:?}");
    }

    /// Waits until `css` contains `needle`.
    pub fn wait_contains(&self, css: &str, needle: &str) -> String {
        self.wait_text(css, &format!("{needle:?}"), |t| t.contains(needle))
    }

    /// Waits until something matches `css`.
    pub fn wait_for(&self, css: &str) {
        self.wait_text(css, "the element", |_| true);
    }

    fn element(&self, css: &str) -> fantoccini::elements::Element {
        self.wait_for(css);
        self.run(
            &format!("finding {css}"),
            self.client().find(Locator::Css(css)),
        )
    }

    /// Clicks what `css` matches, once it is there.
    pub fn click(&self, css: &str) {
        let element = self.element(css);
        self.run(&format!("clicking {css}"), element.click());
    }

    /// Replaces the text of an input or text area with `text`, typed.
    pub fn fill(&self, css: &str, text: &str) {
        let element = self.element(css);
        self.run(&format!("clearing {css}"), element.clear());
        self.run(&format!("typing into {css}"), element.send_keys(text));
    }

    /// Picks a file in a file input (as a user choosing it).
    pub fn choose_file(&self, css: &str, path: &Path) {
        let element = self.element(css);
        let path = path.canonicalize().unwrap();
        self.run(
            &format!("choosing {} in {css}", path.display()),
            element.send_keys(&path.to_string_lossy()),
        );
    }

    /// Chooses the option with this value in a select.
    pub fn select(&self, css: &str, value: &str) {
        let element = self.element(css);
        self.run(
            &format!("choosing {value} in {css}"),
            element.select_by_value(value),
        );
    }

    /// Presses keys in whatever has the focus (WebDriver key codes, e.g. "\u{e004}" for Tab).
    pub fn press(&self, keys: &str) {
        let element = self.run("finding the focus", self.client().active_element());
        self.run("pressing keys", element.send_keys(keys));
    }

    /// Resizes the window.
    pub fn resize(&self, width: u32, height: u32) {
        self.run(
            "resizing the window",
            self.client().set_window_size(width, height),
        );
    }

    /// Saves a screenshot of the whole page (the window grown to its height, up to 2,400
    /// pixels, then put back) as `<name>.png` in the screenshot folder (see `start`).
    pub fn screenshot(&self, name: &str) {
        let (width, height) = self.run("reading the window size", self.client().get_window_size());
        let wanted = self.js(
            "window.scrollTo(0, 0); return document.documentElement.scrollHeight \
             + window.outerHeight - window.innerHeight",
            Vec::new(),
        );
        let wanted = wanted.as_u64().unwrap_or(height).clamp(height, 2400);
        self.resize(width as u32, wanted as u32);
        let png = self.run("taking a screenshot", self.client().screenshot());
        self.resize(width as u32, height as u32);
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(self.screenshots.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends the session, and with it Chromium; chromedriver is killed after.
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            });
        }
    }
}
