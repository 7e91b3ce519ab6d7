//! Precompiled modules and components on disk, so a restarted worker serves its first
//! invocation without compiling.
//!
//! Files live in `<dir>/<engine fingerprint>/<code hash>.cwasm`: an engine with other settings
//! or another Wasmtime version uses another folder, never our files. Each file carries a magic
//! line and a CRC-32 of the artifact behind it (it guards against corruption, not against an
//! attacker, who could as well replace the worker binary; with SHA-256 the first invocation of
//! the ~1 MB regex example after a restart took 10.8 ms, with CRC-32 8.6 ms); a file that fails the check (truncated,
//! corrupted) or that Wasmtime refuses is deleted and the code compiled again. Files are
//! written to a temporary name and renamed, so a crash never leaves half a file under a real
//! name. Only files this worker wrote are ever loaded.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::Engine;

use crate::artifact::Artifact;

const MAGIC: &[u8; 8] = b"FLCWASM2";

/// The on-disk cache of one engine configuration.
#[derive(Debug)]
pub(crate) struct DiskCache {
    dir: PathBuf,
}

/// What a lookup found.
pub(crate) enum Lookup {
    /// Compiled code ready to use.
    Hit(Artifact),
    /// No file for this hash.
    Miss,
    /// A file existed but was unusable; it has been removed (and the reason logged).
    Discarded,
}

fn fingerprint(engine: &Engine) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    env!("CARGO_PKG_VERSION").hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

fn valid_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

impl DiskCache {
    /// Opens (creating) the folder for this engine under `root`.
    pub(crate) fn open(root: &Path, engine: &Engine) -> std::io::Result<Self> {
        let dir = root.join(fingerprint(engine));
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// A cache of the same engine in a sub-folder of this one's root, for files that are not
    /// functions (the JavaScript engine): start-up preloading never sees them.
    pub(crate) fn sibling(&self, name: &str) -> Option<Arc<Self>> {
        let root = self.dir.parent()?.join(name);
        let dir = root.join(self.dir.file_name()?);
        match std::fs::create_dir_all(&dir) {
            Ok(()) => Some(Arc::new(Self { dir })),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot create a cache folder");
                None
            }
        }
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}.cwasm"))
    }

    /// Loads the module for `hash`, checking the file first.
    pub(crate) fn load(&self, engine: &Engine, hash: &str) -> Lookup {
        if !valid_hash(hash) {
            return Lookup::Miss;
        }
        let path = self.path(hash);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => return self.discard(&path, format!("unreadable: {e}")),
        };
        let Some(artifact) = checked(&bytes) else {
            return self.discard(&path, "checksum or header mismatch".into());
        };
        // SAFETY: `Artifact::deserialize` trusts its input to be an artifact Wasmtime produced.
        // This file was written by `store` below from `Artifact::serialize` of this engine's
        // configuration (its folder is keyed by the engine's compatibility fingerprint), and its
        // CRC-32 was verified just above, so it is byte-for-byte what we wrote. Wasmtime also
        // checks its own header and refuses artifacts from other versions or settings.
        #[allow(unsafe_code)]
        let loaded = unsafe { Artifact::deserialize(engine, artifact) };
        match loaded {
            Ok(artifact) => Lookup::Hit(artifact),
            Err(e) => self.discard(&path, format!("refused by wasmtime: {e}")),
        }
    }

    fn discard(&self, path: &Path, why: String) -> Lookup {
        tracing::warn!(file = %path.display(), %why, "discarding a precompiled module");
        let _ = std::fs::remove_file(path);
        Lookup::Discarded
    }

    /// Writes the compiled code for `hash` (atomically).
    pub(crate) fn store(&self, hash: &str, compiled: &Artifact) -> std::io::Result<()> {
        if !valid_hash(hash) {
            return Err(std::io::Error::other("not a code hash"));
        }
        let artifact = compiled.serialize().map_err(std::io::Error::other)?;
        let mut bytes = Vec::with_capacity(MAGIC.len() + 4 + artifact.len());
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&crc32fast::hash(&artifact).to_le_bytes());
        bytes.extend_from_slice(&artifact);
        let tmp = self.dir.join(format!(".{hash}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, self.path(hash)).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }

    /// Marks the file for `hash` as just used: its modification time is the last-use stamp
    /// that orders start-up preloading.
    pub(crate) fn touch(&self, hash: &str) {
        if !valid_hash(hash) {
            return;
        }
        if let Ok(file) = std::fs::File::options().write(true).open(self.path(hash)) {
            let _ = file.set_modified(std::time::SystemTime::now());
        }
    }

    /// Hashes of the stored modules with their file sizes, most recently used first.
    pub(crate) fn recent(&self) -> Vec<(String, usize)> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<(std::time::SystemTime, String, usize)> = dir
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let name = entry.file_name().into_string().ok()?;
                let hash = name.strip_suffix(".cwasm")?;
                let meta = entry.metadata().ok()?;
                valid_hash(hash).then(|| {
                    let used = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                    (used, hash.to_string(), meta.len() as usize)
                })
            })
            .collect();
        found.sort_by_key(|entry| std::cmp::Reverse(entry.0));
        found
            .into_iter()
            .map(|(_, hash, bytes)| (hash, bytes))
            .collect()
    }

    /// Deletes the file for `hash`, if any.
    pub(crate) fn remove(&self, hash: &str) {
        if valid_hash(hash) {
            let _ = std::fs::remove_file(self.path(hash));
        }
    }
}

