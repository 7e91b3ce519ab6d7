//! Secrets: a subject's named values (a database password, an API key), written through the
//! API and never read back through it. The Core seals each value with XChaCha20-Poly1305
//! under the operator's key (a random 24-byte nonce per write; the owner and name as
//! associated data, so a sealed value cannot be moved to another row) before the store sees
//! it, and opens it only to put it in the environment of an invocation of a function whose
//! configuration refers to it (`crate::config`). Opened values are kept in memory, dropped on
//! rotation and deletion.
//!
//! With secrets stored, the Core refuses to start without the key, or with a key that does not
//! open them ([`Secrets::check`]).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore;

use crate::store::{SecretRow, Store, StoreError};

/// Longest secret value, bytes (it becomes an environment variable).
pub const MAX_VALUE_BYTES: usize = 4096;
/// Most secrets one subject holds.
pub const MAX_PER_SUBJECT: usize = 100;
/// Most opened values kept in memory; past it they are opened again on each use.
const MAX_OPENED: usize = 10_000;

/// What can go wrong with secrets.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// No key was given to this Core.
    #[error(
        "this Core has no secrets key: start it with --secrets-key-file (or FUNLESS_SECRETS_KEY)"
    )]
    NoKey,
    /// The key text is not 64 hexadecimal digits.
    #[error(
        "the secrets key must be 64 hexadecimal digits (32 bytes), as `openssl rand -hex 32` prints"
    )]
    BadKey,
    /// The key file could not be read.
    #[error("reading the secrets key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A stored value does not open with this key (another key, or a damaged row).
    #[error("secret '{0}' does not open with this Core's secrets key")]
    Sealed(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The operator's key.
#[derive(Clone)]
pub struct SecretsKey(XChaCha20Poly1305);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(..)")
    }
}

impl SecretsKey {
    /// A key from its 64 hexadecimal digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, SecretsError> {
        let bytes = hex::decode(text.trim()).map_err(|_| SecretsError::BadKey)?;
        if bytes.len() != 32 {
            return Err(SecretsError::BadKey);
        }
        Ok(Self(XChaCha20Poly1305::new(Key::from_slice(&bytes))))
    }

    /// The key from `file` (its text), else from `value` (the environment's), else none.
    pub fn load(file: Option<&Path>, value: Option<&str>) -> Result<Option<Self>, SecretsError> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| SecretsError::KeyFile {
                path: path.display().to_string(),
                source,
            })?;
            return Self::from_hex(&text).map(Some);
        }
        value.map(Self::from_hex).transpose()
    }

    fn seal(
        &self,
        owner: i64,
        name: &str,
        value: &str,
    ) -> Result<(Vec<u8>, Vec<u8>), SecretsError> {
        let mut nonce = [0u8; 24];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated(owner, name);
        let sealed = self
            .0
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: value.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SecretsError::Sealed(name.to_string()))?;
        Ok((nonce.to_vec(), sealed))
    }

    fn open(&self, row: &SecretRow) -> Result<String, SecretsError> {
        let sealed = || SecretsError::Sealed(row.name.clone());
        if row.nonce.len() != 24 {
            return Err(sealed());
        }
        let aad = associated(row.owner_id, &row.name);
        let opened = self
            .0
            .decrypt(
                XNonce::from_slice(&row.nonce),
                Payload {
                    msg: &row.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| sealed())?;
        String::from_utf8(opened).map_err(|_| sealed())
    }
}

/// The associated data of a sealed value: its owner and name.
fn associated(owner: i64, name: &str) -> Vec<u8> {
    let mut aad = owner.to_be_bytes().to_vec();
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// A secret as listed: its name and times, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMeta {
    /// Its name.
    pub name: String,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Last rotation (or creation), unix milliseconds.
    pub updated_at: i64,
}

