//! Python functions: a folder whose `app.py` defines `main(args)` (with an optional
//! requirements.txt), or one `.py` file defining it, becomes the WebAssembly program the
//! platform runs, built by componentize-py (CPython and the code in one WASI 0.2 component).
//!
//! The user writes only `main`. `fl` adds, in a scratch folder that it removes afterwards:
//! - the entry module (`templates/python/shim/funless_main.py`) that reads the JSON args on
//!   stdin, calls `main` and writes its result on stdout, or prints the traceback and fails;
//! - the WIT world it targets (`world.wit`): export `wasi:cli/run`, plus an import of
//!   `wasi:http/outgoing-handler` when the function imports `funless_http` (our helper, added
//!   then);
//! - the function's requirements, installed by pip as pure-Python wheels.
//!
//! The world names WASI packages. Without network use, the only one is `wasi:cli`'s `run`,
//! which fl declares itself (`cli-run.wit`). `wasi:http` brings the WASI packages it is
//! defined with (http, io, clocks, ...), which fl does not carry: it takes them from the
//! machine, from `FUNLESS_WASI_WIT` or else from the `wasmtime-wasi-http` crate in cargo's
//! registry (there on any machine that built FunLess, the version the worker serves).

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The module a Python function's folder is built from.
pub(crate) const ENTRY: &str = "app.py";
/// The requirements file of a folder.
const REQUIREMENTS: &str = "requirements.txt";
/// The folder of a function's folder the built file goes to.
pub(crate) const BUILD_DIR: &str = "build";
/// The tool that packs CPython and the function into a component.
const COMPONENTIZE_PY: &str = "componentize-py";
/// The componentize-py release the entry module and `funless_http` are tested with.
pub(crate) const TESTED_COMPONENTIZE_PY: &str = "0.25.1";
/// The CPython inside that release: what pip picks wheels for.
const GUEST_PYTHON: &str = "3.14";
/// Where to find WASI's WIT packages, when a function needs `wasi:http`.
const WASI_WIT_ENV: &str = "FUNLESS_WASI_WIT";

const SHIM: &str = include_str!("../templates/python/shim/funless_main.py");
const SHIM_MODULE: &str = "funless_main";
const HTTP_HELPER: &str = include_str!("../templates/python/shim/funless_http.py");
const HTTP_MODULE: &str = "funless_http";
const WORLD: &str = include_str!("../templates/python/shim/world.wit");
const WORLD_NAME: &str = "function";
const CLI_RUN: &str = include_str!("../templates/python/shim/cli-run.wit");

/// Builds the function folder `source` (its `app.py`) into `source/build/app.wasm`.
pub(crate) fn build_folder(source: &Path) -> Result<PathBuf> {
    let entry = source.join(ENTRY);
    if !entry.is_file() {
        bail!(
            "{} has no {ENTRY}: a Python function's folder has an {ENTRY} that defines main(args)",
            source.display()
        );
    }
    let out_dir = source.join(BUILD_DIR);
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let out = out_dir.join("app.wasm");
    let scratch = Scratch::new()?;
    let src = scratch.dir("src")?;
    let python_files = copy_source(source, &src)?;
    build(
        &Function {
            module: "app",
            path: &src,
            python_files,
            requirements: Some(source.join(REQUIREMENTS)).filter(|p| p.is_file()),
        },
        &scratch,
        &out,
    )?;
    Ok(out)
}

/// Builds one `.py` file defining `main(args)`; returns the built file, in `scratch`.
pub(crate) fn build_file(file: &Path, scratch: &Scratch) -> Result<PathBuf> {
    let module = file
        .file_stem()
        .and_then(OsStr::to_str)
        .filter(|stem| is_module_name(stem))
        .with_context(|| {
            format!(
                "{}: a Python function's file name must be a module name (letters, digits, _)",
                file.display()
            )
        })?;
    let text = fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    // Only the file itself goes into the function, never what lies beside it.
    let src = scratch.dir("src")?;
    fs::write(src.join(format!("{module}.py")), &text)
        .with_context(|| format!("copying {}", file.display()))?;
    let out = scratch.path.join(format!("{module}.wasm"));
    build(
        &Function {
            module,
            path: &src,
            python_files: vec![(file.to_path_buf(), text)],
            requirements: None,
        },
        scratch,
        &out,
    )?;
    Ok(out)
}

/// Whether `path` names a Python source file.
pub(crate) fn is_python_file(path: &Path) -> bool {
    path.extension().and_then(OsStr::to_str) == Some("py")
}

