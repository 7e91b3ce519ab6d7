//! The config file: `~/.fl/config` (or `$FL_CONFIG`), in either of two formats:
//!
//! - FunLess's own `key=value` lines (`api_host`, `api_token`, `admin_token`; FunLess's `fl`
//!   reads and writes this file too), the format of a new file;
//! - TOML with the keys `host`, `token` and `admin_token` (what the Core writes on first start
//!   into its data directory as `fl-config.toml`).
//!
//! `fl config set` keeps the format the file has, so one file serves both `fl`s. Keys are
//! accepted under either name (`host` or `api_host`, `token` or `api_token`). Other keys of a
//! FunLess file (`secret_key_base`) are kept as they are; unknown keys of a TOML file are
//! ignored when reading and dropped when writing. The file holds secrets, so it is written with
//! mode 0600 (and its folder 0700) on Unix, atomically (a temporary file renamed over it).

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Environment variable that overrides the config file's path.
pub(crate) const CONFIG_ENV: &str = "FL_CONFIG";

/// The keys `fl config` accepts, by their names in this `fl`.
pub(crate) const KEYS: [&str; 3] = ["host", "token", "admin_token"];

/// FunLess's names of [`KEYS`], in the same order.
const FUNLESS_KEYS: [&str; 3] = ["api_host", "api_token", "admin_token"];

/// How the file is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Format {
    /// FunLess's `key=value` lines.
    #[default]
    Funless,
    /// TOML.
    Toml,
}

/// The contents of the config file; every key is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Config {
    /// URL of the Core's API.
    #[serde(default, alias = "api_host", skip_serializing_if = "Option::is_none")]
    pub(crate) host: Option<String>,
    /// Bearer token of the user.
    #[serde(default, alias = "api_token", skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<String>,
    /// Bearer token for `fl admin` commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) admin_token: Option<String>,
    /// The file's format, kept when it is written back.
    #[serde(skip)]
    pub(crate) format: Format,
    /// Other `key=value` lines of a FunLess file, kept as they are.
    #[serde(skip)]
    pub(crate) other: Vec<(String, String)>,
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
        "unknown config key {key:?}: valid keys are {} (or FunLess's {})",
        KEYS.join(", "),
        FUNLESS_KEYS.join(", ")
    )
}

/// This `fl`'s name of a key given under either name.
fn canonical(key: &str) -> Option<&'static str> {
    KEYS.iter()
        .zip(FUNLESS_KEYS)
        .find(|(ours, theirs)| **ours == key || *theirs == key)
        .map(|(ours, _)| *ours)
}

/// Whether `text` is FunLess's format: every line that is not blank or a comment is
/// `key=value` with a bare (unquoted) value, which TOML would refuse.
fn is_funless_format(text: &str) -> bool {
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .peekable();
    lines.peek().is_some()
        && lines.all(|line| {
            line.split_once('=').is_some_and(|(key, value)| {
                let value = value.trim();
                !key.trim().is_empty()
                    && !key.contains(['"', '[', ' '])
                    && !value.starts_with(['"', '\'', '[', '{'])
                    && value.parse::<i64>().is_err()
                    && !matches!(value, "true" | "false")
            })
        })
}

impl Config {
    /// Reads the file at `path`; a missing file is an empty config (written in FunLess's
    /// format).
    pub(crate) fn load(path: &Path) -> Result<Self> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Self::parse(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Parses either format.
    fn parse(text: &str) -> Result<Self> {
        if !is_funless_format(text) {
            let mut config: Config = toml::from_str(text)?;
            config.format = Format::Toml;
            return Ok(config);
        }
        let mut config = Config::default();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let (key, value) = (key.trim(), value.trim());
            match canonical(key) {
                Some(key) => config.set_unchecked(key, value),
                None => config.other.push((key.to_string(), value.to_string())),
            }
        }
        Ok(config)
    }

    /// The file's text in its format.
    fn render(&self) -> Result<String> {
        match self.format {
            Format::Toml => toml::to_string(self).context("encoding the config"),
            Format::Funless => {
                let mut text = String::new();
                for (key, theirs) in KEYS.iter().zip(FUNLESS_KEYS) {
                    if let Ok(Some(value)) = self.get(key) {
                        text.push_str(&format!("{theirs}={value}\n"));
                    }
                }
                for (key, value) in &self.other {
                    text.push_str(&format!("{key}={value}\n"));
                }
                Ok(text)
            }
        }
    }

    /// Writes the config to `path`, creating its folder, with mode 0600 on Unix.
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        let text = self.render()?;
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

