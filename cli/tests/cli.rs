//! End-to-end tests of the `fl` binary against the fake FunLess server of `common`.

mod common;

use axum::http::Method;
use serde_json::{Value, json};

use common::*;

#[test]
fn upload_sends_the_multipart_form() {
    let setup = Setup::new();
    let (wasm, code) = setup.wasm();
    let wasm = wasm.to_str().expect("utf-8 path");
    let run = setup
        .fl()
        .run(&[
            "fn",
            "upload",
            "hello",
            wasm,
            "--capacity",
            "128MiB",
            "--no-retry",
            "--tag",
            "edge",
        ])
        .ok();
    assert_eq!(
        run.stdout,
        "created function _/hello\nhash: 9f86d081884c7d65\nabi: funless\n\
         cached by: worker1@10.0.0.5\nfailed on worker2@10.0.0.6: out of memory\n"
    );

    let request = setup.server.one();
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, "/v1/fn/_");
    assert_eq!(request.authorization, bearer(USER_TOKEN));
    assert_eq!(request.text_field("name").as_deref(), Some("hello"));
    let code_field = request.fields.get("code").expect("code field");
    assert_eq!(code_field.bytes, code);
    assert_eq!(code_field.file_name.as_deref(), Some("hello.wasm"));
    assert_eq!(
        code_field.content_type.as_deref(),
        Some("application/octet-stream")
    );
    assert_eq!(
        request.text_field("wait_for_workers").as_deref(),
        Some("true")
    );
    let metadata: Value =
        serde_json::from_str(&request.text_field("metadata").expect("metadata field"))
            .expect("metadata JSON");
    assert_eq!(
        metadata,
        json!({"capacity": 134217728, "tag": "edge", "retryable": false})
    );
}

#[test]
fn create_with_no_wait_and_a_module() {
    let setup = Setup::new();
    let (wasm, _) = setup.wasm();
    let wasm = wasm.to_str().expect("utf-8 path");
    let run = setup
        .fl()
        .run(&["fn", "create", "hello", wasm, "--module", "m", "--no-wait"])
        .ok();
    assert!(
        run.stdout.starts_with("created function m/hello\n"),
        "{run:#?}"
    );
    assert!(run.stdout.contains("not waited for"), "{run:#?}");

    let request = setup.server.one();
    assert_eq!(request.path, "/v1/fn/m");
    assert_eq!(
        request.text_field("wait_for_workers").as_deref(),
        Some("false")
    );
    assert!(!request.fields.contains_key("metadata"), "{request:#?}");
}

#[test]
fn update_puts_to_the_function() {
    let setup = Setup::new();
    let (wasm, code) = setup.wasm();
    let wasm = wasm.to_str().expect("utf-8 path");
    let run = setup.fl().run(&["fn", "update", "hello", wasm]).ok();
    assert!(
        run.stdout.starts_with("updated function _/hello\n"),
        "{run:#?}"
    );
    let request = setup.server.one();
    assert_eq!(request.method, Method::PUT);
    assert_eq!(request.path, "/v1/fn/_/hello");
    assert_eq!(request.fields.get("code").expect("code").bytes, code);

    // --json prints the server's body untouched.
    let run = setup
        .fl()
        .run(&["fn", "update", "hello", wasm, "--json"])
        .ok();
    let body: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(body, json!({"data": function_created("hello", true)}));
}

#[test]
fn upload_of_a_missing_file_fails_before_any_request() {
    let setup = Setup::new();
    let run = setup
        .fl()
        .run(&["fn", "upload", "hello", "/nonexistent/x.wasm"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr
            .starts_with("error: cannot read /nonexistent/x.wasm"),
        "{run:#?}"
    );
    assert!(setup.server.take().is_empty());
}

#[test]
fn invoke_prints_the_output() {
    let setup = Setup::new();
    let run = setup
        .fl()
        .run(&["fn", "invoke", "hello", "-a", "name=x", "-a", "n=3"])
        .ok();
    assert_eq!(run.stdout, "{\n  \"payload\": \"Hello x!\"\n}\n");
    assert_eq!(run.stderr, "");
    let request = setup.server.one();
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.path, "/v1/fn/_/hello");
    assert_eq!(request.authorization, bearer(USER_TOKEN));
    assert_eq!(request.json(), json!({"args": {"name": "x", "n": 3}}));

    let run = setup
        .fl()
        .run(&[
            "--json",
            "fn",
            "invoke",
            "hello",
            "-m",
            "m",
            "-j",
            r#"{"name":"y","k":[1]}"#,
        ])
        .ok();
    assert_eq!(run.stdout, "{\"data\":{\"payload\":\"Hello y!\"}}\n");
    let request = setup.server.one();
    assert_eq!(request.path, "/v1/fn/m/hello");
    assert_eq!(request.json(), json!({"args": {"name": "y", "k": [1]}}));
}

