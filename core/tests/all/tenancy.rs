//! Tenancy: a subject sees and touches only its own modules (its `_` included); another
//! subject's modules are 404, as if they did not exist; the admin sees everything; a revoked
//! token stops working at once.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Client, Core, CoreOptions, detail, example};

fn subject(core: &Core, name: &str) -> Client {
    core.subject(name)
}

#[test]
fn subjects_see_only_their_modules_and_revoked_tokens_stop_at_once() {
    let core = Core::start(CoreOptions {
        embedded_worker: true,
        ..CoreOptions::default()
    });
    core.wait_for_workers(&["embedded"]);
    let (alice, bob, admin) = (subject(&core, "alice"), subject(&core, "bob"), core.admin());

    // Alice: a module of her own and a function in her `_`.
    let (status, body) = alice.post_json("/v1/fn", &json!({ "module": { "name": "amod" } }));
    assert_eq!(status, StatusCode::CREATED, "{body}");
    for module in ["amod", "_"] {
        let (status, body) = alice.upload(module, "hello", example("hello_fl"), false);
        assert_eq!(status, StatusCode::CREATED, "{module}: {body}");
    }
    let (status, body) = alice.invoke("amod", "hello", json!({ "name": "alice" }));
    assert_eq!(
        (status, &body["data"]["payload"]),
        (StatusCode::OK, &json!("Hello alice!"))
    );

    // Bob sees none of it: listing, reading, updating, deleting, renaming, invoking are 404.
    let (_, body) = bob.get("/v1/fn");
    assert_eq!(body["data"], json!([{ "name": "_" }]), "{body}");
    let (_, body) = bob.get("/v1/fn/_");
    assert_eq!(body["data"]["functions"], json!([]), "{body}");
    let attempts = [
        bob.get("/v1/fn/amod"),
        bob.get("/v1/fn/amod/hello"),
        bob.get("/v1/fn/_/hello"),
        bob.invoke("amod", "hello", json!({})),
        bob.invoke("_", "hello", json!({})),
        bob.upload("amod", "hello", example("hello_fl"), true),
        bob.upload("amod", "other", example("hello_fl"), false),
        bob.put_json("/v1/fn/amod", &json!({ "module": { "name": "stolen" } })),
        bob.delete("/v1/fn/amod/hello"),
        bob.delete("/v1/fn/amod"),
    ];
    for (i, (status, body)) in attempts.iter().enumerate() {
        assert_eq!(*status, StatusCode::NOT_FOUND, "attempt {i}: {body}");
        assert!(
            !detail(body).contains('~'),
            "attempt {i} leaks a stored name: {body}"
        );
    }
    // A missing module and someone else's give the same answer.
    assert_eq!(detail(&bob.get("/v1/fn/amod").1), "module 'amod' not found");
    assert_eq!(
        detail(&bob.get("/v1/fn/nomod").1),
        "module 'nomod' not found"
    );

    // Bob's `_` is his own: the same function name does not collide with Alice's.
    let (status, body) = bob.upload("_", "hello", example("hello_fl"), false);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = bob.invoke("_", "hello", json!({ "name": "bob" }));
    assert_eq!(
        (status, &body["data"]["payload"]),
        (StatusCode::OK, &json!("Hello bob!"))
    );
    let (status, body) = alice.invoke("_", "hello", json!({ "name": "alice" }));
    assert_eq!(
        (status, &body["data"]["payload"]),
        (StatusCode::OK, &json!("Hello alice!"))
    );
    // Alice's things are intact.
    assert_eq!(alice.get("/v1/fn/amod/hello").0, StatusCode::OK);

    // The admin sees every module and can read Alice's function; users cannot use admin routes.
    let (_, body) = admin.get("/v1/fn");
    let names: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    // A subject's modules live in its namespace: the admin lists them as `name~<owner id>`.
    let amod = names
        .iter()
        .find(|n| n.starts_with("amod~"))
        .unwrap_or_else(|| panic!("{names:?}"));
    assert!(names.contains(&"_"), "{names:?}");
    assert_eq!(admin.get(&format!("/v1/fn/{amod}/hello")).0, StatusCode::OK);
    let alices_default = names
        .iter()
        .find(|n| n.starts_with("_~"))
        .unwrap()
        .to_string();
    let (status, body) = admin.delete(&format!("/v1/fn/{alices_default}"));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    for (status, body) in [
        alice.get("/v1/admin/subjects"),
        alice.get("/v1/workers"),
        alice.delete("/v1/admin/subjects/bob"),
        alice.delete("/v1/scripts/app/s"),
    ] {
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }

    // Revoked, Bob's token (already used, so cached) stops at once; Alice goes on.
    let (status, _) = admin.delete("/v1/admin/subjects/bob");
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = bob.invoke("_", "hello", json!({}));
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(bob.get("/v1/fn").0, StatusCode::UNAUTHORIZED);
    assert_eq!(alice.get("/v1/fn").0, StatusCode::OK);
    assert_eq!(
        admin.delete("/v1/admin/subjects/nobody").0,
        StatusCode::NOT_FOUND
    );
}
