//! `fl` as a FunLess user runs it: FunLess's `~/.fl/config`, FunLess's command lines and
//! aliases (fl-cli v0.4), and `fn new` / `fn build` / `fn create` from the templates inside
//! `fl`, for Rust and JavaScript with no network, and for Python with componentize-py (and
//! `fn upload NAME file.py`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::http::Method;
use serde_json::json;

use common::*;

/// A FunLess-format `~/.fl/config` under a temporary home.
fn funless_home(server: &str) -> tempfile::TempDir {
    let home = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(home.path().join(".fl")).expect("mkdir");
    std::fs::write(
        home.path().join(".fl/config"),
        format!("api_host={server}\napi_token={USER_TOKEN}\nadmin_token={ADMIN_TOKEN}\nsecret_key_base=kept\n"),
    )
    .expect("writes config");
    home
}

#[test]
fn a_funless_config_file_works_unchanged_and_stays_funless_s() {
    let setup = Setup::new();
    let home = funless_home(&setup.server.url);
    let fl = || Fl::new(Path::new("/unused")).home(home.path());

    assert_eq!(fl().run(&["mod", "list"]).ok().stdout, "_\nm\n");
    assert_eq!(setup.server.one().authorization, bearer(USER_TOKEN));
    fl().run(&["admin", "user", "list"]).ok();
    assert_eq!(setup.server.one().authorization, bearer(ADMIN_TOKEN));

    // FunLess's `fl cfg set` spelling; the file keeps FunLess's format and its other keys.
    fl().run(&["cfg", "set", "api_token", "new-tok"]).ok();
    assert_eq!(
        std::fs::read_to_string(home.path().join(".fl/config")).expect("reads"),
        format!(
            "api_host={}\napi_token=new-tok\nadmin_token={ADMIN_TOKEN}\nsecret_key_base=kept\n",
            setup.server.url
        )
    );
    assert_eq!(
        fl().run(&["config", "get", "api_token"]).ok().stdout,
        "new-tok\n"
    );
    fl().run(&["mod", "list"]).ok();
    assert_eq!(setup.server.one().authorization, bearer("new-tok"));

    // FunLess's host without a protocol.
    let bare = setup.server.url.trim_start_matches("http://").to_string();
    fl().run(&["cfg", "set", "api_host", &bare]).ok();
    fl().run(&["mod", "list"]).ok();
    assert_eq!(setup.server.one().path, "/v1/fn");
}

#[test]
fn funless_command_lines_and_aliases() {
    let setup = Setup::new();
    let fl = || setup.fl();

    // fl fn invoke NAME -m MOD --json '{...}' (FunLess's --json is the arguments).
    let run = fl()
        .run(&[
            "fn",
            "invoke",
            "hello",
            "-m",
            "m",
            "--json",
            r#"{"name":"y"}"#,
        ])
        .ok();
    assert_eq!(run.stdout, "{\n  \"payload\": \"Hello y!\"\n}\n");
    let request = setup.server.one();
    assert_eq!(request.path, "/v1/fn/m/hello");
    assert_eq!(request.json(), json!({"args": {"name": "y"}}));
    // fl fn i NAME --args k=v
    fl().run(&["fn", "i", "hello", "--args", "name=z"]).ok();
    assert_eq!(setup.server.one().json(), json!({"args": {"name": "z"}}));
    // --json alone still prints the raw answer.
    let run = fl().run(&["fn", "invoke", "hello", "--json"]).ok();
    assert_eq!(run.stdout, "{\"data\":{\"payload\":\"Hello World!\"}}\n");
    setup.server.take();

    // fl mod list -c, fl mod get NAME -c, and the short names.
    assert_eq!(
        fl().run(&["mod", "ls", "-c"]).ok().stdout,
        "_\nm\nCount: 2\n"
    );
    assert_eq!(
        fl().run(&["mod", "g", "m", "--count"]).ok().stdout,
        "module: m\nfunctions:\n  hello\n  sum\nCount: 2\n"
    );
    fl().run(&["mod", "c", "m2"]).ok();
    fl().run(&["mod", "up", "m2", "m3"]).ok();
    fl().run(&["mod", "rm", "m3"]).ok();
    let methods: Vec<(String, String)> = setup
        .server
        .take()
        .into_iter()
        .map(|r| (r.method.to_string(), r.path))
        .collect();
    assert_eq!(
        methods,
        [
            ("GET", "/v1/fn"),
            ("GET", "/v1/fn/m"),
            ("POST", "/v1/fn"),
            ("PUT", "/v1/fn/m2"),
            ("DELETE", "/v1/fn/m3"),
        ]
        .map(|(m, p)| (m.to_string(), p.to_string()))
    );

    // fl fn upload NAME FILE -m MOD; fl fn d NAME; fl a u c NAME.
    let (wasm, code) = setup.wasm();
    fl().run(&[
        "fn",
        "up",
        "hello",
        wasm.to_str().expect("utf-8"),
        "-m",
        "m",
    ])
    .ok();
    let request = setup.server.one();
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/fn/m")
    );
    assert_eq!(request.fields.get("code").expect("code").bytes, code);
    fl().run(&["fn", "d", "hello"]).ok();
    assert_eq!(setup.server.one().method, Method::DELETE);
    fl().token(ADMIN_TOKEN).run(&["a", "u", "c", "dave"]).ok();
    assert_eq!(setup.server.one().path, "/v1/admin/subjects");

    // fn update --rename: FunLess's update with a new name.
    fl().run(&[
        "fn",
        "update",
        "hello",
        wasm.to_str().expect("utf-8"),
        "--rename",
        "hi",
    ])
    .ok();
    let request = setup.server.one();
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("PUT", "/v1/fn/_/hello")
    );
    assert_eq!(request.text_field("name").as_deref(), Some("hi"));
}

