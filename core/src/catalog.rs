//! The Core's in-memory copy of function and module metadata, so that an invocation reads no
//! store row: the invocation path looks a function up here and goes to the store only on a
//! miss. Every change the Core makes to the store invalidates the entries it touches, *after*
//! the store write; a lookup that read the store before an invalidation does not cache what it
//! read (a generation counter, as `revocations` does for sessions in platform.rs), so a stale
//! row can never outlive the change that replaced it.
//!
//! Only rows that exist are cached (a miss always asks the store), and the table is bounded:
//! past [`MAX_ENTRIES`] lookups go to the store instead of growing it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::store::{FunctionRow, ModuleRow};

/// Most functions (and, separately, modules) kept in memory.
pub const MAX_ENTRIES: usize = 65_536;

/// A function's metadata as the invocation path needs it.
#[derive(Debug)]
pub struct CachedFunction {
    /// The stored row (no code: the store keeps that apart).
    pub row: FunctionRow,
    /// The egress allow-list, parsed once.
    pub allow_hosts: Vec<String>,
    /// Its environment: its module's configuration with its own over it (a module's change
    /// drops its functions' entries, `Catalog::module_changed`); secrets by reference only.
    pub env: crate::config::Environment,
    /// Its canary, when one runs.
    pub canary: Option<Canary>,
}

/// A running canary of a cached function: the version that gets a share of its invocations.
#[derive(Debug)]
pub struct Canary {
    /// The canary's version.
    pub version: i64,
    /// The share of invocations it gets, percent.
    pub percent: u8,
    /// When it started, unix milliseconds.
    pub since: i64,
    /// That version's entry, read from the store by its first invocation and kept with this
    /// one (so it goes with it on every change of the function or its module).
    pub function: tokio::sync::OnceCell<Arc<CachedFunction>>,
}

impl CachedFunction {
    /// The entry for a stored row of a function whose module's configuration is
    /// `module_config` (stored text).
    pub fn new(row: FunctionRow, module_config: &str) -> Self {
        let allow_hosts = serde_json::from_str(&row.allow_hosts).unwrap_or_default();
        let env = crate::config::effective(module_config, &row.config);
        let canary = row.canary().map(|(version, percent)| Canary {
            version,
            percent,
            since: row.canary_since.unwrap_or(0),
            function: tokio::sync::OnceCell::new(),
        });
        Self {
            row,
            allow_hosts,
            env,
            canary,
        }
    }
}

/// Function and module metadata read from the store, shared by every request.
#[derive(Debug, Default)]
pub struct Catalog {
    /// module → function name → entry (nested so a lookup borrows its `&str`s).
    functions: RwLock<HashMap<String, HashMap<String, Arc<CachedFunction>>>>,
    /// Entries in `functions`.
    function_count: AtomicU64,
    modules: RwLock<HashMap<String, Arc<ModuleRow>>>,
    /// Bumped by every invalidation.
    generation: AtomicU64,
    /// Told of every change this Core makes, for the Cores sharing its store (`crate::peers`).
    changes: Option<Arc<crate::peers::Changes>>,
}