/// What one build takes.
struct Function<'a> {
    /// The module defining `main`.
    module: &'a str,
    /// The folder on the function's Python path (a copy of its source).
    path: &'a Path,
    /// Its Python sources and their text (to see which helpers they import).
    python_files: Vec<(PathBuf, String)>,
    /// Its requirements file, if it has one.
    requirements: Option<PathBuf>,
}

fn build(function: &Function<'_>, scratch: &Scratch, out: &Path) -> Result<()> {
    if reserved_module(function.module) {
        bail!(
            "{}.py clashes with a module fl adds to every Python function: rename it",
            function.module
        );
    }
    let http = function
        .python_files
        .iter()
        .find(|(_, text)| imports_module(text, HTTP_MODULE))
        .map(|(path, _)| path.as_path());

    let wit = scratch.dir("wit")?;
    let deps = wit.join("deps");
    let world = match http {
        None => {
            fs::create_dir_all(&deps).with_context(|| format!("creating {}", deps.display()))?;
            fs::write(deps.join("cli.wit"), CLI_RUN)?;
            world(&cli_run_version(CLI_RUN)?, None)
        }
        Some(user) => {
            let packages = wasi_packages().with_context(|| {
                format!(
                    "{} imports {HTTP_MODULE}: its requests go through wasi:http, whose WIT \
                     packages fl takes from this machine",
                    user.display()
                )
            })?;
            crate::templates::copy_dir(&packages.dir, &deps)?;
            world(&packages.cli, Some(&packages.http))
        }
    };
    fs::write(wit.join("world.wit"), world)?;

    let shim = scratch.dir("shim")?;
    fs::write(
        shim.join(format!("{SHIM_MODULE}.py")),
        SHIM.replace("{{module}}", function.module),
    )?;
    if http.is_some() {
        fs::write(shim.join(format!("{HTTP_MODULE}.py")), HTTP_HELPER)?;
    }

    // componentize-py adds the site-packages of $VIRTUAL_ENV to the function's path (else the
    // host Python's own): this venv holds the function's requirements and nothing else.
    let venv = scratch.path.join("venv");
    let site_packages = venv.join("lib").join("site-packages");
    fs::create_dir_all(&site_packages)
        .with_context(|| format!("creating {}", site_packages.display()))?;
    if let Some(requirements) = &function.requirements
        && has_requirements(&fs::read_to_string(requirements)?)
    {
        pip_install(requirements, &site_packages)?;
    }

    // Quiet for ~15 s otherwise: CPython is compiled into the function and initialised.
    eprintln!(
        "building {}.py with componentize-py (CPython and the function in one WebAssembly component)",
        function.module
    );
    let status = Command::new(COMPONENTIZE_PY)
        .arg("--quiet")
        .arg("--wit-path")
        .arg(&wit)
        .args(["--world", WORLD_NAME, "componentize", SHIM_MODULE])
        .arg("--python-path")
        .arg(function.path)
        .arg("--python-path")
        .arg(&shim)
        .arg("--output")
        .arg(out)
        .env("VIRTUAL_ENV", &venv)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!(
                "Python functions are built with componentize-py, which is not installed: \
                 pip install componentize-py=={TESTED_COMPONENTIZE_PY}"
            ),
            _ => anyhow::Error::new(e).context("running componentize-py"),
        })?;
    if !status.success() {
        bail!(
            "componentize-py could not build {}.py (its message is above; fl is tested with \
             componentize-py {TESTED_COMPONENTIZE_PY})",
            function.module
        );
    }
    Ok(())
}

/// The world's text: `wasi:cli/run` at the `cli` version, and the outgoing HTTP handler at
/// the `http` version when asked.
fn world(cli: &str, http: Option<&str>) -> String {
    let imports = http
        .map(|v| format!("  import wasi:http/outgoing-handler@{v};\n"))
        .unwrap_or_default();
    WORLD
        .replace("{{cli}}", cli)
        .replace("{{imports}}", &imports)
}

fn cli_run_version(text: &str) -> Result<String> {
    package_version(text, "wasi:cli").context("fl's cli-run.wit names no wasi:cli version")
}

/// The version of `package <name>@<version>` declared in a WIT text.
fn package_version(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line.trim_start().strip_prefix("package ")?.trim_start();
        let version = rest.strip_prefix(name)?.strip_prefix('@')?;
        let end = version
            .find(|c: char| c == ';' || c == '{' || c.is_whitespace())
            .unwrap_or(version.len());
        Some(version[..end].to_string())
    })
}

/// A folder of WASI's WIT packages found on the machine, and the versions in it.
struct WasiPackages {
    dir: PathBuf,
    cli: String,
    http: String,
}

