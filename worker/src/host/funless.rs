//! The FunLess ABI's `fl_imps` imports (DESIGN.md §4): input, response, error, console log and
//! HTTP. Every pointer and length from the guest is bounds-checked; a bad one traps the guest
//! with a message naming the import, never the worker.

use wasmtime::{Caller, Extern, Linker, Memory};

use super::{HostState, Logs};

/// Largest response or error a function may hand back, bytes.
pub(crate) const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// The FunLess side of an invocation.
#[derive(Debug, Default)]
pub(crate) struct FunlessIo {
    /// JSON args, written into the guest by `__get_input_data`.
    pub(crate) input: Vec<u8>,
    /// Set by `__insert_response`.
    pub(crate) response: Option<Vec<u8>>,
    /// Set by `__insert_error`.
    pub(crate) error: Option<Vec<u8>>,
    /// Lines from `__console_log`.
    pub(crate) logs: Logs,
    /// Set when the guest handed over a response or error larger than allowed.
    pub(crate) output_too_large: bool,
    /// A JavaScript function's source, read by the engine through `fl_js` (none otherwise).
    pub(crate) source: Option<std::sync::Arc<[u8]>>,
    /// Set when this instance runs a JavaScript service's replica: its console lines go to
    /// the replica's log ring as they come, and the engine asks it whether to stop.
    pub(crate) service: Option<crate::services::ServiceIo>,
}

pub(super) fn memory(caller: &mut Caller<'_, HostState>, import: &str) -> wasmtime::Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => Err(wasmtime::format_err!(
            "{import}: the module exports no memory named \"memory\""
        )),
    }
}

/// The guest memory range `[ptr, ptr + len)`, or a trap naming the import.
pub(super) fn range(
    data_len: usize,
    ptr: i32,
    len: i32,
    import: &str,
) -> wasmtime::Result<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let len = usize::try_from(len)
        .map_err(|_| wasmtime::format_err!("{import}: negative length {len}"))?;
    let end = start
        .checked_add(len)
        .filter(|end| *end <= data_len)
        .ok_or_else(|| {
            wasmtime::format_err!(
                "{import}: range {start}+{len} is outside the guest's memory ({data_len} bytes)"
            )
        })?;
    Ok(start..end)
}

fn read_guest(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    len: i32,
    import: &str,
    max: usize,
) -> wasmtime::Result<Vec<u8>> {
    if len < 0 {
        return Err(wasmtime::format_err!("{import}: negative length {len}"));
    }
    if len as usize > max {
        if import != "__console_log" {
            caller.data_mut().fl.output_too_large = true;
        }
        return Err(wasmtime::format_err!(
            "{import}: {len} bytes is more than the {max} allowed"
        ));
    }
    let memory = memory(caller, import)?;
    let data = memory.data(&caller);
    let range = range(data.len(), ptr, len, import)?;
    Ok(data[range].to_vec())
}

pub(super) fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "fl_imps",
        "__get_input_data",
        |mut caller: Caller<'_, HostState>, ptr: i32| -> wasmtime::Result<()> {
            let memory = memory(&mut caller, "__get_input_data")?;
            let (data, state) = memory.data_and_store_mut(&mut caller);
            let input = &state.fl.input;
            let len = i32::try_from(input.len())
                .map_err(|_| wasmtime::format_err!("__get_input_data: input too large"))?;
            let range = range(data.len(), ptr, len, "__get_input_data")?;
            data[range].copy_from_slice(input);
            Ok(())
        },
    )?;
    linker.func_wrap(
        "fl_imps",
        "__insert_response",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let bytes = read_guest(
                &mut caller,
                ptr,
                len,
                "__insert_response",
                MAX_RESPONSE_BYTES,
            )?;
            caller.data_mut().fl.response = Some(bytes);
            Ok(())
        },
    )?;
    linker.func_wrap(
        "fl_imps",
        "__insert_error",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let bytes = read_guest(&mut caller, ptr, len, "__insert_error", MAX_RESPONSE_BYTES)?;
            caller.data_mut().fl.error = Some(bytes);
            Ok(())
        },
    )?;
    linker.func_wrap(
        "fl_imps",
        "__console_log",
        |mut caller: Caller<'_, HostState>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let bytes = read_guest(&mut caller, ptr, len, "__console_log", MAX_RESPONSE_BYTES)?;
            let fl = &mut caller.data_mut().fl;
            match &fl.service {
                Some(service) => service.log(&bytes),
                None => fl.logs.push(&bytes),
            }
            Ok(())
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::range;

    #[test]
    fn ranges_are_checked() {
        assert_eq!(range(100, 10, 5, "x").ok(), Some(10..15));
        assert_eq!(range(100, 95, 5, "x").ok(), Some(95..100));
        assert!(range(100, 96, 5, "x").is_err());
        assert!(range(100, -1, 1, "x").is_err());
        assert!(range(100, 0, -1, "x").is_err());
        assert!(range(100, i32::MAX, i32::MAX, "x").is_err());
    }
}
