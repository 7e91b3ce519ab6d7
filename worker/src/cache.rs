//! Compiled functions held in memory, keyed by code hash, bounded by bytes with
//! least-recently-used eviction. Lookups (every invocation) take a shared lock and bump an
//! atomic use stamp; only inserts and evictions take the exclusive lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use wasmtime::InstancePre;
use wasmtime_wasi::p2::bindings::CommandPre;

use crate::abi::Abi;
use crate::artifact::Artifact;
use crate::host::{ComponentState, HostState};
use crate::javascript::JsEngine;

/// Imports resolved once; every invocation only instantiates.
pub(crate) enum Pre {
    /// A core module.
    Module(InstancePre<HostState>),
    /// A `wasi:cli/run` component.
    Component(CommandPre<ComponentState>),
    /// A JavaScript function: the shared engine and the function's source.
    Script {
        engine: Arc<JsEngine>,
        source: Arc<[u8]>,
    },
}

/// A function ready to instantiate.
pub(crate) struct Compiled {
    /// The compiled code (kept for its size and for writing it to disk).
    pub(crate) artifact: Artifact,
    /// Ready to instantiate.
    pub(crate) pre: Pre,
    /// How to call it.
    pub(crate) abi: Abi,
    /// Loaded from the disk cache at start-up and not invoked yet: its first invocation is
    /// counted as disk-warm, which is where its code came from.
    pub(crate) preloaded: AtomicBool,
}

impl Compiled {
    /// Memory the compiled code occupies (its loaded image), bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.artifact.bytes()
    }
}

/// The map and the sum of its entries' bytes, kept together under one lock so inserting is
/// not a scan of every entry.
#[derive(Default)]
struct Entries {
    map: HashMap<String, Entry>,
    bytes: usize,
}

struct Entry {
    compiled: Arc<Compiled>,
    bytes: usize,
    last_used: AtomicU64,
}

/// Counters of the cache, for metrics and the Core.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CacheStats {
    /// Entries held.
    pub(crate) entries: u64,
    /// Bytes held.
    pub(crate) bytes: u64,
    /// The byte threshold.
    pub(crate) capacity: u64,
    /// Lookups that found the code.
    pub(crate) hits: u64,
    /// Lookups that did not.
    pub(crate) misses: u64,
    /// Entries dropped to stay under the threshold.
    pub(crate) evictions: u64,
}

/// Hash → compiled function, at most `capacity` bytes.
pub(crate) struct CodeCache {
    entries: RwLock<Entries>,
    capacity: usize,
    clock: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl CodeCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: RwLock::new(Entries::default()),
            capacity,
            clock: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Looks a hash up, counting the hit or miss and marking the entry used.
    pub(crate) fn get(&self, hash: &str) -> Option<Arc<Compiled>> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        match entries.map.get(hash) {
            Some(entry) => {
                entry.last_used.store(self.tick(), Ordering::Relaxed);
                self.hits.fetch_add(1, Ordering::Relaxed);
                Some(entry.compiled.clone())
            }
            None => {
                self.misses.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Whether a hash is held (not counted as a lookup).
    pub(crate) fn contains(&self, hash: &str) -> bool {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries.map.contains_key(hash)
    }

    /// Adds an entry, then evicts least recently used ones (never the new one) until the total
    /// fits. Returns the evicted hashes.
    pub(crate) fn insert(&self, hash: String, compiled: Arc<Compiled>) -> Vec<String> {
        let bytes = compiled.bytes();
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        let replaced = entries.map.insert(
            hash.clone(),
            Entry {
                compiled,
                bytes,
                last_used: AtomicU64::new(self.tick()),
            },
        );
        entries.bytes = entries.bytes + bytes - replaced.map_or(0, |old| old.bytes);
        let mut evicted = Vec::new();
        while entries.bytes > self.capacity {
            let victim = entries
                .map
                .iter()
                .filter(|(h, _)| **h != hash)
                .min_by_key(|(_, e)| e.last_used.load(Ordering::Relaxed))
                .map(|(h, _)| h.clone());
            let Some(victim) = victim else { break };
            if let Some(entry) = entries.map.remove(&victim) {
                entries.bytes -= entry.bytes;
                self.evictions.fetch_add(1, Ordering::Relaxed);
                evicted.push(victim);
            }
        }
        evicted
    }

    /// Drops these hashes; returns how many were present.
    pub(crate) fn remove(&self, hashes: &[String]) -> usize {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        let mut removed = 0;
        for hash in hashes {
            if let Some(entry) = entries.map.remove(hash) {
                entries.bytes -= entry.bytes;
                removed += 1;
            }
        }
        removed
    }

    /// Drops every entry (the table's owner ended); returns how many there were.
    pub(crate) fn clear(&self) -> usize {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        let n = entries.map.len();
        entries.map.clear();
        entries.bytes = 0;
        n
    }

    /// Hashes held, most recently used first.
    pub(crate) fn hashes(&self) -> Vec<String> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let mut held: Vec<(u64, String)> = entries
            .map
            .iter()
            .map(|(h, e)| (e.last_used.load(Ordering::Relaxed), h.clone()))
            .collect();
        held.sort_by_key(|entry| std::cmp::Reverse(entry.0));
        held.into_iter().map(|(_, h)| h).collect()
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        CacheStats {
            entries: entries.map.len() as u64,
            bytes: entries.bytes as u64,
            capacity: self.capacity as u64,
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for CodeCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeCache")
            .field("stats", &self.stats())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn compiled(engine: &wasmtime::Engine, pages: u32) -> Arc<Compiled> {
        let wat = format!(
            r#"(module (memory (export "memory") {pages}) (data (i32.const 0) "x") (func (export "_start")))"#
        );
        let module = wasmtime::Module::new(engine, wat::parse_str(wat).unwrap()).unwrap();
        let linker = crate::host::linker(engine).unwrap();
        Arc::new(Compiled {
            pre: Pre::Module(linker.instantiate_pre(&module).unwrap()),
            artifact: Artifact::Module(module),
            abi: Abi::WasiCommand,
            preloaded: AtomicBool::new(false),
        })
    }

    /// Regression test for the fuzz finding that made inserts scan every entry: the running
    /// byte total must match the entries through inserts, replacements, removals and evictions.
    #[test]
    fn running_total_matches_the_entries() {
        let engine = wasmtime::Engine::default();
        let one = compiled(&engine, 1);
        let size = one.bytes();
        let cache = CodeCache::new(size * 3);
        let check = |cache: &CodeCache| {
            let entries = cache.entries.read().unwrap();
            let sum: usize = entries.map.values().map(|e| e.bytes).sum();
            assert_eq!(entries.bytes, sum);
            assert!(entries.bytes <= size * 3);
        };
        for i in 0..10 {
            cache.insert(format!("h{i}"), one.clone());
            check(&cache);
        }
        assert_eq!(cache.stats().entries, 3);
        assert_eq!(cache.stats().evictions, 7);
        cache.insert("h9".into(), one.clone()); // replacing keeps the total right
        check(&cache);
        assert_eq!(cache.remove(&["h9".into(), "nope".into()]), 1);
        check(&cache);
        assert_eq!(cache.stats().bytes as usize, size * 2);
    }
}
