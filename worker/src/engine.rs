//! The worker's one Wasmtime [`Engine`]: async, epoch interruption, and the pooling instance
//! allocator (copy-on-write memory images, slots reused across invocations) when the machine
//! can hold the pool, else the on-demand allocator.
//!
//! The pool reserves address space for every slot up front. Small devices (1 GB Raspberry Pis,
//! 39-bit address spaces) cannot always hold it, which broke Spin and wasmCloud there: we probe
//! by building the engine and instantiating a module once, and fall back if either fails.

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, Module, PoolingAllocationConfig, Store,
};

/// Which instance allocator to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllocatorChoice {
    /// Pooling if the probe succeeds, else on-demand.
    Auto,
    /// Always on-demand.
    OnDemand,
}

/// Settings of the engine.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineSettings {
    pub(crate) allocator: AllocatorChoice,
    /// Instances that may live at once with the pooling allocator.
    pub(crate) pool_slots: u32,
    /// Largest linear memory of one instance, bytes.
    pub(crate) max_memory_bytes: usize,
}

/// `compiler`: whether the engine can compile (a worker whose compiles run in child processes
/// only loads their output, and holds no compiler at all).
fn base_config(compiler: bool) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.memory_init_cow(true);
    config.enable_compiler(compiler);
    // Twice Wasmtime's default: room for about 1,300 levels of plain JavaScript recursion in
    // the engine, so that QuickJS's own limit (`js-engine` `JS_STACK_BYTES`, ~900 levels)
    // throws a catchable RangeError before Wasmtime's trap ends the instance. Within the
    // 2 MiB async stack each run has; only the pages a guest touches are committed.
    config.max_wasm_stack(WASM_STACK_BYTES);
    config
}

/// The most stack a guest's Wasm may use.
const WASM_STACK_BYTES: usize = 1024 * 1024;

/// `(module (memory 1))` in the binary format.
const PROBE_MODULE: &[u8] = b"\0asm\x01\0\0\0\x05\x03\x01\x00\x01";

/// Where compiling happens, the pool probe's included.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Compiles<'a> {
    /// In this process: the engine has a compiler.
    Here,
    /// In children of this program (`compiler.rs`): the engine has no compiler, and the pool is
    /// tried out in a child (the probe's compile and instantiation left ~2 MB of code pages
    /// touched for nothing in an idle worker; building Cranelift's compiler ~1 MB more).
    InChild(&'a std::path::Path),
}

/// Instances whose memory, tables and stacks are decommitted together (see `pooling_engine`).
/// Small: up to this many finished instances' pages stay resident until the batch fills
/// (about 1 MB each for a Rust function), which an idle worker's RSS shows.
const DECOMMIT_BATCH: usize = 8;

/// Bytes of each table zeroed in place instead of decommitted.
const TABLE_KEEP_RESIDENT: usize = 16 * 1024;

/// Bytes of each linear memory reset in place instead of decommitted, where Linux has
/// `PAGEMAP_SCAN` (6.7 and later): Wasmtime finds the pages a guest wrote and copies back only
/// those, up to this many bytes, so a guest that wrote no more leaves nothing to decommit and
/// its next run in the slot takes no page fault and no TLB flush (the worker's page faults and
/// the flushes' interrupts were a fifth of its CPU time for `hello`: `bench/flame.py`,
/// docs/BENCHMARKS.md). The cost: up to this much stays resident per slot used. Without the
/// scan, memory is decommitted as before: resetting in place would then rewrite these bytes
/// after every run, written or not.
const MEMORY_KEEP_RESIDENT: usize = 256 * 1024;

