//! What the bench's end-to-end tests share: the binaries `cargo test --workspace` built.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

/// The folder of the binaries this test was built with: the test runs as
/// `.../target/debug/deps/<test>-<hash>`, the binaries are in `.../target/debug`.
pub(crate) fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    for binary in ["funless-core", "funless-worker"] {
        assert!(
            dir.join(binary).exists(),
            "{} is missing: run the suite with `cargo test --workspace` (it builds every binary)",
            dir.join(binary).display()
        );
    }
    // Builds the examples (and the wasi:http hello for the peer).
    funless_testkit::example_path("hello_fl");
    dir
}
