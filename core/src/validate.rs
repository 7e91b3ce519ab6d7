//! Upload checks, done once on the Core (step 2): the binary must be a valid core Wasm module,
//! import only what workers provide, and expose one of the two ABIs. Failing here gives the user
//! a 400 naming the problem, instead of an error from every worker.

use funless_api::types::Abi;
use wasmparser::{ExternalKind, Parser, Payload, Validator};

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

/// Checks a function binary and detects its ABI; the error is a message for the user.
pub fn validate(code: &[u8]) -> Result<Abi, String> {
    if !code.starts_with(b"\0asm") {
        return Err(
            "the code is not a WebAssembly module (it does not start with the \\0asm magic bytes)"
                .into(),
        );
    }
    if Parser::is_component(code) {
        return Err("WebAssembly components are not supported yet: upload a core module (e.g. built for wasm32-wasip1)".into());
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

    #[test]
    fn detects_both_abis() {
        let fl = wat(r#"(module (memory (export "memory") 1)
            (func (export "__invoke") (param i32) (result i32) i32.const 0))"#);
        assert_eq!(validate(&fl), Ok(Abi::Funless));
        let cmd = wat(r#"(module (memory (export "memory") 1) (func (export "_start")))"#);
        assert_eq!(validate(&cmd), Ok(Abi::WasiCommand));
    }

    #[test]
    fn refuses_what_cannot_run() {
        assert!(validate(b"hello").unwrap_err().contains("magic"));
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