#[test]
fn http_errors_print_the_detail_and_exit_1() {
    let setup = Setup::new();
    let run = setup.fl().run(&["fn", "invoke", "x"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert_eq!(run.stdout, "");
    assert_eq!(run.stderr, "error: function 'x' not found\n");

    // A body that is not FunLess's error shape: status and raw body.
    let run = setup.fl().run(&["mod", "get", "broken"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert_eq!(
        run.stderr,
        "error: HTTP 502 Bad Gateway: upstream exploded\n"
    );
}

#[test]
fn unreachable_host_is_named() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let host = format!("http://127.0.0.1:{port}");
    let dir = tempfile::tempdir().expect("tempdir");
    let run = Fl::new(&dir.path().join("config"))
        .host(&host)
        .token(USER_TOKEN)
        .run(&["mod", "list"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr
            .starts_with(&format!("error: cannot reach FunLess at {host}: ")),
        "{run:#?}"
    );
    // One short line: the innermost cause, not reqwest's whole chain.
    assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");
    assert!(!run.stderr.contains("error sending request"), "{run:#?}");
}

#[test]
fn usage_errors_exit_2() {
    let setup = Setup::new();
    for args in [
        &["fn", "invoke"][..],
        &["fn", "invoke", "hello", "-a", "novalue"],
        &["fn", "get", "a/b"],
        &["nope"],
    ] {
        let run = setup.fl().run(args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:#?}");
    }
    assert!(setup.server.take().is_empty());
}

#[test]
fn modules() {
    let setup = Setup::new();
    assert_eq!(setup.fl().run(&["mod", "list"]).ok().stdout, "_\nm\n");
    assert_eq!(setup.server.one().path, "/v1/fn");

    assert_eq!(
        setup.fl().run(&["mod", "get", "m"]).ok().stdout,
        "module: m\nfunctions:\n  hello\n  sum\n"
    );
    assert_eq!(setup.server.one().path, "/v1/fn/m");

    assert_eq!(
        setup.fl().run(&["mod", "create", "m2"]).ok().stdout,
        "created module m2\n"
    );
    let request = setup.server.one();
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/fn")
    );
    assert_eq!(request.json(), json!({"module": {"name": "m2"}}));

    assert_eq!(
        setup.fl().run(&["mod", "update", "m2", "m3"]).ok().stdout,
        "renamed module m2 to m3\n"
    );
    let request = setup.server.one();
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("PUT", "/v1/fn/m2")
    );
    assert_eq!(request.json(), json!({"module": {"name": "m3"}}));

    assert_eq!(
        setup.fl().run(&["mod", "delete", "m3"]).ok().stdout,
        "deleted module m3\n"
    );
    let request = setup.server.one();
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("DELETE", "/v1/fn/m3")
    );
}

#[test]
fn function_get_list_delete() {
    let setup = Setup::new();
    let run = setup
        .fl()
        .run(&["fn", "get", "hello", "--module", "m"])
        .ok();
    assert_eq!(
        run.stdout,
        "name: hello\nmodule: m\nhash: 9f86d081884c7d65\nabi: wasi_command\nsize: 1234 bytes\n\
         capacity: 134217728 bytes (128 MiB)\nretryable: no\ntag: edge\ncreated: 2026-01-01T00:00:00Z\nupdated: 2026-01-02T00:00:00Z\n"
    );
    assert_eq!(setup.server.one().path, "/v1/fn/m/hello");

    assert_eq!(setup.fl().run(&["fn", "list"]).ok().stdout, "hello\nsum\n");
    assert_eq!(setup.server.one().path, "/v1/fn/_");

    assert_eq!(
        setup.fl().run(&["fn", "delete", "hello"]).ok().stdout,
        "deleted function _/hello\n"
    );
    let request = setup.server.one();
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("DELETE", "/v1/fn/_/hello")
    );

    let run = setup.fl().run(&["fn", "delete", "nope"]);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.stderr, "error: function 'nope' not found\n");
}