/// An engine with the pooling allocator; `probe`: also compile and instantiate a module once
/// (needs `compiler`).
pub(crate) fn pooling_engine(
    settings: &EngineSettings,
    probe: bool,
    compiler: bool,
) -> wasmtime::Result<Engine> {
    let pool = |in_place: bool| {
        let mut pool = PoolingAllocationConfig::new();
        // A component takes one slot of each kind for each core instance and memory it holds
        // (a Rust wasm32-wasip2 program: a few), so fewer components than modules fit at once.
        pool.total_core_instances(settings.pool_slots)
            .total_component_instances(settings.pool_slots)
            .total_memories(settings.pool_slots)
            .total_tables(settings.pool_slots)
            .total_stacks(settings.pool_slots)
            .max_memory_size(settings.max_memory_bytes)
            // Every finished instance gives its memory, table and stack back with madvise, and
            // each madvise flushes the TLB of every CPU running this process (an interrupt to
            // each): with the Core in the same process (--embedded-worker) that was a third of
            // the CPU under load (perf, docs/BENCHMARKS.md). Batching the decommits makes one
            // flush serve many instances; a slot waiting in the batch is reclaimed at once when
            // the pool runs short.
            .decommit_batch_size(DECOMMIT_BATCH)
            // Small tables are zeroed in place rather than decommitted.
            .table_keep_resident(TABLE_KEEP_RESIDENT);
        if in_place {
            pool.pagemap_scan(Enabled::Yes)
                .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT);
        }
        let mut config = base_config(compiler);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        config
    };
    // `Enabled::Yes` refuses a kernel without PAGEMAP_SCAN: then memory is decommitted.
    let engine = match Engine::new(&pool(true)) {
        Ok(engine) => engine,
        Err(e) => {
            tracing::info!(
                reason = %format!("{e:#}"),
                "guest memory is decommitted after each run, not reset in place"
            );
            Engine::new(&pool(false))?
        }
    };
    if !probe {
        return Ok(engine);
    }
    // Building the pool is not the whole story: make sure a slot can actually be used. The
    // probe has a memory and no function, so nothing is compiled: compiling one function at
    // start-up touched ~6 MB of Cranelift's code pages, a third of an idle worker's RSS. It is
    // given in binary: parsing its text form touched the WAT parser's pages for nothing.
    let probe = Module::new(&engine, PROBE_MODULE)?;
    let mut store = Store::new(&engine, ());
    wasmtime::Instance::new(&mut store, &probe, &[])?;
    Ok(engine)
}

/// Builds the engine; the string names the allocator in use.
pub(crate) fn build(
    settings: &EngineSettings,
    compiles: Compiles<'_>,
) -> wasmtime::Result<(Engine, String)> {
    let compiler = matches!(compiles, Compiles::Here);
    if settings.allocator == AllocatorChoice::Auto {
        let pooling = match compiles {
            Compiles::Here => pooling_engine(settings, true, true),
            // The child built the same pool and used a slot: here only the pool is reserved
            // (that can still fail, and then falls back below).
            Compiles::InChild(program) => match crate::compiler::probe_pool(program, settings) {
                Ok(()) => pooling_engine(settings, false, false),
                Err(crate::compiler::ProbeError::Refused(message)) => {
                    Err(wasmtime::format_err!("{message}"))
                }
                Err(crate::compiler::ProbeError::NotStarted(e)) => Err(wasmtime::format_err!(
                    "cannot start a compiler process to try it: {e}"
                )),
            },
        };
        match pooling {
            Ok(engine) => {
                let name = format!("pooling ({} slots)", settings.pool_slots);
                tracing::info!(allocator = %name, "wasmtime engine ready");
                return Ok((engine, name));
            }
            Err(e) => tracing::warn!(
                error = %format!("{e:#}"),
                slots = settings.pool_slots,
                "the pooling allocator does not fit this machine; using the on-demand allocator"
            ),
        }
    }
    let engine = Engine::new(&base_config(compiler))?;
    tracing::info!(allocator = "on-demand", "wasmtime engine ready");
    Ok((engine, "on-demand".into()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::PROBE_MODULE;

    #[test]
    fn the_probe_is_a_module_with_one_memory() {
        assert_eq!(wat::parse_str("(module (memory 1))").unwrap(), PROBE_MODULE);
    }
}