/// WASI's WIT packages (`wasi:http` and what it uses, with `wasi:cli`): the folder named by
/// `FUNLESS_WASI_WIT`, else the newest `wasmtime-wasi-http` crate's in cargo's registry.
fn wasi_packages() -> Result<WasiPackages> {
    if let Some(dir) = std::env::var_os(WASI_WIT_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return read_packages(&dir).with_context(|| {
            format!(
                "{WASI_WIT_ENV}={} holds no usable WASI packages",
                dir.display()
            )
        });
    }
    let registry = cargo_home().map(|home| home.join("registry").join("src"));
    let found = registry
        .as_deref()
        .and_then(|registry| newest_crate_dir(registry, "wasmtime-wasi-http-"))
        .map(|krate| krate.join("wit").join("deps"));
    match found {
        Some(dir) => read_packages(&dir),
        None => bail!(
            "none found: set {WASI_WIT_ENV} to a folder of WASI 0.2 WIT packages (such as the \
             wit/deps folder of the wasmtime-wasi-http crate), or build FunLess from source \
             once, which puts that crate in cargo's registry"
        ),
    }
}

/// The versions of `wasi:cli` and `wasi:http` a folder of WIT packages declares.
fn read_packages(dir: &Path) -> Result<WasiPackages> {
    let mut cli = None;
    let mut http = None;
    for text in wit_texts(dir)? {
        cli = cli.or_else(|| package_version(&text, "wasi:cli"));
        http = http.or_else(|| package_version(&text, "wasi:http"));
    }
    match (cli, http) {
        (Some(cli), Some(http)) => Ok(WasiPackages {
            dir: dir.to_path_buf(),
            cli,
            http,
        }),
        _ => bail!(
            "{} declares no wasi:cli or no wasi:http package",
            dir.display()
        ),
    }
}

/// The `.wit` files of a folder and of its folders (a package may be a file or a folder).
fn wit_texts(dir: &Path) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            texts.extend(wit_texts(&path)?);
        } else if path.extension().and_then(OsStr::to_str) == Some("wit") {
            texts.push(
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
            );
        }
    }
    Ok(texts)
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
}

/// The newest `<prefix><version>` folder of any registry under `registry`.
fn newest_crate_dir(registry: &Path, prefix: &str) -> Option<PathBuf> {
    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    for index in fs::read_dir(registry).ok()?.flatten() {
        let Ok(crates) = fs::read_dir(index.path()) else {
            continue;
        };
        for krate in crates.flatten() {
            let name = krate.file_name();
            let Some(version) = name.to_str().and_then(|n| n.strip_prefix(prefix)) else {
                continue;
            };
            // Release versions only (`48.0.8`), compared number by number.
            let Ok(numbers) = version
                .split('.')
                .map(str::parse::<u64>)
                .collect::<Result<Vec<_>, _>>()
            else {
                continue;
            };
            if best.as_ref().is_none_or(|(b, _)| numbers > *b) {
                best = Some((numbers, krate.path()));
            }
        }
    }
    best.map(|(_, path)| path)
}

/// Installs `requirements` into `target` as pure-Python wheels for the guest's CPython: a
/// package with native code cannot run in WebAssembly.
fn pip_install(requirements: &Path, target: &Path) -> Result<()> {
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg("--target")
        .arg(target)
        .args([
            "--only-binary=:all:",
            "--platform",
            "any",
            "--implementation",
            "py",
        ])
        .args(["--python-version", GUEST_PYTHON])
        .arg("--requirement")
        .arg(requirements)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .context("running python3 -m pip (is Python 3 installed?)")?;
    if !status.success() {
        bail!(
            "pip could not install {} (only pure-Python packages can run in a function)",
            requirements.display()
        );
    }
    Ok(())
}

/// Whether a requirements file names anything (not only comments and blank lines).
fn has_requirements(text: &str) -> bool {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .any(|line| !line.is_empty())
}

/// Whether Python source imports `module` at the start of a line (`import m`, `import a, m`,
/// `import m as x`, `from m import y`).
fn imports_module(text: &str, module: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim_start();
        if let Some(names) = line.strip_prefix("import ") {
            names
                .split(',')
                .any(|name| name.split_whitespace().next() == Some(module))
        } else if let Some(rest) = line.strip_prefix("from ") {
            rest.split_whitespace().next() == Some(module)
        } else {
            false
        }
    })
}