    /// The value of `key` (either name), `Ok(None)` when unset, an error for an unknown key.
    pub(crate) fn get(&self, key: &str) -> Result<Option<&str>> {
        Ok(match canonical(key).ok_or_else(|| unknown_key(key))? {
            "host" => self.host.as_deref(),
            "token" => self.token.as_deref(),
            _ => self.admin_token.as_deref(),
        })
    }

    /// Sets `key` (either name); an error for an unknown key or an invalid host.
    pub(crate) fn set(&mut self, key: &str, value: &str) -> Result<()> {
        let key = canonical(key).ok_or_else(|| unknown_key(key))?;
        if key == "host" {
            normalize_hosts(value)?;
        }
        self.set_unchecked(key, value);
        Ok(())
    }

    fn set_unchecked(&mut self, key: &str, value: &str) {
        let slot = match key {
            "host" => &mut self.host,
            "token" => &mut self.token,
            _ => &mut self.admin_token,
        };
        *slot = Some(value.to_string());
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

/// A host as a URL: an `http://` URL as given, or `host:port` (FunLess's `-H` takes the host
/// without a protocol) as `http://host:port`. This build of `fl` has no TLS: it talks to local
/// or LAN hosts, so `https://` is refused.
/// Several Cores' API URLs, comma-separated, each as [`normalize_host`] takes it: fl tries
/// them in order and goes to the next on a connection error.
pub(crate) fn normalize_hosts(hosts: &str) -> Result<Vec<String>> {
    hosts.split(',').map(normalize_host).collect()
}

pub(crate) fn normalize_host(host: &str) -> Result<String> {
    let host = host.trim();
    if host.starts_with("https://") {
        bail!("host {host:?}: https is not supported by fl, use http://");
    }
    if let Some(rest) = host.strip_prefix("http://") {
        if rest.is_empty() {
            bail!("host {host:?} names no host, e.g. http://127.0.0.1:4000");
        }
        return Ok(host.to_string());
    }
    if host.is_empty() || host.contains("://") || host.contains(char::is_whitespace) {
        bail!("host {host:?} must be an http:// URL or host:port, e.g. http://127.0.0.1:4000");
    }
    Ok(format!("http://{host}"))
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
        // A new file is FunLess's format, which FunLess's own `fl` reads too.
        let text = fs::read_to_string(&path).expect("reads");
        assert_eq!(
            text,
            "api_host=http://10.0.0.2:4000\napi_token=tok\nadmin_token=adm\n"
        );
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
    fn several_hosts_are_comma_separated() {
        assert_eq!(
            normalize_hosts("127.0.0.1:4000,http://10.0.0.2:4000").expect("two hosts"),
            ["http://127.0.0.1:4000", "http://10.0.0.2:4000"]
        );
        assert_eq!(
            normalize_hosts(" a:1 , b:2 ").expect("spaces around"),
            ["http://a:1", "http://b:2"]
        );
        for bad in ["a:1,", ",a:1", "a:1,https://b:2", "a:1,,b:2"] {
            assert!(normalize_hosts(bad).is_err(), "{bad:?} was accepted");
        }
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
        assert!(config.set("host", "https://x").is_err());
        assert!(config.set("host", "http://").is_err());
        assert!(config.set("host", "ftp://x").is_err());
        assert_eq!(config, Config::default());
        assert_eq!(
            normalize_host("127.0.0.1:4000").expect("host:port"),
            "http://127.0.0.1:4000"
        );
    }

    #[test]
    fn funless_files_are_read_and_written_back_in_their_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config");
        fs::write(
            &path,
            "api_host=http://localhost:4000\napi_token=abc=\nsecret_key_base=s3\n",
        )
        .expect("writes");
        let mut config = Config::load(&path).expect("loads");
        assert_eq!(config.format, Format::Funless);
        assert_eq!(config.host.as_deref(), Some("http://localhost:4000"));
        // A value may hold '=' (base64 tokens do).
        assert_eq!(config.token.as_deref(), Some("abc="));
        config.set("admin_token", "adm").expect("sets");
        config
            .set("api_token", "new")
            .expect("sets under FunLess's name");
        config.save(&path).expect("saves");
        assert_eq!(
            fs::read_to_string(&path).expect("reads"),
            "api_host=http://localhost:4000\napi_token=new\nadmin_token=adm\nsecret_key_base=s3\n"
        );

        // A TOML file stays TOML, FunLess's key names accepted.
        fs::write(&path, "api_host = \"http://h:1\"\ntoken = \"t\"\n").expect("writes");
        let mut config = Config::load(&path).expect("loads");
        assert_eq!(config.format, Format::Toml);
        assert_eq!(config.host.as_deref(), Some("http://h:1"));
        config.set("token", "u").expect("sets");
        config.save(&path).expect("saves");
        let text = fs::read_to_string(&path).expect("reads");
        assert!(text.contains("token = \"u\""), "{text}");
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
