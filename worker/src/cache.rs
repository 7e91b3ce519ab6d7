//! Compiled functions held in memory, keyed by code hash. (Bounded by bytes with LRU eviction
//! and backed by precompiled files on disk in the code-lifecycle issue.)

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use wasmtime::{InstancePre, Module};

use crate::abi::Abi;
use crate::host::HostState;

/// A function ready to instantiate.
pub(crate) struct Compiled {
    /// The compiled module (kept for its exports and size).
    pub(crate) _module: Module,
    /// Imports resolved once; every invocation only instantiates.
    pub(crate) pre: InstancePre<HostState>,
    /// How to call it.
    pub(crate) abi: Abi,
    /// `module/name`, for logs.
    pub(crate) label: String,
}

/// Hash → compiled function. Reads (every invocation) take a shared lock for a map lookup.
#[derive(Default)]
pub(crate) struct CodeCache {
    entries: RwLock<HashMap<String, Arc<Compiled>>>,
}

impl CodeCache {
    pub(crate) fn get(&self, hash: &str) -> Option<Arc<Compiled>> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.get(hash).cloned()
    }

    pub(crate) fn insert(&self, hash: String, compiled: Arc<Compiled>) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        entries.insert(hash, compiled);
    }

    /// Drops these hashes; returns how many were present.
    pub(crate) fn evict(&self, hashes: &[String]) -> usize {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        hashes
            .iter()
            .filter(|h| entries.remove(*h).is_some())
            .count()
    }

    pub(crate) fn hashes(&self) -> Vec<String> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.keys().cloned().collect()
    }
}
