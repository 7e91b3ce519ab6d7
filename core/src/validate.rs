//! Upload checks, done once on the Core (step 2): the binary must be valid WebAssembly (a core
//! module or a WASI 0.2 component), import only what workers provide, and expose one of the
//! three function forms; or JavaScript source defining the entry point (its syntax is checked
//! by the workers' engine when the upload is distributed). Failing here gives the user a 400
//! naming the problem, instead of an error from every worker.

use funless_api::types::{Abi, Language};
use sha2::{Digest, Sha256};
use wasmparser::{ComponentExternalKind, ExternalKind, Parser, Payload, Validator};

/// Host functions of the FunLess ABI a module may import from `fl_imps`.
const FL_IMPORTS: &[&str] = &[
    "__get_input_data",
    "__insert_response",
    "__insert_error",
    "__console_log",
    "__http_request",
];

/// Import modules a function may use.
const WASI_P1: &str = "wasi_snapshot_preview1";

/// WASI 0.2 packages a component may import from (what workers link; no filesystem is
/// preopened and the network is fenced by the function's allow-list).
const WASI_P2_PACKAGES: &[&str] = &[
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
    "wasi:http/",
];

/// The export a component function must have.
const RUN_EXPORT: &str = "wasi:cli/run@0.2";

/// Largest JavaScript source, bytes (the engine parses it at every invocation).
pub const MAX_SCRIPT_BYTES: usize = 1024 * 1024;

/// Checks uploaded code and detects its form; the error is a message for the user. Without a
/// `language`, WebAssembly is told by its magic bytes and any other UTF-8 text is JavaScript.
pub fn validate(code: &[u8], language: Option<Language>) -> Result<Abi, String> {
    match language {
        Some(Language::Wasm) => validate_wasm(code),
        Some(Language::JavaScript) => validate_javascript(code),
        None if code.starts_with(b"\0asm") || std::str::from_utf8(code).is_err() => {
            validate_wasm(code)
        }
        None => validate_javascript(code).map_err(|e| {
            format!(
                "the code is not a WebAssembly module (it does not start with the \\0asm magic \
                 bytes), and read as JavaScript: {e}"
            )
        }),
    }
}

/// [`validate`] and the code's SHA-256 (lower-case hex), on a blocking thread: both take
/// time in proportion to the code (tens of milliseconds for tens of MiB), which the node's
/// runtime thread must not spend while it serves invocations.
pub async fn validate_and_hash(
    code: bytes::Bytes,
    language: Option<Language>,
) -> Result<(Abi, String), String> {
    tokio::task::spawn_blocking(move || {
        let abi = validate(&code, language)?;
        Ok((abi, hex::encode(Sha256::digest(&code))))
    })
    .await
    .map_err(|e| format!("the upload check stopped: {e}"))?
}

/// JavaScript: UTF-8 text of bounded size that names its entry point.
fn validate_javascript(code: &[u8]) -> Result<Abi, String> {
    if code.starts_with(b"\0asm") {
        return Err(
            "the code is WebAssembly, not JavaScript (upload it without language=js)".into(),
        );
    }
    let text = std::str::from_utf8(code)
        .map_err(|e| format!("JavaScript source must be UTF-8 text: {e}"))?;
    if text.len() > MAX_SCRIPT_BYTES {
        return Err(format!(
            "JavaScript source is {} bytes; the limit is {MAX_SCRIPT_BYTES}",
            text.len()
        ));
    }
    if !text.contains("fl_main") && !text.contains("export default") {
        return Err(
            "JavaScript functions define fl_main(input) or export a default function; \
                    this source does neither"
                .into(),
        );
    }
    Ok(Abi::JavaScript)
}

/// WebAssembly: a core module or a WASI 0.2 component.
fn validate_wasm(code: &[u8]) -> Result<Abi, String> {
    if !code.starts_with(b"\0asm") {
        return Err(
            "the code is not a WebAssembly module (it does not start with the \\0asm magic bytes)"
                .into(),
        );
    }
    if Parser::is_component(code) {
        return validate_component(code);
    }
    Validator::new()
        .validate_all(code)
        .map_err(|e| format!("invalid WebAssembly module: {e}"))?;

    let mut has_invoke = false;
    let mut has_start = false;
    for payload in Parser::new(0).parse_all(code) {
        let payload = payload.map_err(|e| format!("invalid WebAssembly module: {e}"))?;
        match payload {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(|e| format!("invalid import section: {e}"))?;
                    check_import(import.module, import.name)?;
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(|e| format!("invalid export section: {e}"))?;
                    if export.kind == ExternalKind::Func {
                        has_invoke |= export.name == "__invoke";
                        has_start |= export.name == "_start";
                    }
                }
            }
            _ => {}
        }
    }
    match (has_invoke, has_start) {
        (true, _) => Ok(Abi::Funless),
        (false, true) => Ok(Abi::WasiCommand),
        (false, false) => Err(
            "the module exports neither __invoke (FunLess ABI) nor _start (WASI command)".into(),
        ),
    }
}

