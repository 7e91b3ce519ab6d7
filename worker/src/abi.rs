//! The two function ABIs (DESIGN.md §4), detected from a module's exports.

use wasmtime::{ExternType, Module};

/// How the worker calls a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abi {
    /// Exports `__invoke(i32) -> i32`, talks through the `fl_imps` imports.
    Funless,
    /// A WASI command: `_start`, JSON in on stdin, JSON out on stdout.
    WasiCommand,
}

impl Abi {
    /// Detects the ABI; the error says what the module lacks.
    pub fn detect(module: &Module) -> Result<Self, String> {
        let mut has_start = false;
        for export in module.exports() {
            match (export.name(), export.ty()) {
                ("__invoke", ExternType::Func(ty)) => {
                    let params: Vec<_> = ty.params().collect();
                    let results: Vec<_> = ty.results().collect();
                    let ok = params.len() == 1
                        && params[0].is_i32()
                        && results.len() == 1
                        && results[0].is_i32();
                    if !ok {
                        return Err("export __invoke must have type (i32) -> i32".into());
                    }
                    return Ok(Abi::Funless);
                }
                ("_start", ExternType::Func(_)) => has_start = true,
                _ => {}
            }
        }
        if has_start {
            Ok(Abi::WasiCommand)
        } else {
            Err("module exports neither __invoke (FunLess ABI) nor _start (WASI command)".into())
        }
    }
}
