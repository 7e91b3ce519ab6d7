//! The function ABIs (DESIGN.md §4): two for core modules, detected from their exports, and
//! WASI 0.2 components exporting `wasi:cli/run`.

use wasmtime::{ExternType, Module};

/// How the worker calls a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abi {
    /// Exports `__invoke(i32) -> i32`, talks through the `fl_imps` imports.
    Funless,
    /// A WASI command: `_start`, JSON in on stdin, JSON out on stdout.
    WasiCommand,
    /// A WASI 0.2 component exporting `wasi:cli/run`: the same stdin/stdout contract.
    Component,
    /// JavaScript source, run by the shared engine module through the FunLess ABI.
    JavaScript,
}

impl Abi {
    /// Whether the function's result is its stdout (WASI command or component).
    pub(crate) fn stdout_is_result(self) -> bool {
        matches!(self, Abi::WasiCommand | Abi::Component)
    }

    /// Whether the function talks through the `fl_imps` imports (result, error, logs).
    pub(crate) fn uses_fl_imports(self) -> bool {
        matches!(self, Abi::Funless | Abi::JavaScript)
    }
}

impl Abi {
    /// Detects the ABI of a core module; the error says what the module lacks.
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