/// Copies a function's folder to `to`, leaving out what is not its source (the build output,
/// caches, virtual environments, hidden folders), and returns its `.py` files and their text.
/// The build runs on the copy: CPython writes its `__pycache__` there, not in the user's
/// folder.
fn copy_source(from: &Path, to: &Path) -> Result<Vec<(PathBuf, String)>> {
    fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    let mut files = Vec::new();
    for entry in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let target = to.join(&name);
        let name = name.to_string_lossy();
        if entry.file_type()?.is_dir() {
            let skipped = name.starts_with('.')
                || matches!(
                    name.as_ref(),
                    BUILD_DIR | "__pycache__" | "venv" | "site-packages"
                );
            if !skipped {
                files.extend(copy_source(&path, &target)?);
            }
            continue;
        }
        fs::copy(&path, &target).with_context(|| format!("copying {}", path.display()))?;
        if is_python_file(&path) {
            let text =
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            files.push((path, text));
        }
    }
    Ok(files)
}

/// A Python module name (letters, digits and `_`, not starting with a digit).
fn is_module_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The modules every build adds, which a function's own module must not shadow.
fn reserved_module(name: &str) -> bool {
    matches!(name, SHIM_MODULE | HTTP_MODULE | "wit_world")
}

/// A scratch folder of one build, removed when dropped.
#[derive(Debug)]
pub(crate) struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub(crate) fn new() -> Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!("fl-python-{}-{nanos}", std::process::id()));
        fs::create_dir(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    fn dir(&self, name: &str) -> Result<PathBuf> {
        let dir = self.path.join(name);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imports_of_the_http_helper_are_seen() {
        for text in [
            "import funless_http\n",
            "import json, funless_http as h\n",
            "def f():\n    import funless_http\n",
            "from funless_http import request\n",
        ] {
            assert!(imports_module(text, "funless_http"), "{text}");
        }
        for text in [
            "import funless_https\n",
            "# funless_http\n",
            "x = 'import funless_http'\n",
            "from funless_httpx import y\n",
        ] {
            assert!(!imports_module(text, "funless_http"), "{text}");
        }
    }

    #[test]
    fn worlds_name_the_versions_found() {
        assert_eq!(cli_run_version(CLI_RUN).ok().as_deref(), Some("0.2.0"));
        let plain = world("0.2.0", None);
        assert!(plain.contains("export wasi:cli/run@0.2.0;\n}"), "{plain}");
        assert!(!plain.contains("{{"), "{plain}");
        let http = world("0.2.12", Some("0.2.12"));
        assert!(
            http.contains(
                "export wasi:cli/run@0.2.12;\n  import wasi:http/outgoing-handler@0.2.12;\n}"
            ),
            "{http}"
        );
        assert_eq!(
            package_version("// x\npackage wasi:http@0.2.12;\n", "wasi:http").as_deref(),
            Some("0.2.12")
        );
        assert_eq!(
            package_version("package wasi:io@0.2.0 {\n", "wasi:io").as_deref(),
            Some("0.2.0")
        );
        assert_eq!(
            package_version("package wasi:cli@0.2.0;", "wasi:http"),
            None
        );
    }

    #[test]
    fn the_newest_registry_copy_wins_and_packages_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = dir.path().join("index.example-1234");
        for version in ["47.0.1", "48.0.8", "48.0.10", "49.0.0-rc1"] {
            let deps = index.join(format!("wasmtime-wasi-http-{version}/wit/deps"));
            fs::create_dir_all(deps.join("io")).expect("mkdir");
            fs::write(deps.join("cli.wit"), "package wasi:cli@0.2.3;\n").expect("write");
            fs::write(deps.join("io/streams.wit"), "package wasi:io@0.2.3;\n").expect("write");
        }
        let newest = newest_crate_dir(dir.path(), "wasmtime-wasi-http-").expect("found");
        assert!(newest.ends_with("wasmtime-wasi-http-48.0.10"), "{newest:?}");
        let deps = newest.join("wit/deps");
        assert!(read_packages(&deps).is_err(), "no wasi:http yet");
        fs::write(deps.join("http.wit"), "package wasi:http@0.2.3;\n").expect("write");
        let packages = read_packages(&deps).expect("packages");
        assert_eq!(
            (packages.cli.as_str(), packages.http.as_str()),
            ("0.2.3", "0.2.3")
        );
    }

    #[test]
    fn requirements_files_of_comments_name_nothing() {
        assert!(!has_requirements("# none yet\n\n   # indented\n"));
        assert!(has_requirements("# parsers\nlark==1.2.2  # pure Python\n"));
        assert!(is_module_name("hello_2") && !is_module_name("2hello"));
        assert!(!is_module_name("my-func") && !is_module_name(""));
        assert!(reserved_module("funless_main") && !reserved_module("app"));
    }
}
