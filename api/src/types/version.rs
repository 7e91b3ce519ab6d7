//! Bodies of the version routes (`/v1/fn/{module}/{function}/versions`, `.../rollback`) and
//! of the configuration routes (`/v1/config/{module}[/{function}]`).

use serde::{Deserialize, Serialize};

use super::Abi;

/// One kept version of a function. Every create, update and rollback makes one; they are
/// immutable, and the newest is the current one.
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

/// `PUT /v1/config/{module}[/{function}]`: settings to add or replace, and keys to remove.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ConfigChange {
    /// Settings to add or replace: names of environment variables (a letter or `_`, then
    /// letters, digits or `_`; at most 128 characters) and their values (at most 4096 bytes).
    #[serde(default)]
    pub set: std::collections::BTreeMap<String, String>,
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
    /// the function's over them.
    pub effective: std::collections::BTreeMap<String, String>,
    /// The function's current version, which holds its settings (absent for a module).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}