/// A component must validate, import only WASI 0.2 interfaces and export `wasi:cli/run`.
fn validate_component(code: &[u8]) -> Result<Abi, String> {
    Validator::new()
        .validate_all(code)
        .map_err(|e| format!("invalid WebAssembly component: {e}"))?;
    let mut has_run = false;
    // Nested modules and components have their own imports, satisfied inside the component:
    // only the outermost level's imports and exports matter.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(code) {
        let payload = payload.map_err(|e| format!("invalid WebAssembly component: {e}"))?;
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import.map_err(|e| format!("invalid import section: {e}"))?;
                    let name = import.name.name;
                    if !WASI_P2_PACKAGES.iter().any(|p| name.starts_with(p)) {
                        return Err(format!(
                            "the component imports {name}; components may import only WASI 0.2 interfaces ({})",
                            WASI_P2_PACKAGES.join(", ")
                        ));
                    }
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    let export = export.map_err(|e| format!("invalid export section: {e}"))?;
                    has_run |= export.kind == ComponentExternalKind::Instance
                        && export.name.name.starts_with(RUN_EXPORT);
                }
            }
            _ => {}
        }
    }
    if has_run {
        Ok(Abi::WasiComponent)
    } else {
        Err(format!(
            "the component does not export {RUN_EXPORT}.x (build a command, e.g. a Rust `fn main` for wasm32-wasip2)"
        ))
    }
}

fn check_import(module: &str, name: &str) -> Result<(), String> {
    match module {
        "fl_imps" if FL_IMPORTS.contains(&name) => Ok(()),
        "fl_imps" => Err(format!(
            "the module imports fl_imps::{name}, which FunLess does not provide (available: {})",
            FL_IMPORTS.join(", ")
        )),
        WASI_P1 => Ok(()),
        other => Err(format!(
            "the module imports {other}::{name}; functions may import only from fl_imps and {WASI_P1}"
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn wat(text: &str) -> Vec<u8> {
        wat::parse_str(text).unwrap()
    }

    fn validate(code: &[u8]) -> Result<Abi, String> {
        super::validate(code, None)
    }

    #[test]
    fn javascript_is_told_from_wasm_and_needs_an_entry_point() {
        let js = b"function fl_main(input) { return input; }";
        assert_eq!(validate(js), Ok(Abi::JavaScript));
        assert_eq!(
            super::validate(b"export default (x) => x;", Some(Language::JavaScript)),
            Ok(Abi::JavaScript)
        );
        assert!(validate(b"console.log(1)").unwrap_err().contains("fl_main"));
        assert!(
            super::validate(js, Some(Language::Wasm))
                .unwrap_err()
                .contains("magic")
        );
        let module = wat(r#"(module (func (export "_start")))"#);
        assert!(
            super::validate(&module, Some(Language::JavaScript))
                .unwrap_err()
                .contains("WebAssembly")
        );
        let huge = format!("function fl_main() {{}}{}", " ".repeat(MAX_SCRIPT_BYTES));
        assert!(validate(huge.as_bytes()).unwrap_err().contains("limit"));
        assert!(
            super::validate(b"\xff\xfe fl_main", Some(Language::JavaScript))
                .unwrap_err()
                .contains("UTF-8")
        );
    }

    #[test]
    fn detects_both_abis() {
        let fl = wat(r#"(module (memory (export "memory") 1)
            (func (export "__invoke") (param i32) (result i32) i32.const 0))"#);
        assert_eq!(validate(&fl), Ok(Abi::Funless));
        let cmd = wat(r#"(module (memory (export "memory") 1) (func (export "_start")))"#);
        assert_eq!(validate(&cmd), Ok(Abi::WasiCommand));
    }

    #[test]
    fn components_need_wasi_imports_and_a_run_export() {
        let run = wat(r#"(component
            (core module $m (func (export "run") (result i32) i32.const 0))
            (core instance $i (instantiate $m))
            (func $run (result (result)) (canon lift (core func $i "run")))
            (instance $inst (export "run" (func $run)))
            (export "wasi:cli/run@0.2.3" (instance $inst)))"#);
        assert_eq!(validate(&run), Ok(Abi::WasiComponent));
        let no_run = wat(r#"(component (core module (func (export "f"))))"#);
        assert!(validate(&no_run).unwrap_err().contains("wasi:cli/run"));
        let foreign = wat(r#"(component (import "acme:evil/api" (instance)))"#);
        assert!(validate(&foreign).unwrap_err().contains("acme:evil/api"));
        // The nested module imports `env`, which the component itself satisfies: fine.
        let nested = wat(r#"(component
            (core module $m (import "env" "f" (func)) (func (export "run") (result i32) i32.const 0))
            (core module $env (func (export "f")))
            (core instance $e (instantiate $env))
            (core instance $i (instantiate $m (with "env" (instance $e))))
            (func $run (result (result)) (canon lift (core func $i "run")))
            (instance $inst (export "run" (func $run)))
            (export "wasi:cli/run@0.2.0" (instance $inst)))"#);
        assert_eq!(validate(&nested), Ok(Abi::WasiComponent));
    }

    #[test]
    fn refuses_what_cannot_run() {
        assert!(validate(b"\x01\x02\xff").unwrap_err().contains("magic"));
        assert!(validate(b"hello").unwrap_err().contains("fl_main"));
        assert!(
            validate(b"\0asm\x01\0\0\0\xff")
                .unwrap_err()
                .contains("invalid")
        );
        let no_entry = wat(r#"(module (memory (export "memory") 1))"#);
        assert!(validate(&no_entry).unwrap_err().contains("neither"));
        let foreign = wat(r#"(module (import "env" "evil" (func)) (func (export "_start")))"#);
        assert!(validate(&foreign).unwrap_err().contains("env::evil"));
        let unknown_fl =
            wat(r#"(module (import "fl_imps" "__nope" (func)) (func (export "_start")))"#);
        assert!(validate(&unknown_fl).unwrap_err().contains("__nope"));
    }
}
