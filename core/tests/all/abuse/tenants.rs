//! Tenants: module names tell nothing about other subjects, a revoked subject's name can be
//! given again, and the last admin token cannot be revoked.

use reqwest::StatusCode;
use serde_json::json;

use crate::harness::{Core, CoreOptions, detail};

#[test]
fn module_names_are_per_subject_and_names_and_tokens_are_reusable_but_the_admin_stays() {
    let core = Core::start(CoreOptions::default());
    let admin = core.admin();
    let alice = core.subject("alice");
    let bob = core.subject("bob");
    let module = |name: &str| json!({ "module": { "name": name } });

    // Both create `shared`: no conflict, so nothing tells either that the other has one.
    assert_eq!(
        alice.post_json("/v1/fn", &module("shared")).0,
        StatusCode::CREATED
    );
    assert_eq!(
        bob.post_json("/v1/fn", &module("shared")).0,
        StatusCode::CREATED
    );
    let (status, body) = bob.post_json("/v1/fn", &module("shared"));
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(detail(&body), "module 'shared' already exists");
    for who in [&alice, &bob] {
        let (_, body) = who.get("/v1/fn");
        assert_eq!(
            body["data"],
            json!([{ "name": "_" }, { "name": "shared" }]),
            "{body}"
        );
        assert_eq!(who.get("/v1/fn/shared").0, StatusCode::OK);
    }
    // A rename into a name another subject uses is no conflict either.
    assert_eq!(
        alice.post_json("/v1/fn", &module("mine")).0,
        StatusCode::CREATED
    );
    assert_eq!(
        bob.post_json("/v1/fn", &module("other")).0,
        StatusCode::CREATED
    );
    assert_eq!(
        alice.put_json("/v1/fn/mine", &module("other")).0,
        StatusCode::OK
    );
    let (_, body) = alice.get("/v1/fn");
    assert_eq!(
        body["data"],
        json!([{ "name": "_" }, { "name": "other" }, { "name": "shared" }]),
        "{body}"
    );

    // Bob is revoked; his name can be given again, with a new token; the old one stays dead.
    assert_eq!(
        admin.delete("/v1/admin/subjects/bob").0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(bob.get("/v1/fn").0, StatusCode::UNAUTHORIZED);
    let new_bob = core.subject("bob");
    assert_eq!(bob.get("/v1/fn").0, StatusCode::UNAUTHORIZED);
    let (status, body) = new_bob.get("/v1/fn");
    assert_eq!(status, StatusCode::OK);
    // The new Bob does not inherit the old one's modules.
    assert_eq!(body["data"], json!([{ "name": "_" }]), "{body}");
    assert_eq!(new_bob.get("/v1/fn/shared").0, StatusCode::NOT_FOUND);

    // The admin cannot revoke the last admin token (there would be no way back in).
    let admin_name = "admin";
    let (status, body) = admin.delete(&format!("/v1/admin/subjects/{admin_name}"));
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(detail(&body).contains("last admin"), "{body}");
    assert_eq!(admin.get("/v1/admin/subjects").0, StatusCode::OK);
}
