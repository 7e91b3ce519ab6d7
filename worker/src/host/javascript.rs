//! The `fl_js` imports of the JavaScript engine: the function's source, handed to the one
//! engine module shared by every JavaScript function, and a service's stop request. Pointers
//! are checked as in `fl_imps`.

use wasmtime::{Caller, Linker};

use super::HostState;
use super::funless::{memory, range};

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "fl_js",
        "__source_len",
        |caller: Caller<'_, HostState>| -> wasmtime::Result<i32> {
            let len = caller.data().fl.source.as_ref().map_or(0, |s| s.len());
            i32::try_from(len).map_err(|_| wasmtime::format_err!("__source_len: source too large"))
        },
    )?;
    linker.func_wrap(
        "fl_js",
        "__get_source",
        |mut caller: Caller<'_, HostState>, ptr: i32| -> wasmtime::Result<()> {
            let memory = memory(&mut caller, "__get_source")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let Some(source) = &state.fl.source else {
                return Ok(());
            };
            let len = i32::try_from(source.len())
                .map_err(|_| wasmtime::format_err!("__get_source: source too large"))?;
            let range = range(data.len(), ptr, len, "__get_source")?;
            data[range].copy_from_slice(source);
            Ok(())
        },
    )?;
    linker.func_wrap(
        "fl_js",
        "__stopping",
        |caller: Caller<'_, HostState>| -> i32 {
            i32::from(
                caller
                    .data()
                    .fl
                    .service
                    .as_ref()
                    .is_some_and(|s| s.stopping()),
            )
        },
    )?;
    Ok(())
}