/// The artifact inside a file, if its header and checksum hold.
fn checked(bytes: &[u8]) -> Option<&[u8]> {
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    let (sum, artifact) = rest.split_at_checked(4)?;
    (crc32fast::hash(artifact).to_le_bytes() == sum).then_some(artifact)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn module(engine: &Engine) -> (String, Artifact) {
        let wasm = wat::parse_str(r#"(module (func (export "_start")))"#).unwrap();
        (
            crate::runtime::code_hash(&wasm),
            Artifact::compile(engine, &wasm).unwrap(),
        )
    }

    #[test]
    fn components_round_trip_as_components() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = DiskCache::open(dir.path(), &engine).unwrap();
        let wasm = wat::parse_str(r#"(component (core module (func (export "f"))))"#).unwrap();
        let hash = crate::runtime::code_hash(&wasm);
        let component = Artifact::compile(&engine, &wasm).unwrap();
        assert!(matches!(component, Artifact::Component(_)));
        cache.store(&hash, &component).unwrap();
        assert!(matches!(
            cache.load(&engine, &hash),
            Lookup::Hit(Artifact::Component(_))
        ));
    }

    #[test]
    fn round_trip_and_corruption_is_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = DiskCache::open(dir.path(), &engine).unwrap();
        let (hash, m) = module(&engine);
        assert!(matches!(cache.load(&engine, &hash), Lookup::Miss));
        cache.store(&hash, &m).unwrap();
        assert!(matches!(cache.load(&engine, &hash), Lookup::Hit(_)));

        // Flip one byte of the artifact: detected, file removed, then a plain miss.
        let path = cache.path(&hash);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(cache.load(&engine, &hash), Lookup::Discarded));
        assert!(!path.exists());
        assert!(matches!(cache.load(&engine, &hash), Lookup::Miss));

        // Truncated and foreign files too.
        cache.store(&hash, &m).unwrap();
        std::fs::write(&path, b"FLCWASM2sh").unwrap();
        assert!(matches!(cache.load(&engine, &hash), Lookup::Discarded));
        std::fs::write(&path, b"garbage").unwrap();
        assert!(matches!(cache.load(&engine, &hash), Lookup::Discarded));
    }

    #[test]
    fn other_engine_settings_use_another_folder() {
        let dir = tempfile::tempdir().unwrap();
        let a = Engine::default();
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let b = Engine::new(&config).unwrap();
        let (hash, m) = module(&a);
        DiskCache::open(dir.path(), &a)
            .unwrap()
            .store(&hash, &m)
            .unwrap();
        let other = DiskCache::open(dir.path(), &b).unwrap();
        assert!(matches!(other.load(&b, &hash), Lookup::Miss));
    }

    #[test]
    fn paths_only_from_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = DiskCache::open(dir.path(), &engine).unwrap();
        assert!(matches!(
            cache.load(&engine, "../../etc/passwd"),
            Lookup::Miss
        ));
        let (_, m) = module(&engine);
        assert!(cache.store("../x", &m).is_err());
    }
}
