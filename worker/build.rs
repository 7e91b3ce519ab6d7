//! Builds the JavaScript engine (`js-engine/`: QuickJS through rquickjs, a FunLess-ABI guest)
//! for `wasm32-wasip1` and leaves it in `OUT_DIR/js_engine.wasm`, which the worker embeds.
//!
//! QuickJS is C: it is compiled with Debian's clang and wasi-libc (`apt-get install clang lld
//! wasi-libc`), not with a downloaded WASI SDK. Without them the worker still builds, with an
//! empty engine: it then refuses JavaScript functions with a message saying why. Set
//! `FUNLESS_REQUIRE_JS_ENGINE=1` (CI does) to make that a build error instead, or
//! `FUNLESS_JS_ENGINE=<path>` to embed an engine built elsewhere.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip1";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let engine_dir = manifest_dir.join("../js-engine");
    for path in ["src", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", engine_dir.join(path).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../examples/fl-sdk/src").display()
    );
    for var in [
        "FUNLESS_JS_ENGINE",
        "FUNLESS_REQUIRE_JS_ENGINE",
        "CC_wasm32_wasip1",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let output = out_dir.join("js_engine.wasm");
    let built = match std::env::var_os("FUNLESS_JS_ENGINE") {
        Some(prebuilt) => std::fs::copy(&prebuilt, &output)
            .map(drop)
            .map_err(|e| format!("cannot copy {}: {e}", Path::new(&prebuilt).display())),
        None => build(&engine_dir, &out_dir).and_then(|wasm| {
            std::fs::copy(&wasm, &output)
                .map(drop)
                .map_err(|e| format!("cannot copy {}: {e}", wasm.display()))
        }),
    };
    if let Err(reason) = built {
        if std::env::var("FUNLESS_REQUIRE_JS_ENGINE").as_deref() == Ok("1") {
            panic!("the JavaScript engine did not build: {reason}");
        }
        println!(
            "cargo:warning=JavaScript engine not built ({reason}); this worker will refuse \
             JavaScript functions. Install clang, lld and wasi-libc (Debian) and rebuild."
        );
        if let Err(e) = std::fs::write(&output, b"") {
            panic!("cannot write {}: {e}", output.display());
        }
    }
}

/// Runs a nested cargo build of the engine; returns the path of the built module.
fn build(engine_dir: &Path, out_dir: &Path) -> Result<PathBuf, String> {
    // One engine build shared by every profile and target of the outer build (the aarch64
    // cross build reuses the x86 one's), in the outer target directory.
    let target_dir = shared_target_dir(out_dir).join("js-engine");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "--release", "--locked", "--target", TARGET])
        .arg("--manifest-path")
        .arg(engine_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir);
    // The outer build's settings (its target, flags, jobserver, package variables) must not
    // leak into the guest build.
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let keep = matches!(key, "CARGO_HOME")
            || key.starts_with("CARGO_NET_")
            || key.starts_with("CARGO_HTTP_")
            || key.starts_with("CARGO_REGISTR");
        let outer = (key.starts_with("CARGO_") && !keep)
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "DEBUG"
                    | "NUM_JOBS"
                    | "MAKEFLAGS"
                    | "MFLAGS"
                    | "CC"
                    | "CFLAGS"
                    | "AR"
            );
        if outer {
            command.env_remove(key);
        }
    }
    // QuickJS's C with the system clang and wasi-libc instead of a downloaded WASI SDK.
    command
        .env("RQUICKJS_SYS_NO_WASI_SDK", "1")
        .env(
            "CC_wasm32_wasip1",
            std::env::var("CC_wasm32_wasip1").unwrap_or_else(|_| "clang".into()),
        )
        .env(
            "AR_wasm32_wasip1",
            std::env::var("AR_wasm32_wasip1").unwrap_or_else(|_| "llvm-ar".into()),
        )
        .env(
            "CFLAGS_wasm32_wasip1",
            std::env::var("CFLAGS_wasm32_wasip1")
                .unwrap_or_else(|_| "--target=wasm32-wasi --sysroot=/usr".into()),
        );
    // Cargo reads a build script's stdout for directives: the nested build's goes to stderr.
    let status = command
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build of {} failed", engine_dir.display()));
    }
    let wasm = target_dir
        .join(TARGET)
        .join("release")
        .join("funless_js_engine.wasm");
    if !wasm.is_file() {
        return Err(format!("{} was not produced", wasm.display()));
    }
    Ok(wasm)
}

/// The outer build's target directory (the ancestor of OUT_DIR holding cargo's CACHEDIR.TAG),
/// else OUT_DIR itself.
fn shared_target_dir(out_dir: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file())
        .unwrap_or(out_dir)
        .to_path_buf()
}
