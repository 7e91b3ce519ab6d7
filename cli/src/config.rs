//! The config file: `~/.fl/config` (or `$FL_CONFIG`), TOML with the keys `host`, `token` and
//! `admin_token`. It holds secrets, so it is written with mode 0600 (and its folder 0700) on
//! Unix, atomically (a temporary file renamed over it). Keys this version does not know are
//! ignored when reading and dropped when writing.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Environment variable that overrides the config file's path.
pub(crate) const CONFIG_ENV: &str = "FL_CONFIG";

/// The keys `fl config` accepts.
pub(crate) const KEYS: [&str; 3] = ["host", "token", "admin_token"];

/// The contents of the config file; every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Config {
    /// URL of the Core's API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) host: Option<String>,
    /// Bearer token of the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<String>,
    /// Bearer token for `fl admin` commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) admin_token: Option<String>,
}

/// The config file's path from `$FL_CONFIG`, else `$HOME/.fl/config`; `None` when neither is
/// set.
pub(crate) fn path_from_env() -> Option<PathBuf> {
    path_from(std::env::var_os(CONFIG_ENV), std::env::var_os("HOME"))
}

fn path_from(fl_config: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let non_empty = |v: Option<OsString>| v.filter(|v| !v.is_empty());
    non_empty(fl_config)
        .map(PathBuf::from)
        .or_else(|| non_empty(home).map(|home| Path::new(&home).join(".fl").join("config")))
}

fn unknown_key(key: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "unknown config key {key:?}: valid keys are {}",
        KEYS.join(", ")
    )
}

impl Config {
    /// Reads the file at `path`; a missing file is an empty config.
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes the config to `path`, creating its folder, with mode 0600 on Unix.
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let text = toml::to_string(self).context("encoding the config")?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(format!(".tmp{}", std::process::id()));
        let tmp = PathBuf::from(tmp_name);
        let written = write_private(&tmp, text.as_bytes()).and_then(|()| fs::rename(&tmp, path));
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.with_context(|| format!("writing {}", path.display()))
    }

    /// The value of `key`, `Ok(None)` when unset, an error for an unknown key.
    pub(crate) fn get(&self, key: &str) -> Result<Option<&str>> {
        Ok(match key {
            "host" => self.host.as_deref(),
            "token" => self.token.as_deref(),
            "admin_token" => self.admin_token.as_deref(),
            _ => return Err(unknown_key(key)),
        })
    }

    /// Sets `key`; an error for an unknown key or an invalid host.
    pub(crate) fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let slot = match key {
            "host" => {
                check_host(value)?;
                &mut self.host
            }
            "token" => &mut self.token,
            "admin_token" => &mut self.admin_token,
            _ => return Err(unknown_key(key)),
        };
        *slot = Some(value.to_string());
        Ok(())
    }

    /// The keys that are set, in [`KEYS`] order.
    pub(crate) fn entries(&self) -> Vec<(&'static str, &str)> {
        KEYS.iter()
            .filter_map(|key| match self.get(key) {
                Ok(Some(value)) => Some((*key, value)),
                _ => None,
            })
            .collect()
    }
}

/// A host must be an `http://` URL (this build of `fl` has no TLS: it talks to local or LAN
/// hosts).
pub(crate) fn check_host(host: &str) -> Result<()> {
    if host.starts_with("https://") {
        bail!("host {host:?}: https is not supported by fl, use http://");
    }
    match host.strip_prefix("http://") {
        Some(rest) if !rest.is_empty() => Ok(()),
        _ => bail!("host {host:?} must be an http:// URL, e.g. http://127.0.0.1:4000"),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        // A leftover file keeps its old mode through `open`: force it.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prefers_fl_config_then_home() {
        assert_eq!(
            path_from(Some("/x/cfg".into()), Some("/home/u".into())),
            Some(PathBuf::from("/x/cfg"))
        );
        assert_eq!(
            path_from(None, Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.fl/config"))
        );
        assert_eq!(
            path_from(Some("".into()), Some("/home/u".into())),
            Some(PathBuf::from("/home/u/.fl/config"))
        );
        assert_eq!(path_from(None, None), None);
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config::load(&dir.path().join("nope")).expect("loads");
        assert_eq!(config, Config::default());
        assert!(config.entries().is_empty());
    }

    #[test]
    fn set_save_load_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("dir").join("config");
        let mut config = Config::default();
        config.set("host", "http://10.0.0.2:4000").expect("host");
        config.set("token", "tok").expect("token");
        config.set("admin_token", "adm").expect("admin_token");
        config.save(&path).expect("saves");

        let loaded = Config::load(&path).expect("loads");
        assert_eq!(loaded, config);
        assert_eq!(
            loaded.get("host").expect("key"),
            Some("http://10.0.0.2:4000")
        );
        assert_eq!(
            loaded.entries(),
            vec![
                ("host", "http://10.0.0.2:4000"),
                ("token", "tok"),
                ("admin_token", "adm")
            ]
        );
        let text = fs::read_to_string(&path).expect("reads");
        assert!(text.contains("token = \"tok\""), "{text}");
        // No temporary file left behind.
        let names: Vec<_> = fs::read_dir(path.parent().expect("parent"))
            .expect("lists")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![OsString::from("config")]);
    }

    #[cfg(unix)]
    #[test]
    fn file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("fl").join("config");
        Config::default().save(&path).expect("saves");
        let mode = |p: &Path| fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(dir.path().join("fl").as_path()), 0o700);

        // An existing, too open file is tightened on the next save.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut config = Config::default();
        config.set("token", "secret").expect("sets");
        config.save(&path).expect("saves again");
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn unknown_keys_and_bad_hosts_are_refused() {
        let mut config = Config::default();
        let err = config.set("hots", "x").expect_err("unknown key");
        assert!(
            err.to_string().contains("host, token, admin_token"),
            "{err}"
        );
        assert!(config.get("nope").is_err());
        assert!(config.set("host", "127.0.0.1:4000").is_err());
        assert!(config.set("host", "https://x").is_err());
        assert!(config.set("host", "http://").is_err());
        assert_eq!(config, Config::default());
    }

    #[test]
    fn unknown_keys_in_the_file_are_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config");
        fs::write(&path, "host = \"http://h:1\"\nfuture = 3\n").expect("writes");
        let config = Config::load(&path).expect("loads");
        assert_eq!(config.host.as_deref(), Some("http://h:1"));
        fs::write(&path, "host = [").expect("writes");
        let err = Config::load(&path).expect_err("malformed");
        assert!(format!("{err:#}").contains("parsing"), "{err:#}");
    }
}
