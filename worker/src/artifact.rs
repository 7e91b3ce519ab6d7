//! Compiled code of any form: a core module (FunLess ABI, WASI command), a WASI 0.2
//! component, or a JavaScript function's source (run by the one shared engine, see
//! `javascript.rs`). Compiling, serializing for the disk cache and the copy-on-write image are
//! the same steps for all; only the types differ.

use std::sync::Arc;

use wasmtime::component::Component;
use wasmtime::{Engine, Module, Precompiled};

/// A compiled core module or component.
#[derive(Clone)]
pub(crate) enum Artifact {
    /// A core module.
    Module(Module),
    /// A component.
    Component(Component),
    /// JavaScript source: the shared engine compiles it at each run.
    Script(Arc<[u8]>),
}

/// Header of a JavaScript function's file in the disk cache (Wasmtime's own artifacts start
/// with an ELF header, so the two cannot be confused).
const SCRIPT_MAGIC: &[u8; 8] = b"FLJSSRC1";

/// Whether code is JavaScript source rather than WebAssembly (the Core sends only these two).
pub(crate) fn is_script(code: &[u8]) -> bool {
    !code.starts_with(b"\0asm")
}

/// Whether a binary is a component rather than a core module: the layer field of the header
/// (bytes 6..8) is 1 for components, 0 for modules.
pub(crate) fn is_component(code: &[u8]) -> bool {
    code.starts_with(b"\0asm") && code.get(6..8) == Some(&[1, 0])
}

impl Artifact {
    /// Compiles Wasm binary code (CPU-bound: call off the async threads).
    pub(crate) fn compile(engine: &Engine, code: &[u8]) -> wasmtime::Result<Self> {
        if is_script(code) {
            Ok(Self::Script(code.into()))
        } else if is_component(code) {
            Ok(Self::Component(Component::new(engine, code)?))
        } else {
            Ok(Self::Module(Module::new(engine, code)?))
        }
    }

    /// Loads a precompiled artifact.
    ///
    /// # Safety
    /// `bytes` must be the output of [`Artifact::serialize`] by an engine of this
    /// configuration (Wasmtime trusts precompiled code; it checks only its header).
    #[allow(unsafe_code)]
    pub(crate) unsafe fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self> {
        if let Some(source) = bytes.strip_prefix(SCRIPT_MAGIC) {
            return Ok(Self::Script(source.into()));
        }
        match Engine::detect_precompiled(bytes) {
            // SAFETY: the caller guarantees the bytes are our own serialized artifact.
            Some(Precompiled::Module) => {
                Ok(Self::Module(unsafe { Module::deserialize(engine, bytes)? }))
            }
            // SAFETY: as above.
            Some(Precompiled::Component) => Ok(Self::Component(unsafe {
                Component::deserialize(engine, bytes)?
            })),
            None => Err(wasmtime::format_err!("not a precompiled Wasmtime artifact")),
        }
    }

    /// The precompiled form, for the disk cache.
    pub(crate) fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        match self {
            Self::Module(module) => module.serialize(),
            Self::Component(component) => component.serialize(),
            Self::Script(source) => Ok([SCRIPT_MAGIC.as_slice(), source].concat()),
        }
    }

    /// Memory the compiled code occupies (its loaded image), bytes.
    pub(crate) fn bytes(&self) -> usize {
        let range = match self {
            Self::Module(module) => module.image_range(),
            Self::Component(component) => component.image_range(),
            Self::Script(source) => return source.len(),
        };
        (range.end as usize).saturating_sub(range.start as usize)
    }

    /// Builds the copy-on-write memory image ahead of the first instantiation (the larger part
    /// of a first run's extra cost). A failure only means Wasmtime will initialise memory by
    /// copying, so it is logged, not returned.
    pub(crate) fn warm_image(&self) {
        let warmed = match self {
            Self::Module(module) => module.initialize_copy_on_write_image(),
            Self::Component(component) => component.initialize_copy_on_write_image(),
            Self::Script(_) => return,
        };
        if let Err(e) = warmed {
            tracing::debug!(error = %e, "no copy-on-write memory image");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{is_component, is_script};

    #[test]
    fn tells_components_from_modules() {
        assert!(!is_component(b"\0asm\x01\0\0\0"));
        assert!(is_component(b"\0asm\x0d\0\x01\0"));
        assert!(!is_component(b"\0as"));
        assert!(!is_component(b"hello world"));
        assert!(is_script(b"function fl_main() {}"));
        assert!(!is_script(b"\0asm\x01\0\0\0"));
    }
}
