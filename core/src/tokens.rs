//! Bearer tokens: random, shown once, stored only as SHA-256 hashes. On first start the Core
//! creates an admin and a default user and writes their tokens once to a file (mode 0600) in
//! the data directory, in the `fl` config format, and to the log.

use std::io::Write;
use std::path::{Path, PathBuf};

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::store::{Store, StoreError};

/// Name of the admin subject created on first start.
pub const ADMIN_SUBJECT: &str = "admin";
/// Name of the user subject created on first start.
pub const DEFAULT_SUBJECT: &str = "default";
/// File in the data directory holding the first tokens.
pub const TOKENS_FILE: &str = "fl-config.toml";

/// A new random token (256 bits, hex).
pub fn generate() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("fl_{}", hex::encode(bytes))
}

/// The stored form of a token.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Errors of the first-start set-up.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The tokens file could not be written.
    #[error("cannot write {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Creates the admin and default subjects when the store has no subject yet; returns the path
/// of the tokens file when it did.
pub async fn bootstrap(
    store: &Store,
    data_dir: &Path,
    api_url: &str,
) -> Result<Option<PathBuf>, BootstrapError> {
    if store.count_subjects().await? > 0 {
        return Ok(None);
    }
    let admin = generate();
    let user = generate();
    match store
        .create_subject(ADMIN_SUBJECT, &hash(&admin), true)
        .await
    {
        Ok(_) => {}
        // Another Core sharing the database got there first.
        Err(StoreError::Conflict(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    store
        .create_subject(DEFAULT_SUBJECT, &hash(&user), false)
        .await?;
    let path = data_dir.join(TOKENS_FILE);
    let text = format!(
        "# FunLess tokens created on first start. They are stored only hashed: keep this file.\n\
         # Use it with: FL_CONFIG={} fl ...   (or copy it to ~/.fl/config)\n\
         host = \"{api_url}\"\n\
         token = \"{user}\"\n\
         admin_token = \"{admin}\"\n",
        path.display()
    );
    write_private(&path, text.as_bytes()).map_err(|source| BootstrapError::File {
        path: path.clone(),
        source,
    })?;
    tracing::warn!(
        file = %path.display(),
        admin_token = %admin,
        user_token = %user,
        "first start: created the admin and default tokens (shown only this once)"
    );
    Ok(Some(path))
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 64);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash("x").len(), 64);
    }
}