#[test]
fn a_javascript_function_from_new_to_create() {
    let setup = Setup::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().expect("utf-8");
    let run = setup
        .fl()
        .run(&["fn", "new", "greet", "-l", "js", "-o", out])
        .ok();
    assert!(
        run.stdout.starts_with("created js function greet"),
        "{run:#?}"
    );
    let source = dir.path().join("greet");
    let script = std::fs::read_to_string(source.join("index.js")).expect("index.js");
    assert!(script.contains("function fl_main(args)"), "{script}");
    assert!(script.contains("`greet`"), "{script}");

    // Nothing to compile: the build is the source, under the function's name.
    let dest = dir.path().join("out");
    setup
        .fl()
        .run(&[
            "fn",
            "build",
            "greet",
            source.to_str().expect("utf-8"),
            "-d",
            dest.to_str().expect("utf-8"),
        ])
        .ok();
    assert_eq!(
        std::fs::read_to_string(dest.join("greet.js")).expect("built"),
        script
    );

    // create = build + upload, the language told to the server.
    setup
        .fl()
        .run(&[
            "fn",
            "create",
            "greet",
            source.to_str().expect("utf-8"),
            "-m",
            "m",
        ])
        .ok();
    let request = setup.server.one();
    assert_eq!(request.path, "/v1/fn/m");
    assert_eq!(request.text_field("name").as_deref(), Some("greet"));
    assert_eq!(request.text_field("language").as_deref(), Some("js"));
    assert_eq!(
        request.fields.get("code").expect("code").bytes,
        script.as_bytes()
    );

    // An existing folder is never overwritten.
    let run = setup
        .fl()
        .run(&["fn", "new", "greet", "-l", "js", "-o", out]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stderr.contains("already exists"), "{run:#?}");
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo")
        .to_path_buf()
}

/// The environment cargo needs (the tests run `fl` with a clean one).
fn with_cargo(fl: Fl) -> Fl {
    [
        "PATH",
        "HOME",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
    ]
    .into_iter()
    .filter_map(|key| std::env::var_os(key).map(|value| (key, value)))
    .fold(fl, |fl, (key, value)| fl.env(key, value))
}

#[test]
fn a_rust_function_from_new_to_create_builds_offline() {
    // The template's crates (FunLess's fl-wasm-rs, serde_json) are the examples' own: have
    // them in cargo's cache, then build with the network forbidden.
    let fetched = Command::new(env!("CARGO"))
        .args(["fetch", "--manifest-path"])
        .arg(repo().join("examples/Cargo.toml"))
        .status()
        .expect("cargo fetch");
    assert!(fetched.success());

    let setup = Setup::new();
    let dir = tempfile::tempdir().expect("tempdir");
    setup
        .fl()
        .run(&[
            "fn",
            "new",
            "hellors",
            "--lang",
            "rust",
            "-o",
            dir.path().to_str().expect("utf-8"),
        ])
        .ok();
    let source = dir.path().join("hellors");
    assert!(source.join("Cargo.toml").is_file());
    let offline = |fl: Fl| {
        with_cargo(fl).env("CARGO_NET_OFFLINE", "true").env(
            "CARGO_TARGET_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("fl-rust-template"),
        )
    };
    let dest = dir.path().join("out");
    let run = offline(setup.fl())
        .run(&[
            "fn",
            "b",
            "hellors",
            source.to_str().expect("utf-8"),
            "-d",
            dest.to_str().expect("utf-8"),
        ])
        .ok();
    assert!(run.stdout.contains("hellors.wasm"), "{run:#?}");
    let wasm = std::fs::read(dest.join("hellors.wasm")).expect("built");
    assert!(wasm.starts_with(b"\0asm"), "not WebAssembly");
    let exports = |name: &[u8]| wasm.windows(name.len()).any(|w| w == name);
    assert!(
        exports(b"__invoke") && exports(b"fl_imps"),
        "not a FunLess module"
    );

    offline(setup.fl())
        .run(&[
            "fn",
            "create",
            "hellors",
            source.to_str().expect("utf-8"),
            "-l",
            "rust",
        ])
        .ok();
    let request = setup.server.one();
    assert_eq!(request.path, "/v1/fn/_");
    assert_eq!(request.text_field("language").as_deref(), Some("wasm"));
    assert_eq!(request.fields.get("code").expect("code").bytes, wasm);
}