#[test]
fn config_round_trip_and_use() {
    let setup = Setup::new();
    let config = setup.config();
    let fl = || Fl::new(&config);

    fl().run(&["config", "set", "host", &setup.server.url]).ok();
    fl().run(&["config", "set", "token", "cfg-tok"]).ok();
    fl().run(&["config", "set", "admin_token", ADMIN_TOKEN])
        .ok();
    assert_eq!(
        fl().run(&["config", "get", "host"]).ok().stdout,
        format!("{}\n", setup.server.url)
    );
    assert_eq!(
        fl().run(&["config", "get"]).ok().stdout,
        format!(
            "host = {}\ntoken = cfg-tok\nadmin_token = {ADMIN_TOKEN}\n",
            setup.server.url
        )
    );
    let all: Value =
        serde_json::from_str(&fl().run(&["config", "get", "--json"]).ok().stdout).expect("JSON");
    assert_eq!(all["token"], "cfg-tok");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&config)
            .expect("config exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let run = fl().run(&["config", "set", "colour", "blue"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr
            .contains("valid keys are host, token, admin_token"),
        "{run:#?}"
    );
    let run = fl().run(&["config", "set", "host", "https://example.org:4000"]);
    assert_eq!(run.code, Some(1), "{run:#?}");

    // Host and token come from the config file now.
    assert!(setup.server.take().is_empty());
    assert_eq!(fl().run(&["mod", "list"]).ok().stdout, "_\nm\n");
    assert_eq!(setup.server.one().authorization, bearer("cfg-tok"));

    // FL_TOKEN wins over the config file.
    fl().token("env-tok").run(&["mod", "list"]).ok();
    assert_eq!(setup.server.one().authorization, bearer("env-tok"));
    // And --token over FL_TOKEN.
    fl().token("env-tok")
        .run(&["mod", "list", "--token", "flag-tok"])
        .ok();
    assert_eq!(setup.server.one().authorization, bearer("flag-tok"));

    // Admin commands use admin_token.
    let run = fl().run(&["admin", "user", "create", "carol"]).ok();
    assert_eq!(run.stdout, "name: carol\ntoken: secret-token-1234\n");
    assert!(run.stderr.contains("shown only this once"), "{run:#?}");
    let request = setup.server.one();
    assert_eq!(request.path, "/v1/admin/subjects");
    assert_eq!(request.authorization, bearer(ADMIN_TOKEN));
    assert_eq!(request.json(), json!({"subject": {"name": "carol"}}));
}

#[test]
fn app_script_commands() {
    let setup = Setup::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = dir.path().join("site.yml");
    std::fs::write(&yaml, "- default:\n    - workers: \"*\"\n").expect("write");
    let yaml = yaml.to_str().expect("utf-8 path");

    let run = setup
        .fl()
        .token(ADMIN_TOKEN)
        .run(&["app", "create", "site", yaml])
        .ok();
    assert_eq!(run.stdout, "created APP script site\n");
    let request = setup.server.one();
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/v1/scripts/app")
    );
    assert_eq!(request.fields.get("name").expect("name").bytes, b"site");
    assert_eq!(
        request.fields.get("file").expect("file").bytes,
        b"- default:\n    - workers: \"*\"\n"
    );

    assert_eq!(setup.fl().run(&["app", "list"]).ok().stdout, "site\n");
    assert_eq!(setup.server.one().path, "/v1/scripts/app");
    assert_eq!(
        setup.fl().run(&["app", "get", "site"]).ok().stdout,
        "- default:\n    - workers: \"*\"\n"
    );
    assert_eq!(setup.server.one().path, "/v1/scripts/app/site");
    let run = setup
        .fl()
        .token(ADMIN_TOKEN)
        .run(&["app", "delete", "site"])
        .ok();
    assert_eq!(run.stdout, "deleted APP script site\n");
    assert_eq!(setup.server.one().method.as_str(), "DELETE");

    // A missing file is the user's error, said before any request.
    let run = setup
        .fl()
        .token(ADMIN_TOKEN)
        .run(&["app", "create", "x", "/nonexistent.yml"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stderr.contains("reading /nonexistent.yml"), "{run:#?}");
    assert!(setup.server.take().is_empty());
}

#[test]
fn admin_commands() {
    let setup = Setup::new();
    let run = setup
        .fl()
        .token(ADMIN_TOKEN)
        .run(&["admin", "user", "list"])
        .ok();
    assert_eq!(run.stdout, "alice\nbob\n");
    assert_eq!(setup.server.one().authorization, bearer(ADMIN_TOKEN));

    let run = setup
        .fl()
        .token(ADMIN_TOKEN)
        .run(&["admin", "user", "revoke", "bob"])
        .ok();
    assert_eq!(run.stdout, "revoked subject bob\n");
    let request = setup.server.one();
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("DELETE", "/v1/admin/subjects/bob")
    );

    // A user token is refused, with a hint.
    let run = setup.fl().run(&["admin", "user", "list"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr
            .starts_with("error: this endpoint needs an admin token\nhint: "),
        "{run:#?}"
    );
}

#[test]
fn missing_token_gets_a_hint() {
    let setup = Setup::new();
    let run = Fl::new(&setup.config())
        .host(&setup.server.url)
        .run(&["fn", "list"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(
        run.stderr
            .starts_with("error: missing Authorization header\nhint: no token given"),
        "{run:#?}"
    );
    assert_eq!(setup.server.one().authorization, None);
}
