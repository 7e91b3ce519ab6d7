//! The web console (`/ui`) in a real browser: headless Chromium through WebDriver against a
//! real Core and Worker. One browser session walks the pages as an operator would: a wrong
//! token refused, sign-in, upload, invoke, the activation and its logs, the worker's figures
//! moving under load, the cluster's trees, scripts and subjects, a phone-sized screen, update,
//! delete, log out, a user's token revoked while signed in. The screenshots it takes are the
//! ones in docs/console/ when run with `FUNLESS_CONSOLE_SCREENSHOTS=docs/console` (otherwise
//! they go to a temporary folder, so the suite leaves the checkout as it was).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::browser::Browser;
use crate::harness::{Core, CoreOptions, Worker, example, example_path, js_example_path};

/// The number at the start of a text ("3", "12.5/s" → 12.5).
fn number(text: &str) -> f64 {
    let digits: String = text
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse().unwrap_or(f64::NAN)
}

#[test]
fn the_console_works_in_a_real_browser() {
    let core = Core::start(CoreOptions::default());
    let _worker = Worker::start("w1", &core);
    core.wait_for_workers(&["w1"]);
    let admin = core.admin();
    let browser = Browser::start(1280, 900);
    let ui = format!("{}/ui/", core.url);

    // A wrong token is refused with a clear message, and nothing is kept.
    browser.goto(&ui);
    browser.fill("#login-token", "not-a-token");
    browser.click("#login-submit");
    let refusal = browser.wait_contains("#login-error", "refused this token");
    assert!(refusal.contains("Check it and try again"), "{refusal}");
    let kept = browser.js("return sessionStorage.getItem('funless.token')", Vec::new());
    assert!(kept.is_null(), "a refused token was kept: {kept}");
    browser.screenshot("login-refused");

    // Signed in with the admin token: the functions page, empty; the token is in the tab's
    // session storage and never in the address.
    browser.fill("#login-token", &core.admin_token);
    browser.click("#login-submit");
    browser.wait_contains("#functions", "No functions yet");
    browser.wait_contains("#who", "admin token");
    assert!(!browser.url().contains(&core.admin_token));
    let kept = browser.js("return sessionStorage.getItem('funless.token')", Vec::new());
    assert_eq!(kept, json!(core.admin_token));

    // The navigation is keyboard reachable: Tab from the skip link walks its links.
    browser.js("document.querySelector('.skip').focus()", Vec::new());
    let mut reached = Vec::new();
    for _ in 0..2 {
        browser.press("\u{e004}");
        let focused = browser.js(
            "return document.activeElement.textContent.trim()",
            Vec::new(),
        );
        reached.push(focused.as_str().unwrap_or_default().to_string());
    }
    assert_eq!(reached, ["Functions", "Activations"]);

    // Upload hello (FunLess ABI) by picking the file; the list shows its form, size and hash.
    browser.click("#upload summary");
    browser.fill("#upload-name", "hello");
    browser.choose_file("#upload-code", &example_path("hello_fl"));
    browser.click("#upload-submit");
    let created = browser.wait_contains("#upload-result", "Created");
    assert!(created.contains("FunLess ABI"), "{created}");
    assert!(created.contains("Compiled by w1"), "{created}");
    let row = browser.wait_contains(r#"tr[data-fn="_/hello"]"#, "FunLess ABI");
    let (status, body) = admin.get("/v1/fn/_/hello");
    assert_eq!(status, StatusCode::OK, "{body}");
    let hash = body["data"]["hash"].as_str().unwrap();
    assert!(row.contains(&hash[..12]), "{row} lacks {hash}");
    assert!(row.contains("KiB"), "{row}");
    browser.screenshot("functions");

    // Its page: invoke with arguments; the answer, its time and the worker that ran it.
    browser.click(r#"tr[data-fn="_/hello"] a"#);
    browser.fill("#invoke-args", r#"{"name": "Browser"}"#);
    browser.click("#invoke-run");
    let answer = browser.wait_contains(r#"#invoke-result [data-field="answer"]"#, "Hello Browser!");
    assert!(answer.contains("payload"), "{answer}");
    assert_eq!(
        browser
            .text(r#"#invoke-result [data-field="worker"]"#)
            .unwrap(),
        "w1"
    );
    let time = browser
        .text(r#"#invoke-result [data-field="time"]"#)
        .unwrap();
    assert!(time.contains("ms") || time.contains("µs"), "{time}");
    // Arguments that are not a JSON object are stopped in the page, with the reason.
    browser.fill("#invoke-args", "[1, 2]");
    browser.click("#invoke-run");
    browser.wait_contains("#invoke-result", "must be a JSON object");
    browser.fill("#invoke-args", r#"{"name": "Browser"}"#);
    browser.click("#invoke-run");
    browser.wait_contains(r#"#invoke-result [data-field="answer"]"#, "Hello Browser!");
    browser.screenshot("function");

    // The activation, with its logs; then the Activations page filtered to it.
    browser.click(r#"#invoke-result [data-field="activation"] a"#);
    browser.wait_contains(r#"#activation [data-field="logs"]"#, "name=Browser");
    browser.click(r#"#nav a[data-page="activations"]"#);
    browser.select("#act-fn", "_/hello");
    browser.select("#act-outcome", "success");
    browser.click(r#"#act-filter button[type="submit"]"#);
    // The text the wait saw: the list may be drawn again between two reads of it.
    let summary = browser.wait_contains("#activations details summary", "success");
    assert!(
        summary.contains("_/hello") && summary.contains("w1"),
        "{summary}"
    );
    browser.click("#activations details summary");
    browser.wait_contains(
        r#"#activations details [data-field="logs"]"#,
        "name=Browser",
    );
    browser.wait_contains(
        r#"#activations details [data-field="result"]"#,
        "Hello Browser!",
    );
    browser.screenshot("activations");

    // Workers: w1 ready and idle; under load its in-flight figure and the Core's invocations
    // per second rise, and fall back when the load stops.
    let (status, body) = admin.upload("_", "sleep", example("sleep_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    browser.click(r#"#nav a[data-page="workers"]"#);
    let worker = r#"article[data-worker="w1"]"#;
    browser.wait_contains(&format!(r#"{worker} [data-field="state"]"#), "ready");
    browser.wait_text(
        &format!(r#"{worker} [data-field="in_flight"]"#),
        "no invocation in flight",
        |t| t.trim() == "0",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(60);
    let load: Vec<_> = std::iter::repeat_n(("sleep", json!({ "ms": 1500 })), 3)
        .chain([("hello", json!({ "name": "load" }))])
        .map(|(name, args)| {
            let (client, stop) = (admin.clone(), stop.clone());
            thread::spawn(move || {
                let mut calls = 0;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let (status, body) = client.invoke("_", name, args.clone());
                    assert_eq!(status, StatusCode::OK, "{body}");
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    let in_flight = browser.wait_text(
        &format!(r#"{worker} [data-field="in_flight"]"#),
        "invocations in flight under load",
        |t| number(t) >= 1.0,
    );
    let rate = browser.wait_text(
        r##"#chart-rate [data-series="0"]"##,
        "invocations per second under load",
        |t| number(t) > 0.0,
    );
    browser.wait_text(
        r##"#chart-latency [data-series="0"]"##,
        "a latency figure",
        |t| t.contains("ms") || t.contains("µs") || t.contains(" s"),
    );
    // A few readings drawn, for the screenshot to show lines rather than dots.
    browser.wait_text("#chart-rate polyline", "four readings in the chart", |_| {
        let points = browser.js(
            "return document.querySelector('#chart-rate polyline')\
                 .getAttribute('points').split(' ').length",
            Vec::new(),
        );
        points.as_u64().unwrap_or(0) >= 4
    });
    browser.screenshot("workers");
    stop.store(true, Ordering::Relaxed);
    let calls: usize = load.into_iter().map(|t| t.join().unwrap()).sum();
    assert!(calls > 0);
    browser.wait_text(
        &format!(r#"{worker} [data-field="in_flight"]"#),
        "in flight back to 0 after the load",
        |t| t.trim() == "0",
    );
    eprintln!("under load the page showed {in_flight} in flight and {rate}");

    // Cluster: the Core's and w1's trees with restart counts, an APP script and a subject
    // created in the page (the subject's token, shown once, works).
    browser.click(r#"#nav a[data-page="cluster"]"#);
    browser.wait_contains(r#"#tree [data-node="core"]"#, "registry");
    let tree = browser.wait_contains(r#"#tree [data-node="w1"]"#, "running");
    assert!(tree.contains("restart"), "{tree}");
    browser.fill("#script-name", "site");
    browser.fill(
        "#script-text",
        "- default:\n    - workers: \"*\"\n      strategy: platform\n",
    );
    browser.click("#script-submit");
    browser.wait_for(r#"tr[data-script="site"]"#);
    browser.click(r#"tr[data-script="site"] button"#);
    browser.wait_contains("#script-view", "strategy: platform");
    browser.fill("#subject-name", "alice");
    browser.click(r#"#subject-form button[type="submit"]"#);
    let token = browser.wait_text(
        r#"#subject-created [data-field="token"]"#,
        "the new subject's token",
        |t| t.len() > 20,
    );
    let (status, body) = core.client().with_token(token.trim()).get("/v1/fn");
    assert_eq!(status, StatusCode::OK, "{body}");
    browser.wait_for(r#"tr[data-subject="alice"]"#);
    browser.screenshot("cluster");

    // A phone-sized screen: the functions list fits its width (rows become cards).
    browser.resize(390, 844);
    browser.click(r#"#nav a[data-page="functions"]"#);
    browser.wait_for(r#"tr[data-fn="_/hello"]"#);
    let overflow = browser.js(
        "return document.documentElement.scrollWidth - window.innerWidth",
        Vec::new(),
    );
    assert!(
        overflow.as_i64().unwrap_or(i64::MAX) <= 0,
        "the page is wider than the phone by {overflow} px"
    );
    browser.screenshot("phone-functions");
    browser.resize(1280, 900);

    // Update hello with JavaScript and a time limit; then delete it, asked twice; it is gone
    // from the list and from the API.
    browser.click(r#"tr[data-fn="_/hello"] a"#);
    browser.click(".page-function details.panel summary");
    browser.choose_file("#update-code", &js_example_path("hello"));
    browser.fill("#update-timeout", "5000");
    browser.click("#update-submit");
    let saved = browser.wait_contains("#update-result", "Saved");
    assert!(saved.contains("JavaScript"), "{saved}");
    let (status, body) = admin.get("/v1/fn/_/hello");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["abi"], "javascript", "{body}");
    assert_eq!(body["data"]["metadata"]["timeout_ms"], 5000, "{body}");
    // Its versions, drawn again: version 1 rolls back (asked twice) into version 3, with the
    // first upload's code and time limit.
    let abi = body["data"]["abi"].clone();
    browser.js(
        "window.dispatchEvent(new HashChangeEvent('hashchange'))",
        Vec::new(),
    );
    browser.wait_contains("#fn-versions", "current");
    browser.click("#fn-rollback-1");
    browser.click("#fn-rollback-1-confirm");
    browser.wait_contains("#notice", "_/hello is at version 3");
    let (status, body) = admin.get("/v1/fn/_/hello");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["version"], 3, "{body}");
    assert_ne!(body["data"]["abi"], abi, "{body}");
    assert_ne!(body["data"]["metadata"]["timeout_ms"], 5000, "{body}");
    browser.wait_contains("#fn-versions", "rollback to 1");
    // A canary of version 2 shows on its row; promoting it (asked twice) makes it current.
    let (status, body) = admin.put_json(
        "/v1/fn/_/hello/canary",
        &json!({"version": 2, "percent": 30}),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    browser.js(
        "window.dispatchEvent(new HashChangeEvent('hashchange'))",
        Vec::new(),
    );
    browser.wait_contains("#fn-versions", "canary, 30%");
    browser.click("#fn-canary-promote");
    browser.click("#fn-canary-promote-confirm");
    browser.wait_contains("#notice", "_/hello is at version 2");
    let (_, body) = admin.get("/v1/fn/_/hello");
    assert_eq!(body["data"]["version"], 2, "{body}");
    assert!(body["data"].get("canary").is_none(), "{body}");
    browser.click("#fn-delete");
    browser.click("#fn-delete-confirm");
    browser.wait_contains("#notice", "Deleted _/hello");
    browser.wait_for(r#"tr[data-fn="_/sleep"]"#);
    assert!(browser.text(r#"tr[data-fn="_/hello"]"#).is_none());
    let (status, _) = admin.get("/v1/fn/_/hello");
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Log out: the sign-in form again, and the token gone from the tab.
    browser.click("#logout");
    browser.wait_for("#login-token");
    let kept = browser.js("return sessionStorage.getItem('funless.token')", Vec::new());
    assert!(kept.is_null(), "{kept}");

    // A user's token: no admin pages; revoked while signed in, the next request signs the
    // tab out saying why.
    browser.fill("#login-token", token.trim());
    browser.click("#login-submit");
    browser.wait_contains("#who", "a user token");
    browser.click(r#"#nav a[data-page="workers"]"#);
    browser.wait_contains(".page-workers", "needs the admin token");
    let (status, body) = admin.delete("/v1/admin/subjects/alice");
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    browser.click(r#"#nav a[data-page="functions"]"#);
    browser.wait_contains("#login-error", "no longer accepts this token");
    assert_eq!(
        browser.js("return document.getElementById('nav').hidden", Vec::new()),
        json!(true)
    );
}
