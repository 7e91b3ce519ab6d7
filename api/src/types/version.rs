//! Bodies of the version routes (`/v1/fn/{module}/{function}/versions`, `.../rollback`).

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