/// The environment componentize-py and pip need (the tests run `fl` with a clean one).
fn with_python(fl: Fl) -> Fl {
    ["PATH", "HOME", "PYENV_ROOT", "PYENV_VERSION", "CARGO_HOME"]
        .into_iter()
        .filter_map(|key| std::env::var_os(key).map(|value| (key, value)))
        .fold(fl, |fl, (key, value)| fl.env(key, value))
}

/// Whether `code` is a component exporting `wasi:cli/run` (the name is in its type section).
fn is_run_component(code: &[u8]) -> bool {
    let has = |needle: &[u8]| code.windows(needle.len()).any(|w| w == needle);
    // A component's preamble: magic, then version 0x0d and layer 1.
    code.starts_with(b"\0asm\x0d\0\x01\0") && has(b"wasi:cli/run@")
}

#[test]
fn a_python_function_from_new_to_create_and_one_file_uploaded() {
    if !funless_testkit::python_available() {
        return;
    }
    let setup = Setup::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().to_str().expect("utf-8");
    let run = setup
        .fl()
        .run(&["fn", "new", "hello", "-l", "python", "-o", out])
        .ok();
    assert!(
        run.stdout.starts_with("created python function hello"),
        "{run:#?}"
    );
    let source = dir.path().join("hello");
    let app = std::fs::read_to_string(source.join("app.py")).expect("app.py");
    assert!(app.contains("def main(args: dict) -> dict:"), "{app}");

    // Build: componentize-py packs CPython, the entry fl adds and app.py into one component.
    let dest = dir.path().join("out");
    let started = std::time::Instant::now();
    let run = with_python(setup.fl())
        .run(&[
            "fn",
            "build",
            "hello",
            source.to_str().expect("utf-8"),
            "-d",
            dest.to_str().expect("utf-8"),
        ])
        .ok();
    assert!(run.stdout.contains("hello.wasm"), "{run:#?}");
    let built = std::fs::read(dest.join("hello.wasm")).expect("built");
    eprintln!(
        "fl fn build (python hello): {} bytes in {:?}",
        built.len(),
        started.elapsed()
    );
    assert!(is_run_component(&built), "not a wasi:cli/run component");
    // Nothing of the build's plumbing is left in the user's folder but its output.
    let mut names: Vec<String> = std::fs::read_dir(&source)
        .expect("lists")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [".gitignore", "app.py", "build", "requirements.txt"]);

    // create = build + upload, as WebAssembly; then invoke (the fake server knows `hello`).
    with_python(setup.fl())
        .run(&["fn", "create", "hello", source.to_str().expect("utf-8")])
        .ok();
    let request = setup.server.one();
    assert_eq!(request.path, "/v1/fn/_");
    assert_eq!(request.text_field("name").as_deref(), Some("hello"));
    assert_eq!(request.text_field("language").as_deref(), Some("wasm"));
    assert!(is_run_component(
        &request.fields.get("code").expect("code").bytes
    ));
    setup
        .fl()
        .run(&["fn", "invoke", "hello", "-a", "name=Py"])
        .ok();
    let request = setup.server.one();
    assert_eq!(request.path, "/v1/fn/_/hello");
    assert_eq!(request.json(), json!({"args": {"name": "Py"}}));

    // One .py file defining main: built through the same entry and uploaded.
    let file = dir.path().join("double.py");
    std::fs::write(
        &file,
        "def main(args):\n    return {\"x\": 2 * args.get(\"x\", 0)}\n",
    )
    .expect("writes");
    with_python(setup.fl())
        .run(&["fn", "upload", "double", file.to_str().expect("utf-8")])
        .ok();
    let request = setup.server.one();
    assert_eq!(request.text_field("language").as_deref(), Some("wasm"));
    let field = request.fields.get("code").expect("code");
    assert_eq!(field.file_name.as_deref(), Some("double.wasm"));
    assert!(is_run_component(&field.bytes));
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("lists").count(),
        3,
        "a file's build leaves nothing beside it"
    );

    // A file without main fails the build, saying so, and nothing is uploaded.
    let file = dir.path().join("nomain.py");
    std::fs::write(&file, "def handler(args):\n    return args\n").expect("writes");
    let run =
        with_python(setup.fl()).run(&["fn", "upload", "nomain", file.to_str().expect("utf-8")]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stderr.contains("must define main(args)"), "{run:#?}");
    assert!(setup.server.take().is_empty());
}

#[test]
fn without_componentize_py_a_python_build_says_how_to_install_it() {
    let setup = Setup::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("hello.py");
    std::fs::write(&file, "def main(args):\n    return args\n").expect("writes");
    // A PATH with nothing on it.
    let run = setup.fl().env("PATH", dir.path()).run(&[
        "fn",
        "upload",
        "hello",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr.contains("pip install componentize-py"),
        "{run:#?}"
    );
    assert!(setup.server.take().is_empty());
}