/// The Core's secrets: the key, the store, and the values opened so far.
#[derive(Debug)]
pub struct Secrets {
    key: Option<SecretsKey>,
    store: Store,
    /// owner → name → value (nested, so a lookup borrows the name instead of building a key).
    opened: RwLock<HashMap<i64, HashMap<String, Arc<str>>>>,
    /// Values in `opened`.
    opened_count: std::sync::atomic::AtomicUsize,
    /// Bumped by every rotation and deletion: a value read from the store before one is not
    /// kept (it may be the old value), as `crate::catalog` does for function rows.
    generation: std::sync::atomic::AtomicU64,
}

impl Secrets {
    /// Secrets over `store`, sealed with `key` when given.
    pub fn new(store: Store, key: Option<SecretsKey>) -> Self {
        Self {
            key,
            store,
            opened: RwLock::default(),
            opened_count: std::sync::atomic::AtomicUsize::new(0),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// At start: with secrets stored, a key that opens them is required.
    pub async fn check(&self) -> Result<(), SecretsError> {
        let Some(row) = self.store.any_secret().await? else {
            return Ok(());
        };
        let key = self.key.as_ref().ok_or(SecretsError::NoKey)?;
        key.open(&row).map(drop)
    }

    fn key(&self) -> Result<&SecretsKey, SecretsError> {
        self.key.as_ref().ok_or(SecretsError::NoKey)
    }

    /// Stores or rotates `owner`'s secret `name`; answers whether it is new. The caller has
    /// checked the name, the value's size and the owner's count.
    pub async fn put(&self, owner: i64, name: &str, value: &str) -> Result<bool, SecretsError> {
        let (nonce, sealed) = self.key()?.seal(owner, name, value)?;
        let created = self.store.put_secret(owner, name, &nonce, &sealed).await?;
        self.forget(owner, name);
        Ok(created)
    }

    /// `owner`'s secrets, by name.
    pub async fn list(&self, owner: i64) -> Result<Vec<SecretMeta>, SecretsError> {
        Ok(self
            .store
            .list_secrets(owner)
            .await?
            .into_iter()
            .map(|row| SecretMeta {
                name: row.name,
                created_at: row.created_at,
                updated_at: row.updated_at,
            })
            .collect())
    }

    /// Deletes `owner`'s secret `name`.
    pub async fn delete(&self, owner: i64, name: &str) -> Result<(), SecretsError> {
        self.store.delete_secret(owner, name).await?;
        self.forget(owner, name);
        Ok(())
    }

    /// The value of `owner`'s secret `name`, if it exists.
    pub async fn value(&self, owner: i64, name: &str) -> Result<Option<Arc<str>>, SecretsError> {
        let cached = self
            .opened
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&owner)
            .and_then(|names| names.get(name))
            .cloned();
        if let Some(value) = cached {
            return Ok(Some(value));
        }
        let ticket = self.generation.load(Ordering::Acquire);
        let Some(row) = self.store.get_secret(owner, name).await? else {
            return Ok(None);
        };
        let value: Arc<str> = Arc::from(self.key()?.open(&row)?);
        let mut opened = self.opened.write().unwrap_or_else(|p| p.into_inner());
        if self.generation.load(Ordering::Acquire) == ticket
            && self.opened_count.load(Ordering::Relaxed) < MAX_OPENED
            && opened
                .entry(owner)
                .or_default()
                .insert(name.to_string(), value.clone())
                .is_none()
        {
            self.opened_count.fetch_add(1, Ordering::Relaxed);
        }
        Ok(Some(value))
    }

    /// Drops every opened value (another Core may have rotated or deleted any of them).
    pub fn forget_all(&self) {
        let mut opened = self.opened.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        opened.clear();
        self.opened_count.store(0, Ordering::Relaxed);
    }

    fn forget(&self, owner: i64, name: &str) {
        let mut opened = self.opened.write().unwrap_or_else(|p| p.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(names) = opened.get_mut(&owner)
            && names.remove(name).is_some()
        {
            self.opened_count.fetch_sub(1, Ordering::Relaxed);
            if names.is_empty() {
                opened.remove(&owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn keys_are_64_hex_digits() {
        assert!(SecretsKey::from_hex(KEY).is_ok());
        assert!(SecretsKey::from_hex(&format!(" {KEY}\n")).is_ok());
        for bad in [
            "",
            "00",
            &KEY[..62],
            &format!("{KEY}00"),
            &KEY.replace('0', "g"),
        ] {
            assert!(
                matches!(SecretsKey::from_hex(bad), Err(SecretsError::BadKey)),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn a_rotation_or_deletion_is_seen_by_the_next_read() {
        let store = Store::open("sqlite::memory:").await.expect("open");
        let owner = store
            .create_subject("alice", "hash", false)
            .await
            .expect("subject")
            .id;
        let secrets = Secrets::new(store.clone(), Some(SecretsKey::from_hex(KEY).expect("key")));
        assert!(secrets.put(owner, "db", "one").await.expect("put"));
        assert_eq!(
            secrets.value(owner, "db").await.expect("read").as_deref(),
            Some("one")
        );
        // Rotated: not new, and the value kept in memory is not served again.
        assert!(!secrets.put(owner, "db", "two").await.expect("put"));
        assert_eq!(
            secrets.value(owner, "db").await.expect("read").as_deref(),
            Some("two")
        );
        secrets.delete(owner, "db").await.expect("delete");
        assert_eq!(secrets.value(owner, "db").await.expect("read"), None);
        assert!(matches!(
            secrets.delete(owner, "db").await,
            Err(SecretsError::Store(StoreError::NotFound(_)))
        ));
        // Without a key nothing is written.
        let keyless = Secrets::new(store, None);
        assert!(matches!(
            keyless.put(owner, "db", "x").await,
            Err(SecretsError::NoKey)
        ));
        assert_eq!(keyless.list(owner).await.expect("list"), []);
    }

    #[test]
    fn the_key_comes_from_its_file_else_from_the_environment() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("key");
        std::fs::write(&file, format!("{KEY}\n")).expect("write");
        assert!(matches!(SecretsKey::load(Some(&file), None), Ok(Some(_))));
        // The file wins over the environment's value, even a bad one.
        assert!(matches!(
            SecretsKey::load(Some(&file), Some("bad")),
            Ok(Some(_))
        ));
        assert!(matches!(SecretsKey::load(None, Some(KEY)), Ok(Some(_))));
        assert!(matches!(SecretsKey::load(None, None), Ok(None)));
        assert!(matches!(
            SecretsKey::load(None, Some("short")),
            Err(SecretsError::BadKey)
        ));
        let missing = dir.path().join("missing");
        assert!(matches!(
            SecretsKey::load(Some(&missing), None),
            Err(SecretsError::KeyFile { .. })
        ));
        std::fs::write(&file, "not hex").expect("write");
        assert!(matches!(
            SecretsKey::load(Some(&file), None),
            Err(SecretsError::BadKey)
        ));
    }

    #[test]
    fn a_sealed_value_opens_only_with_its_key_owner_and_name() {
        let key = SecretsKey::from_hex(KEY).expect("key");
        let (nonce, ciphertext) = key.seal(7, "db", "s3cret value").expect("seal");
        assert!(!ciphertext.windows(6).any(|w| w == b"s3cret"));
        let row = |owner_id, name: &str, nonce: &[u8]| SecretRow {
            owner_id,
            name: name.into(),
            nonce: nonce.to_vec(),
            ciphertext: ciphertext.clone(),
            created_at: 0,
            updated_at: 0,
        };
        assert_eq!(
            key.open(&row(7, "db", &nonce)).expect("open"),
            "s3cret value"
        );
        assert!(key.open(&row(8, "db", &nonce)).is_err());
        assert!(key.open(&row(7, "dc", &nonce)).is_err());
        assert!(key.open(&row(7, "db", &nonce[..12])).is_err());
        let other = SecretsKey::from_hex(&KEY.replace("1f", "ff")).expect("key");
        assert!(other.open(&row(7, "db", &nonce)).is_err());
        // A fresh nonce each time: the same value seals differently.
        let (again, _) = key.seal(7, "db", "s3cret value").expect("seal");
        assert_ne!(again, nonce);
    }
}