/// Proof of the generation a store read started in: what it read is cached only if nothing
/// was invalidated meanwhile.
#[derive(Debug, Clone, Copy)]
pub struct ReadTicket(u64);

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty catalog that tells `changes` of every change this Core makes.
    pub fn telling(changes: Arc<crate::peers::Changes>) -> Self {
        Self {
            changes: Some(changes),
            ..Self::default()
        }
    }

    fn told(&self) {
        if let Some(changes) = &self.changes {
            changes.changed();
        }
    }

    /// Take before reading the store on a miss.
    pub fn ticket(&self) -> ReadTicket {
        ReadTicket(self.generation.load(Ordering::Acquire))
    }

    /// A function's cached metadata, if it was read before and has not changed since.
    pub fn function(&self, module: &str, name: &str) -> Option<Arc<CachedFunction>> {
        self.functions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(module)?
            .get(name)
            .cloned()
    }

    /// Caches a row read from the store under `ticket`, unless something was invalidated
    /// since; answers the entry either way.
    pub fn remember_function(
        &self,
        ticket: ReadTicket,
        row: FunctionRow,
        module_config: &str,
    ) -> Arc<CachedFunction> {
        let entry = Arc::new(CachedFunction::new(row, module_config));
        let mut functions = self.functions.write().unwrap_or_else(|p| p.into_inner());
        let count = self.function_count.load(Ordering::Relaxed) as usize;
        if self.generation.load(Ordering::Acquire) == ticket.0 && count < MAX_ENTRIES {
            let previous = functions
                .entry(entry.row.module.clone())
                .or_default()
                .insert(entry.row.name.clone(), entry.clone());
            if previous.is_none() {
                self.function_count.fetch_add(1, Ordering::Relaxed);
            }
        }
        entry
    }

    /// A module's cached row, if it was read before and has not changed since.
    pub fn module(&self, name: &str) -> Option<Arc<ModuleRow>> {
        self.modules
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// As [`Catalog::remember_function`], for a module row.
    pub fn remember_module(&self, ticket: ReadTicket, row: ModuleRow) -> Arc<ModuleRow> {
        let row = Arc::new(row);
        let mut modules = self.modules.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == ticket.0 && modules.len() < MAX_ENTRIES {
            modules.insert(row.name.clone(), row.clone());
        }
        row
    }

    /// A function was created, updated, renamed or deleted (call after the store write).
    pub fn function_changed(&self, module: &str, name: &str) {
        self.told();
        let mut functions = self.functions.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(names) = functions.get_mut(module)
            && names.remove(name).is_some()
        {
            self.function_count.fetch_sub(1, Ordering::Relaxed);
            if names.is_empty() {
                functions.remove(module);
            }
        }
    }

    /// A module was renamed, reconfigured or deleted: its row and its functions' entries go
    /// (call after the store write).
    pub fn module_changed(&self, module: &str) {
        self.told();
        let mut functions = self.functions.write().unwrap_or_else(|p| p.into_inner());
        let mut modules = self.modules.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(names) = functions.remove(module) {
            self.function_count
                .fetch_sub(names.len() as u64, Ordering::Relaxed);
        }
        modules.remove(module);
    }

    /// Forgets everything: for a change made where this Core cannot see which rows it touched
    /// (another Core sharing the database). Not told to the other Cores: it is theirs.
    pub fn clear(&self) {
        let mut functions = self.functions.write().unwrap_or_else(|p| p.into_inner());
        let mut modules = self.modules.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        functions.clear();
        self.function_count.store(0, Ordering::Relaxed);
        modules.clear();
    }

    /// Functions and modules held.
    pub fn len(&self) -> (usize, usize) {
        (
            self.function_count.load(Ordering::Relaxed) as usize,
            self.modules.read().unwrap_or_else(|p| p.into_inner()).len(),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn row(module: &str, name: &str, hash: &str) -> FunctionRow {
        FunctionRow {
            module: module.into(),
            name: name.into(),
            hash: hash.into(),
            allow_hosts: r#"["example.com"]"#.into(),
            ..FunctionRow::default()
        }
    }

    #[test]
    fn remembers_what_it_read() {
        let catalog = Catalog::new();
        assert!(catalog.function("m", "f").is_none());
        let ticket = catalog.ticket();
        let entry = catalog.remember_function(ticket, row("m", "f", "h1"), "{}");
        assert_eq!(entry.allow_hosts, vec!["example.com".to_string()]);
        assert_eq!(
            catalog
                .function("m", "f")
                .map(|f| f.row.hash.clone())
                .as_deref(),
            Some("h1")
        );
    }

    #[test]
    fn a_read_older_than_a_change_is_not_cached() {
        let catalog = Catalog::new();
        let ticket = catalog.ticket();
        // The update lands (and invalidates) while the lookup's store read is in flight.
        catalog.function_changed("m", "f");
        let entry = catalog.remember_function(ticket, row("m", "f", "old"), "{}");
        assert_eq!(entry.row.hash, "old", "the caller still gets what it read");
        assert!(catalog.function("m", "f").is_none(), "but it is not kept");
    }

    #[test]
    fn changes_drop_exactly_their_rows() {
        let catalog = Catalog::new();
        for (m, f) in [("a", "f"), ("a", "g"), ("b", "f")] {
            catalog.remember_function(catalog.ticket(), row(m, f, "h"), "{}");
        }
        catalog.remember_module(
            catalog.ticket(),
            ModuleRow {
                name: "a".into(),
                ..ModuleRow::default()
            },
        );
        catalog.function_changed("a", "f");
        assert!(catalog.function("a", "f").is_none());
        assert!(catalog.function("a", "g").is_some());
        catalog.module_changed("a");
        assert!(catalog.function("a", "g").is_none());
        assert!(catalog.module("a").is_none());
        assert!(catalog.function("b", "f").is_some());
        catalog.clear();
        assert_eq!(catalog.len(), (0, 0));
    }

    #[test]
    fn is_bounded() {
        let catalog = Catalog::new();
        for i in 0..MAX_ENTRIES + 10 {
            catalog.remember_function(catalog.ticket(), row("m", &i.to_string(), "h"), "{}");
        }
        assert_eq!(catalog.len().0, MAX_ENTRIES);
        // Past the bound a lookup still answers from what it read.
        let entry = catalog.remember_function(catalog.ticket(), row("m", "late", "h2"), "{}");
        assert_eq!(entry.row.hash, "h2");
    }
}
