//! Bodies of the version routes (`/v1/fn/{module}/{function}/versions`, `.../rollback`) and
//! of the configuration and secrets routes (`/v1/config/{module}[/{function}]`, `/v1/secrets`).

use serde::{Deserialize, Serialize};

use super::Abi;

/// One kept version of a function. Every create, update and rollback makes one; they are
/// immutable; the current one is the newest, unless a canary staged by an update is newer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct VersionInfo {
    /// Its number: 1 at creation, one more for every update and rollback, never reused.
    pub version: u64,
    /// Whether it is the version invocations run.
    pub current: bool,
    /// SHA-256 of its code, hex.
    pub hash: String,
    /// Its code's ABI.
    pub abi: Abi,
    /// Its code's size in bytes.
    pub size: u64,
    /// When it was made, RFC 3339 UTC.
    pub created_at: String,
    /// The subject that made it (absent for versions stored before versions existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// The version whose code and metadata it restored, when it is a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
}

/// `POST /v1/fn/{module}/{function}/rollback`: the version to restore.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// A kept version's number (`GET .../versions` lists them).
    #[cfg_attr(feature = "server", schema(minimum = 1))]
    pub version: u64,
}

/// A function's canary: `percent` of its invocations run its kept version `version` instead
/// of the current one. The body of `PUT /v1/fn/{module}/{function}/canary`, and the
/// function's `canary` field.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CanarySplit {
    /// A kept version other than the current one (`GET .../versions` lists them).
    #[cfg_attr(feature = "server", schema(minimum = 1))]
    pub version: u64,
    /// The share of invocations it gets, percent: 1 to 99.
    #[cfg_attr(feature = "server", schema(minimum = 1, maximum = 99))]
    pub percent: u8,
}

/// What one version's invocations came to under a canary.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct CanaryTally {
    /// The version.
    pub version: u64,
    /// Its side of the split: `stable` (the current version) or `canary`.
    pub track: String,
    /// Its invocations.
    pub invocations: u64,
    /// Its invocations by outcome: `ok`, `function_error`, `trap`, `timeout`, `no_worker`, ...
    pub outcomes: std::collections::BTreeMap<String, u64>,
}

/// A function's canary and what each version's invocations came to since it started (as
/// this Core counted them: the counts start again when the Core does).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct CanaryInfo {
    /// The canary's version.
    pub version: u64,
    /// The share of invocations it gets, percent.
    pub percent: u8,
    /// The function's current version, which gets the rest.
    pub current: u64,
    /// When the canary started, RFC 3339 UTC.
    pub since: String,
    /// Each version's invocations since then, oldest version first.
    pub versions: Vec<CanaryTally>,
}

/// `PUT /v1/config/{module}[/{function}]`: settings to add or replace, and keys to remove.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfigChange {
    /// Settings to add or replace: names of environment variables (a letter or `_`, then
    /// letters, digits or `_`; at most 128 characters) and their values (at most 4096 bytes).
    #[serde(default)]
    pub set: std::collections::BTreeMap<String, String>,
    /// Settings whose values are the caller's secrets (`PUT /v1/secrets/{name}`): setting
    /// names and secret names. The value is opened only for each invocation.
    #[serde(default)]
    pub secrets: std::collections::BTreeMap<String, String>,
    /// Setting names to remove.
    #[serde(default)]
    pub unset: Vec<String>,
}

/// The configuration of a module, or of a function with its module's.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct ConfigInfo {
    /// The module's settings, inherited by its functions.
    pub module: std::collections::BTreeMap<String, String>,
    /// The function's own settings (absent for a module).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<std::collections::BTreeMap<String, String>>,
    /// What the function's invocations get as their environment: the module's settings with
    /// the function's over them (settings that are secrets are in `secrets`).
    pub effective: std::collections::BTreeMap<String, String>,
    /// The settings of `effective`'s kind whose values are secrets: setting names and secret
    /// names (never their values).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub secrets: std::collections::BTreeMap<String, String>,
    /// The function's current version, which holds its settings (absent for a module).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// `PUT /v1/secrets/{name}`: the secret's value (write-only: never returned).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SecretRequest {
    /// The value, at most 4096 bytes, no NUL character.
    pub value: String,
}

impl std::fmt::Debug for SecretRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretRequest { value: .. }")
    }
}

/// A secret as listed: its name and times, never its value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct SecretInfo {
    /// Its name.
    pub name: String,
    /// When it was created, RFC 3339 UTC.
    pub created_at: String,
    /// When its value was last set (created or rotated), RFC 3339 UTC.
    pub updated_at: String,
}
