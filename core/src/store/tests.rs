//! One suite, run against SQLite (in a temporary directory) and a real PostgreSQL server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const _: () = {
    const fn assert_send_sync_clone<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync_clone::<Store>();
};

fn new_function(module: &str, name: &str, code: &[u8]) -> NewFunction {
    NewFunction {
        module: module.to_string(),
        name: name.to_string(),
        code: bytes::Bytes::copy_from_slice(code),
        hash: hex::encode(<sha2::Sha256 as sha2::Digest>::digest(code)),
        abi: "wasi-p1".to_string(),
        capacity_bytes: 64 << 20,
        retryable: true,
        timeout_ms: 60_000,
        allow_hosts: "[]".into(),
        tag: None,
        events: None,
        sinks: None,
        created_by: Some("tester".into()),
        config: EMPTY_CONFIG.into(),
    }
}

fn names<T>(rows: &[T], name: impl Fn(&T) -> &str) -> Vec<String> {
    rows.iter().map(|r| name(r).to_string()).collect()
}

fn blob(len: usize) -> Vec<u8> {
    // Every byte value, zeros included, in a pseudo-random order.
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

/// The whole suite, against a fresh, empty database at `url`.
async fn suite(url: &str, backend: &str) {
    // Two processes starting at once on a fresh database: both succeed, one default module.
    let (a, b) = tokio::join!(Store::open(url), Store::open(url));
    let store = a.expect("first open");
    let other = b.expect("second open");
    assert_eq!(store.backend(), backend);
    other.close().await;
    let again = Store::open(url).await.expect("third open");
    again.close().await;
    let modules = store.list_modules().await.expect("list modules");
    assert_eq!(names(&modules, |m| &m.name), [DEFAULT_MODULE]);
    assert_eq!(modules[0].owner_id, None);

    modules_suite(&store).await;
    functions_suite(&store).await;
    versions_suite(&store).await;
    canary_suite(&store).await;
    pending_suite(&store).await;
    super::sink_deliveries::tests::suite(&store).await;
    subjects_suite(&store).await;
    scripts_suite(&store).await;
    super::services::tests::suite(&store).await;
    owned_suite(&store).await;
    concurrency_suite(&store).await;
    store.close().await;
}

async fn modules_suite(store: &Store) {
    assert_eq!(store.get_module("m1").await.expect("get"), None);
    let m1 = store.create_module("m1", None).await.expect("create m1");
    assert_eq!(m1.name, "m1");
    assert_eq!(store.get_module("m1").await.expect("get"), Some(m1.clone()));
    assert!(matches!(
        store.create_module("m1", None).await,
        Err(StoreError::Conflict(m)) if m == "module 'm1' already exists"
    ));
    assert!(matches!(
        store.create_module(DEFAULT_MODULE, None).await,
        Err(StoreError::Conflict(_))
    ));
    let owner = store
        .create_subject("owner", "owner-hash", false)
        .await
        .expect("create owner");
    let owned = store
        .create_module("a-owned", Some(owner.id))
        .await
        .expect("create owned module");
    assert_eq!(owned.owner_id, Some(owner.id));
    assert_eq!(store.get_module("a-owned").await.expect("get"), Some(owned));
    assert!(matches!(
        store.create_module("orphan", Some(owner.id + 1000)).await,
        Err(StoreError::Invalid(_))
    ));
    let modules = store.list_modules().await.expect("list");
    assert_eq!(names(&modules, |m| &m.name), ["_", "a-owned", "m1"]);

    // Rename: errors, then keeps the functions.
    assert!(matches!(
        store.rename_module(DEFAULT_MODULE, "x").await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        store.rename_module("missing", "x").await,
        Err(StoreError::NotFound(m)) if m == "module 'missing' not found"
    ));
    assert!(matches!(
        store.rename_module("m1", "a-owned").await,
        Err(StoreError::Conflict(m)) if m == "module 'a-owned' already exists"
    ));
    assert!(matches!(
        store.rename_module("m1", DEFAULT_MODULE).await,
        Err(StoreError::Conflict(_))
    ));
    let f = store
        .create_function(new_function("m1", "f", b"code of f"))
        .await
        .expect("create m1/f");
    store.rename_module("m1", "m2").await.expect("rename");
    assert_eq!(store.get_module("m1").await.expect("get"), None);
    let m2 = store
        .get_module("m2")
        .await
        .expect("get")
        .expect("m2 exists");
    assert_eq!(m2.id, m1.id);
    assert_eq!(m2.created_at, m1.created_at);
    let listed = store.list_functions("m2").await.expect("list m2");
    assert_eq!(
        listed,
        [FunctionRow {
            module: "m2".into(),
            ..f
        }]
    );
    assert!(matches!(
        store.list_functions("m1").await,
        Err(StoreError::NotFound(_))
    ));

    // Delete: errors, then cascades and returns what went.
    assert!(matches!(
        store.delete_module(DEFAULT_MODULE).await,
        Err(StoreError::Invalid(m)) if m == "the default module '_' cannot be deleted"
    ));
    assert!(matches!(
        store.delete_module("missing").await,
        Err(StoreError::NotFound(m)) if m == "module 'missing' not found"
    ));
    let g = store
        .create_function(new_function("m2", "g", b"code of g"))
        .await
        .expect("create m2/g");
    let kept = store
        .create_function(new_function(
            DEFAULT_MODULE,
            "f",
            b"same name, other module",
        ))
        .await
        .expect("create _/f");
    let deleted = store.delete_module("m2").await.expect("delete m2");
    assert_eq!(names(&deleted, |f| &f.name), ["f", "g"]);
    assert_eq!(deleted[1], g);
    assert!(deleted.iter().all(|f| f.module == "m2"));
    assert_eq!(store.get_module("m2").await.expect("get"), None);
    assert!(matches!(
        store.list_functions("m2").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store.function_code("m2", "f", &g.hash).await.expect("code"),
        None
    );
    assert_eq!(store.get_function("m2", "g").await.expect("get"), None);
    // A new module with the old name starts empty.
    store.create_module("m2", None).await.expect("recreate m2");
    assert_eq!(store.list_functions("m2").await.expect("list"), []);
    assert!(
        store
            .delete_module("m2")
            .await
            .expect("delete empty")
            .is_empty()
    );
    assert!(
        store
            .delete_module("a-owned")
            .await
            .expect("delete")
            .is_empty()
    );
    // Functions of other modules are untouched.
    assert_eq!(
        store.get_function(DEFAULT_MODULE, "f").await.expect("get"),
        Some(kept)
    );
    store
        .delete_function(DEFAULT_MODULE, "f")
        .await
        .expect("clean up _/f");
}

async fn functions_suite(store: &Store) {
    assert!(matches!(
        store.create_function(new_function("nope", "f", b"x")).await,
        Err(StoreError::NotFound(m)) if m == "module 'nope' not found"
    ));
    assert!(matches!(
        store.list_functions("nope").await,
        Err(StoreError::NotFound(_))
    ));
    store.create_module("fns", None).await.expect("create fns");
    assert_eq!(store.list_functions("fns").await.expect("list"), []);

    // Three `function_code` rows, the last one short.
    let code = blob(2 * 1024 * 1024 + 1234);
    let mut new = new_function("fns", "big", &code);
    new.tag = Some("gpu".into());
    new.events = Some(r#"[{"type":"mqtt","params":{"topic":"t"}}]"#.into());
    new.sinks = Some(r#"[{"type":"http","params":{}}]"#.into());
    new.capacity_bytes = 4096 << 20;
    new.retryable = false;
    new.timeout_ms = 5_000;
    new.allow_hosts = r#"["10.0.0.5:8080"]"#.into();
    let big = store
        .create_function(new.clone())
        .await
        .expect("create big");
    assert_eq!(big.module, "fns");
    assert_eq!(big.name, "big");
    assert_eq!(big.hash, new.hash);
    assert_eq!(big.size, 2 * 1024 * 1024 + 1234);
    assert_eq!(big.capacity_bytes, 4096 << 20);
    assert!(!big.retryable);
    assert_eq!(big.timeout_ms, 5_000);
    assert_eq!(big.allow_hosts, r#"["10.0.0.5:8080"]"#);
    assert_eq!(big.tag.as_deref(), Some("gpu"));
    assert_eq!(big.events, new.events);
    assert_eq!(big.sinks, new.sinks);
    assert_eq!(big.created_at, big.updated_at);
    assert_eq!(
        store.get_function("fns", "big").await.expect("get"),
        Some(big.clone())
    );
    assert_eq!(big.version, 1);
    let stored = store
        .function_code("fns", "big", &new.hash)
        .await
        .expect("code")
        .expect("big has code");
    assert!(stored == code, "the code must round-trip byte for byte");
    assert!(matches!(
        store.create_function(new.clone()).await,
        Err(StoreError::Conflict(m)) if m == "function 'fns/big' already exists"
    ));

    let a = store
        .create_function(new_function("fns", "a", b"\0a\0"))
        .await
        .expect("create a");
    let listed = store.list_functions("fns").await.expect("list");
    assert_eq!(listed, [a.clone(), big.clone()]);
    assert_eq!(store.get_function("fns", "zz").await.expect("get"), None);
    assert_eq!(
        store
            .function_code("fns", "zz", &a.hash)
            .await
            .expect("code"),
        None
    );
    assert_eq!(store.get_function("zz", "a").await.expect("get"), None);

    // Update replaces everything but the id and creation time.
    let updated = store
        .update_function("big", new_function("fns", "big", b"small now"), 10)
        .await
        .expect("update big")
        .row;
    assert_eq!(updated.version, 2);
    assert_eq!(updated.id, big.id);
    assert_eq!(updated.created_at, big.created_at);
    assert!(updated.updated_at > big.updated_at);
    assert_ne!(updated.hash, big.hash);
    assert_eq!(updated.size, 9);
    assert_eq!(updated.capacity_bytes, 64 << 20);
    assert!(updated.retryable);
    assert_eq!((updated.tag.clone(), updated.events.clone()), (None, None));
    assert_eq!(
        store.get_function("fns", "big").await.expect("get"),
        Some(updated.clone())
    );
    assert_eq!(
        store
            .function_code("fns", "big", &updated.hash)
            .await
            .expect("code"),
        Some(b"small now".to_vec())
    );
    // The first version's code is kept with it.
    assert!(
        store
            .function_code("fns", "big", &big.hash)
            .await
            .expect("code")
            == Some(code)
    );
    assert!(matches!(
        store.update_function("zz", new_function("fns", "zz", b"x"), 10).await,
        Err(StoreError::NotFound(m)) if m == "function 'fns/zz' not found"
    ));
    assert!(matches!(
        store
            .update_function("big", new_function("zz", "big", b"x"), 10)
            .await,
        Err(StoreError::NotFound(_))
    ));
    // An update under another name renames (FunLess's PUT); a taken name is a conflict and
    // changes nothing.
    assert!(matches!(
        store.update_function("big", new_function("fns", "a", b"x"), 10).await,
        Err(StoreError::Conflict(m)) if m.contains("fns/a")
    ));
    let renamed = store
        .update_function("a", new_function("fns", "a2", b"\0a\0"), 10)
        .await
        .expect("rename a")
        .row;
    assert_eq!((renamed.id, renamed.name.as_str()), (a.id, "a2"));
    assert_eq!(store.get_function("fns", "a").await.expect("get"), None);
    let back = store
        .update_function("a2", new_function("fns", "a", b"\0a\0"), 10)
        .await
        .expect("rename back")
        .row;
    assert_eq!(back.id, a.id);
    assert_eq!(
        store.get_function("fns", "big").await.expect("get"),
        Some(updated.clone())
    );

    // Delete returns the row and the code its versions held.
    let (deleted, mut hashes) = store.delete_function("fns", "big").await.expect("delete");
    assert_eq!(deleted, updated);
    hashes.sort();
    let mut expected = vec![big.hash.clone(), updated.hash.clone()];
    expected.sort();
    assert_eq!(hashes, expected);
    assert!(matches!(
        store.delete_function("fns", "big").await,
        Err(StoreError::NotFound(m)) if m == "function 'fns/big' not found"
    ));
    assert!(matches!(
        store.delete_function("zz", "a").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.list_functions("fns").await.expect("list"), [back]);
    assert_eq!(store.delete_module("fns").await.expect("delete").len(), 1);
}

async fn versions_suite(store: &Store) {
    store.create_module("vs", None).await.expect("create vs");
    let v1 = store
        .create_function(new_function("vs", "f", b"one"))
        .await
        .expect("create");
    let v2 = store
        .update_function("f", new_function("vs", "f", b"two"), 3)
        .await
        .expect("update")
        .row;
    let listed = store.list_versions("vs", "f").await.expect("list");
    assert_eq!(listed.iter().map(|v| v.version).collect::<Vec<_>>(), [2, 1]);
    assert_eq!(listed[1].hash, v1.hash);
    assert_eq!(listed[0].created_by.as_deref(), Some("tester"));
    assert_eq!(listed[0].rollback_of, None);

    // A rollback is a new version with the old code and metadata; no code is stored again.
    let back = store
        .rollback_function("vs", "f", 1, Some("ops"), 3)
        .await
        .expect("rollback");
    assert_eq!(back.row.version, 3);
    assert_eq!(back.row.hash, v1.hash);
    assert!(back.dropped_hashes.is_empty());
    assert_eq!(
        store.get_function("vs", "f").await.expect("get"),
        Some(back.row.clone())
    );
    let v3 = store
        .get_version("vs", "f", 3)
        .await
        .expect("get")
        .expect("v3");
    assert_eq!(
        (v3.rollback_of, v3.created_by.as_deref()),
        (Some(1), Some("ops"))
    );
    assert!(matches!(
        store.rollback_function("vs", "f", 9, None, 3).await,
        Err(StoreError::NotFound(m)) if m == "function 'vs/f' has no version 9"
    ));
    assert!(matches!(
        store.rollback_function("vs", "nope", 1, None, 3).await,
        Err(StoreError::NotFound(_))
    ));

    // Only the 3 newest are kept: version 1 goes, its code stays (version 3 holds it); then
    // version 2 goes with its code.
    let v4 = store
        .update_function("f", new_function("vs", "f", b"four"), 3)
        .await
        .expect("update");
    assert!(v4.dropped_hashes.is_empty());
    let v5 = store
        .update_function("f", new_function("vs", "f", b"five"), 3)
        .await
        .expect("update");
    assert_eq!(v5.dropped_hashes, std::slice::from_ref(&v2.hash));
    assert_eq!(
        store
            .list_versions("vs", "f")
            .await
            .expect("list")
            .iter()
            .map(|v| v.version)
            .collect::<Vec<_>>(),
        [5, 4, 3]
    );
    assert_eq!(
        store
            .function_code("vs", "f", &v2.hash)
            .await
            .expect("code"),
        None
    );
    assert_eq!(
        store
            .function_code("vs", "f", &v1.hash)
            .await
            .expect("code"),
        Some(b"one".to_vec())
    );
    assert_eq!(store.get_version("vs", "f", 1).await.expect("get"), None);

    // A configuration change is a new version with the same code; a rollback restores the
    // configuration with the code.
    let configured = store
        .configure_function("vs", "f", 5, r#"{"K":"v"}"#, Some("ops"), 10)
        .await
        .expect("configure");
    assert_eq!(configured.row.version, 6);
    assert_eq!(configured.row.hash, v5.row.hash);
    assert_eq!(configured.row.config, r#"{"K":"v"}"#);
    assert!(configured.dropped_hashes.is_empty());
    assert_eq!(
        store.get_function("vs", "f").await.expect("get"),
        Some(configured.row.clone())
    );
    let restored = store
        .rollback_function("vs", "f", 5, None, 10)
        .await
        .expect("rollback");
    assert_eq!(
        (restored.row.version, restored.row.config.as_str()),
        (7, "{}")
    );
    let v6 = store
        .get_version("vs", "f", 6)
        .await
        .expect("get")
        .expect("v6");
    assert_eq!((v6.config.as_str(), v6.rollback_of), (r#"{"K":"v"}"#, None));
    assert!(matches!(
        store
            .configure_function("vs", "nope", 1, "{}", None, 10)
            .await,
        Err(StoreError::NotFound(_))
    ));
    // A change computed from an older version is refused.
    assert!(matches!(
        store.configure_function("vs", "f", 6, "{}", None, 10).await,
        Err(StoreError::Conflict(_))
    ));
    store
        .configure_module("vs", "{}", r#"{"M":"1"}"#)
        .await
        .expect("configure module");
    assert!(matches!(
        store.configure_module("vs", "{}", r#"{"M":"2"}"#).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store
            .get_module("vs")
            .await
            .expect("get")
            .expect("vs")
            .config,
        r#"{"M":"1"}"#
    );
    assert!(matches!(
        store.configure_module("nope", "{}", "{}").await,
        Err(StoreError::NotFound(_))
    ));

    // Deleting: never the current version; an old one goes, with its code once unheld.
    assert!(matches!(
        store.delete_version("vs", "f", 7).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        store.delete_version("vs", "f", 3).await.expect("delete"),
        Some(v1.hash.clone())
    );
    assert!(matches!(
        store.delete_version("vs", "f", 3).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.list_versions("vs", "nope").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.delete_module("vs").await.expect("delete").len(), 1);
}

/// The kept version numbers of `module/name`, newest first.
async fn version_numbers(store: &Store, module: &str, name: &str) -> Vec<i64> {
    store
        .list_versions(module, name)
        .await
        .expect("list")
        .iter()
        .map(|v| v.version)
        .collect()
}

async fn canary_suite(store: &Store) {
    store.create_module("cs", None).await.expect("create cs");
    let v1 = store
        .create_function(new_function("cs", "f", b"one"))
        .await
        .expect("create");
    assert_eq!(v1.canary(), None);
    assert!(matches!(
        store.end_canary("cs", "f").await,
        Err(StoreError::NotFound(m)) if m == "function 'cs/f' has no canary"
    ));
    assert!(matches!(
        store.promote_canary("cs", "f", None, 3).await,
        Err(StoreError::Conflict(_))
    ));

    // An update staged as a canary is version 2; version 1 stays current.
    let staged = store
        .stage_canary(new_function("cs", "f", b"two"), 10, 2)
        .await
        .expect("stage");
    assert_eq!(
        (staged.row.version, staged.row.canary()),
        (2, Some((2, 10)))
    );
    let current = store
        .get_function("cs", "f")
        .await
        .expect("get")
        .expect("f");
    assert_eq!(
        (current.version, &current.hash, current.canary()),
        (1, &v1.hash, Some((2, 10)))
    );
    let since = current.canary_since.expect("a start time");
    assert_eq!(version_numbers(store, "cs", "f").await, [2, 1]);
    assert!(matches!(
        store
            .stage_canary(new_function("cs", "nope", b"x"), 10, 2)
            .await,
        Err(StoreError::NotFound(_))
    ));

    // A new share of the same version keeps its start; the current version and versions
    // not kept are refused.
    let row = store.set_canary("cs", "f", 2, 30).await.expect("set");
    assert_eq!(
        (row.canary(), row.canary_since),
        (Some((2, 30)), Some(since))
    );
    assert!(matches!(
        store.set_canary("cs", "f", 1, 30).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.set_canary("cs", "f", 9, 30).await,
        Err(StoreError::NotFound(m)) if m == "function 'cs/f' has no version 9"
    ));
    assert!(matches!(
        store.set_canary("cs", "nope", 2, 30).await,
        Err(StoreError::NotFound(_))
    ));

    // Updates carry on past it (numbers are never reused) and keep it; pruning (2 kept)
    // takes version 1 with its code but never the canary's version.
    let v3 = store
        .update_function("f", new_function("cs", "f", b"three"), 2)
        .await
        .expect("update");
    assert_eq!((v3.row.version, v3.row.canary()), (3, Some((2, 30))));
    assert_eq!(v3.dropped_hashes, std::slice::from_ref(&v1.hash));
    let v4 = store
        .update_function("f", new_function("cs", "f", b"four"), 2)
        .await
        .expect("update");
    assert!(v4.dropped_hashes.is_empty(), "{:?}", v4.dropped_hashes);
    assert_eq!(version_numbers(store, "cs", "f").await, [4, 3, 2]);
    assert!(matches!(
        store.delete_version("cs", "f", 2).await,
        Err(StoreError::Conflict(m)) if m.contains("canary")
    ));

    // Promoting makes version 2 itself current and ends the canary; no version is added.
    let promoted = store
        .promote_canary("cs", "f", Some("ops"), 2)
        .await
        .expect("promote");
    assert_eq!(
        (
            promoted.row.version,
            &promoted.row.hash,
            promoted.row.canary()
        ),
        (2, &staged.row.hash, None)
    );
    assert_eq!(promoted.row.canary_since, None);
    assert_eq!(
        store.get_function("cs", "f").await.expect("get"),
        Some(promoted.row.clone())
    );
    assert_eq!(version_numbers(store, "cs", "f").await, [4, 3, 2]);
    let v5 = store
        .update_function("f", new_function("cs", "f", b"five"), 10)
        .await
        .expect("update");
    assert_eq!(v5.row.version, 5);

    // A canary of an older version, ended: the current version is untouched.
    store.set_canary("cs", "f", 3, 50).await.expect("set");
    assert_eq!(store.end_canary("cs", "f").await.expect("end"), 3);
    let row = store
        .get_function("cs", "f")
        .await
        .expect("get")
        .expect("f");
    assert_eq!((row.version, row.canary()), (5, None));
    assert!(matches!(
        store.end_canary("cs", "f").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.delete_module("cs").await.expect("delete").len(), 1);
}

async fn pending_suite(store: &Store) {
    let row = |id: &str, core: &str, at: i64| PendingRow {
        id: id.into(),
        owner_id: 1,
        module: "_".into(),
        function: "f".into(),
        version: None,
        args: r#"{"n":1}"#.into(),
        script: None,
        state: "running".into(),
        core: core.into(),
        heartbeat_at: at,
        attempts: 1,
        created_at: at,
        finished_at: None,
        record: None,
    };
    for (id, at) in [("p1", 100), ("p2", 200), ("p3", 300)] {
        store
            .insert_pending(&row(id, "a", at))
            .await
            .expect("insert");
    }
    // A live Core's rows are beaten; a dead one's are taken over once, by one Core.
    assert_eq!(store.beat_pending("a", 1_000).await.expect("beat"), 3);
    assert!(
        store
            .claim_stale_pending("b", 500, 1_001, 10)
            .await
            .expect("claim")
            .is_empty()
    );
    let taken = store
        .claim_stale_pending("b", 2_000, 2_001, 2)
        .await
        .expect("claim");
    assert_eq!(
        taken
            .iter()
            .map(|r| (r.id.as_str(), r.attempts))
            .collect::<Vec<_>>(),
        [("p1", 2), ("p2", 2)],
        "oldest first, at most the limit"
    );
    // A claim given back is taken again; another Core's claim cannot finish it.
    store.release_pending("p1", "b").await.expect("release");
    let again = store
        .claim_stale_pending("c", 500, 2_002, 10)
        .await
        .expect("claim");
    assert_eq!(
        again.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        ["p1"]
    );
    assert!(
        !store
            .finish_pending("p1", "b", "{}", 3_000)
            .await
            .expect("finish")
    );
    // Finishing keeps the record, not the arguments.
    for (id, core, at) in [("p1", "c", 3_000), ("p2", "b", 3_100), ("p3", "a", 3_200)] {
        assert!(
            store
                .finish_pending(id, core, "{}", at)
                .await
                .expect("finish")
        );
    }
    let done = store.get_pending("p2").await.expect("get").expect("p2");
    assert_eq!((done.state.as_str(), done.args.as_str()), ("done", ""));
    assert_eq!(done.record.as_deref(), Some("{}"));
    // Pruned past the time limit, then past the count limit (the newest kept).
    assert_eq!(store.prune_pending(3_050, 10).await.expect("prune"), 1);
    assert_eq!(store.prune_pending(0, 1).await.expect("prune"), 1);
    assert!(store.get_pending("p2").await.expect("get").is_none());
    assert!(store.get_pending("p3").await.expect("get").is_some());
    assert_eq!(
        store.prune_pending(0, 0).await.expect("prune"),
        0,
        "keeps at least one"
    );
    assert_eq!(store.prune_pending(4_000, 10).await.expect("prune"), 1);
}

async fn subjects_suite(store: &Store) {
    // `owner` was created by the modules suite.
    assert_eq!(store.count_subjects().await.expect("count"), 1);
    let admin = store
        .create_subject("admin", "admin-hash", true)
        .await
        .expect("create admin");
    assert!(admin.admin);
    assert_eq!(admin.revoked_at, None);
    let bob = store
        .create_subject("bob", "bob-hash", false)
        .await
        .expect("create bob");
    assert!(matches!(
        store.create_subject("bob", "other-hash", false).await,
        Err(StoreError::Conflict(m)) if m == "subject 'bob' already exists"
    ));
    assert!(matches!(
        store.create_subject("carol", "bob-hash", false).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.count_subjects().await.expect("count"), 3);
    let listed = store.list_subjects().await.expect("list");
    assert_eq!(names(&listed, |s| &s.name), ["admin", "bob", "owner"]);
    assert_eq!(listed[0], admin);
    assert_eq!(
        store
            .subject_by_token_hash("bob-hash")
            .await
            .expect("by token"),
        Some(bob.clone())
    );
    assert_eq!(
        store
            .subject_by_token_hash("nobody")
            .await
            .expect("by token"),
        None
    );

    store.revoke_subject("bob").await.expect("revoke bob");
    assert_eq!(
        store
            .subject_by_token_hash("bob-hash")
            .await
            .expect("by token"),
        None
    );
    let revoked = store
        .list_subjects()
        .await
        .expect("list")
        .into_iter()
        .find(|s| s.name == "bob")
        .expect("bob is still listed");
    let at = revoked.revoked_at.expect("bob is revoked");
    store.revoke_subject("bob").await.expect("revoke again");
    let again = store.list_subjects().await.expect("list");
    assert_eq!(
        again[1].revoked_at,
        Some(at),
        "the first revocation time stays"
    );
    assert!(matches!(
        store.revoke_subject("nobody").await,
        Err(StoreError::NotFound(m)) if m == "subject 'nobody' not found"
    ));
    assert_eq!(store.count_subjects().await.expect("count"), 3);
    // A revoked name can be given to a new subject; the old one stays, renamed.
    let new_bob = store
        .create_subject("bob", "new-bob-hash", false)
        .await
        .expect("bob again");
    assert_ne!(new_bob.id, bob.id);
    let listed = store.list_subjects().await.expect("list");
    assert!(
        listed
            .iter()
            .any(|s| s.name == format!("bob~{}", bob.id) && s.revoked_at == Some(at)),
        "{listed:?}"
    );
    assert_eq!(
        store
            .subject_by_token_hash("new-bob-hash")
            .await
            .expect("by token")
            .map(|s| s.id),
        Some(new_bob.id)
    );
    store
        .revoke_subject("bob")
        .await
        .expect("revoke the new bob");
    assert_eq!(
        store
            .subject_by_token_hash("admin-hash")
            .await
            .expect("by token"),
        Some(admin)
    );
}

async fn scripts_suite(store: &Store) {
    assert_eq!(store.list_scripts().await.expect("list"), []);
    let b = store.create_script("b", "- t: []").await.expect("create b");
    let a = store
        .create_script("a", "- default:\n    - workers: '*'\n")
        .await
        .expect("create a");
    assert_eq!(
        store.list_scripts().await.expect("list"),
        [a.clone(), b.clone()]
    );
    assert_eq!(store.get_script("a").await.expect("get"), Some(a));
    assert!(matches!(
        store.create_script("b", "x").await,
        Err(StoreError::Conflict(m)) if m == "scheduling script 'b' already exists"
    ));
    store.delete_script("b").await.expect("delete b");
    assert_eq!(store.get_script("b").await.expect("get"), None);
    assert!(matches!(
        store.delete_script("b").await,
        Err(StoreError::NotFound(_))
    ));
}

/// What counts against a subject's quotas: its modules (but the one named), and the functions
/// of every module it owns, whatever their names.
async fn owned_suite(store: &Store) {
    let who = store
        .create_subject("quota-owner", "quota-owner-hash", false)
        .await
        .expect("create subject");
    let other = store
        .create_subject("quota-other", "quota-other-hash", false)
        .await
        .expect("create subject");
    assert!(store.owned_modules(who.id).await.expect("owned").is_empty());
    assert_eq!(store.owned_functions(who.id).await.expect("owned"), []);
    let own_default = format!("_~{}", who.id);
    for module in [own_default.as_str(), "q1~x", "q2~x"] {
        store
            .create_module(module, Some(who.id))
            .await
            .expect("create");
    }
    store
        .create_module("q3~y", Some(other.id))
        .await
        .expect("create");
    let mut mine = vec![own_default.clone(), "q1~x".to_string(), "q2~x".to_string()];
    mine.sort();
    assert_eq!(store.owned_modules(who.id).await.expect("owned"), mine);
    let mut f = new_function("q1~x", "a", b"12345");
    f.events = Some(r#"[{"type":"cron","params":{"schedule":"* * * * *"}}]"#.into());
    store.create_function(f).await.expect("create a");
    let mut f = new_function(&own_default, "b", b"123");
    f.sinks = Some(r#"[{"type":"webhook","params":{"url":"http://example.org/"}}]"#.into());
    store.create_function(f.clone()).await.expect("create b");
    store
        .create_function(new_function("q3~y", "c", b"1"))
        .await
        .expect("create c");
    let mut owned = store.owned_functions(who.id).await.expect("owned");
    owned.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        owned,
        [
            OwnedFunction {
                module: "q1~x".into(),
                name: "a".into(),
                size: 5,
                events: Some(r#"[{"type":"cron","params":{"schedule":"* * * * *"}}]"#.into()),
                sinks: None,
            },
            OwnedFunction {
                module: own_default.clone(),
                name: "b".into(),
                size: 3,
                events: None,
                sinks: f.sinks.clone(),
            },
        ]
    );
    assert_eq!(
        store.owned_functions(other.id).await.expect("owned").len(),
        1
    );
    for module in [own_default.as_str(), "q1~x", "q2~x", "q3~y"] {
        store.delete_module(module).await.expect("delete");
    }
    assert_eq!(store.owned_functions(who.id).await.expect("owned"), []);
}

async fn concurrency_suite(store: &Store) {
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.create_module("race", None).await })
        })
        .collect();
    let (mut ok, mut conflicts) = (0, 0);
    for task in tasks {
        match task.await.expect("task") {
            Ok(_) => ok += 1,
            Err(StoreError::Conflict(_)) => conflicts += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!((ok, conflicts), (1, 7));

    // Concurrent functions in one module, then a delete that takes them all.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let name = format!("f{i}");
                store
                    .create_function(new_function("race", &name, name.as_bytes()))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task").expect("create function");
    }
    assert_eq!(store.delete_module("race").await.expect("delete").len(), 8);
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}", dir.path().join("funless.db").display());
    suite(&url, "sqlite").await;
    // The data survives a reopen.
    let store = Store::open(&url).await.expect("reopen");
    assert_eq!(store.count_subjects().await.expect("count"), 6);
    store.close().await;
}

#[tokio::test]
async fn sqlite_in_memory() {
    let store = Store::open("sqlite::memory:").await.expect("open");
    assert_eq!(store.backend(), "sqlite");
    store.create_module("m", None).await.expect("create");
    store
        .create_function(new_function("m", "f", b"code"))
        .await
        .expect("create function");
    // Still there on another pooled connection, later.
    let modules = store.list_modules().await.expect("list");
    assert_eq!(names(&modules, |m| &m.name), ["_", "m"]);
    assert_eq!(store.list_functions("m").await.expect("list").len(), 1);
    store.close().await;
}

#[tokio::test]
async fn unsupported_url() {
    assert!(matches!(
        Store::open("mysql://localhost/db").await,
        Err(StoreError::Url(m)) if m.contains("'mysql'")
    ));
    assert!(matches!(
        Store::open("funless.db").await,
        Err(StoreError::Url(_))
    ));
}

/// `url` with its database name replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let server = match base.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest)),
        None => base.to_string(),
    };
    format!("{server}/{db}{query}")
}

#[tokio::test]
async fn postgres_store() {
    use sqlx::Connection;

    let admin_url = std::env::var("FUNLESS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let db = format!(
        "funless_test_{}_{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("the PostgreSQL server must be reachable (set FUNLESS_TEST_POSTGRES)");
    sqlx::query(&format!("CREATE DATABASE \"{db}\""))
        .execute(&mut admin)
        .await
        .expect("create the test database");

    let url = with_database(&admin_url, &db);
    let result = tokio::spawn(async move { suite(&url, "postgres").await }).await;

    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .expect("drop the test database");
    admin.close().await.ok();
    match result {
        Ok(()) => {}
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("the suite did not finish: {e}"),
    }
}

#[test]
fn database_name_replacement() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
        "postgresql://u:p@h/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
}
