//! The version routes' backend: [`VersionsBackend`] for the [`Platform`]. A function's
//! versions are rows of the store (`store/versions.rs`); a rollback stores a new version with
//! an old one's code and metadata, sends that code to the workers (those that still hold it
//! answer at once) and restarts the function's connectors and sinks as an update does.
//! A change of a function's configuration is a version too (same code); a module's is not.

use bytes::Bytes;
use funless_api::types::{Abi, ConfigChange, ConfigInfo, FunctionCreated, VersionInfo};
use funless_api::{ApiError, ApiResult, Subject, VersionsBackend};

use super::{Platform, api, function_id, not_found_module, rfc3339};
use crate::config;
use crate::dispatch;
use crate::quotas::Footprint;
use crate::store::{OwnedFunction, StoreError, VersionRow, shown_module};

/// How often a configuration change is computed again when another change landed between
/// its read and its write.
const CONFIG_ATTEMPTS: usize = 5;

fn version_info(row: VersionRow, current: i64) -> VersionInfo {
    VersionInfo {
        version: row.version.max(0) as u64,
        current: row.version == current,
        abi: Abi::parse(&row.abi).unwrap_or(Abi::Funless),
        size: row.size.max(0) as u64,
        created_at: rfc3339(row.created_at),
        created_by: row.created_by,
        rollback_of: row.rollback_of.map(|v| v.max(0) as u64),
        hash: row.hash,
    }
}

fn not_kept(module: &str, function: &str, version: u64) -> ApiError {
    ApiError::NotFound(format!(
        "function '{}/{function}' has no version {version}",
        shown_module(module)
    ))
}

/// A version number as stored; one too large for the store is one that does not exist.
fn stored_number(module: &str, function: &str, version: u64) -> ApiResult<i64> {
    i64::try_from(version).map_err(|_| not_kept(module, function, version))
}

impl Platform {
    /// Version `version` of the stored function `module/function`, or the API's 404 for it.
    pub(super) async fn kept_version(
        &self,
        module: &str,
        function: &str,
        version: u64,
    ) -> ApiResult<VersionRow> {
        let number = stored_number(module, function, version)?;
        self.inner
            .store
            .get_version(module, function, number)
            .await
            .map_err(api)?
            .ok_or_else(|| not_kept(module, function, version))
    }
}

/// How a kept version becomes the current one again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Restore {
    /// A rollback to it.
    Rollback,
    /// Promoting the canary that runs it (which ends the canary).
    Promote,
}

impl Platform {
    /// Makes a new current version of `module/function` (stored module name) with the code,
    /// metadata and configuration of its kept version `kept`, and answers as an update does.
    pub(super) async fn restore_version(
        &self,
        who: &Subject,
        module: &str,
        function: &str,
        kept: VersionRow,
        how: Restore,
    ) -> ApiResult<FunctionCreated> {
        let store = &self.inner.store;
        let current = self.function_row(module, function).await?;
        // The restored version counts against the quotas as an upload of it would.
        let footprint = Footprint::of_stored(&OwnedFunction {
            module: module.to_string(),
            name: function.to_string(),
            size: kept.size,
            events: kept.events.clone(),
            sinks: kept.sinks.clone(),
        });
        let turn = self.inner.quotas.turn(who).await;
        self.function_quota(who, module, function, Some(&current), footprint)
            .await?;
        let by = Some(who.name.as_str());
        let keep = self.keep_versions();
        let changed = match how {
            Restore::Rollback => {
                store
                    .rollback_function(module, function, kept.version, by, keep)
                    .await
            }
            Restore::Promote => store.promote_canary(module, function, by, keep).await,
        }
        .map_err(api)?;
        drop(turn);
        self.inner.catalog.function_changed(module, function);
        let row = changed.row;
        if how == Restore::Promote {
            self.inner.tallies.forget(module, function);
        }
        tracing::info!(function = %format!("{module}/{function}"), version = row.version, restored = kept.version, how = ?how, hash = %row.hash, "function version restored");
        if !changed.dropped_hashes.is_empty() {
            dispatch::evict(&self.inner.workers, changed.dropped_hashes);
        }
        // Workers that still hold the code answer at once; the others compile it now, so the
        // first call after the rollback is warm either way.
        let code = store
            .function_code(module, function, &row.hash)
            .await
            .map_err(api)?
            .ok_or_else(|| {
                ApiError::Conflict(format!(
                    "function '{}/{function}' changed during the rollback",
                    shown_module(module)
                ))
            })?;
        let workers = self
            .distribute(function_id(&row), Bytes::from(code), true)
            .await;
        let events = self.start_connectors(&row).await;
        let sinks = self.sinks_metadata(&row);
        Ok(FunctionCreated {
            abi: Abi::parse(&row.abi).unwrap_or(Abi::Funless),
            version: row.version.max(0) as u64,
            canary: None,
            name: row.name,
            hash: row.hash,
            workers,
            events,
            sinks,
        })
    }
}

impl VersionsBackend for Platform {
    async fn list_versions(
        &self,
        who: &Subject,
        module: &str,
        function: &str,
    ) -> ApiResult<Vec<VersionInfo>> {
        let stored = self.module_for(who, module).await?;
        let rows = self
            .inner
            .store
            .list_versions(&stored, function)
            .await
            .map_err(api)?;
        // Newest first; the current one is usually the newest, but a canary staged by an
        // update is newer.
        let current = self.function_row(&stored, function).await?.version;
        Ok(rows
            .into_iter()
            .map(|row| version_info(row, current))
            .collect())
    }

    async fn get_version(
        &self,
        who: &Subject,
        module: &str,
        function: &str,
        version: u64,
    ) -> ApiResult<VersionInfo> {
        let stored = self.module_for(who, module).await?;
        let current = self.function_row(&stored, function).await?;
        let row = self.kept_version(&stored, function, version).await?;
        Ok(version_info(row, current.version))
    }

    async fn rollback_function(
        &self,
        who: &Subject,
        module: &str,
        function: &str,
        version: u64,
    ) -> ApiResult<FunctionCreated> {
        let module = &self.module_for(who, module).await?;
        let kept = self.kept_version(module, function, version).await?;
        self.restore_version(who, module, function, kept, Restore::Rollback)
            .await
    }

    async fn delete_version(
        &self,
        who: &Subject,
        module: &str,
        function: &str,
        version: u64,
    ) -> ApiResult<()> {
        let module = &self.module_for(who, module).await?;
        let number = stored_number(module, function, version)?;
        let gone = self
            .inner
            .store
            .delete_version(module, function, number)
            .await
            .map_err(api)?;
        if let Some(hash) = gone {
            dispatch::evict(&self.inner.workers, vec![hash]);
        }
        Ok(())
    }

    async fn get_config(
        &self,
        who: &Subject,
        module: &str,
        function: Option<&str>,
    ) -> ApiResult<ConfigInfo> {
        let stored = self.module_for(who, module).await?;
        let module_row = self
            .inner
            .store
            .get_module(&stored)
            .await
            .map_err(api)?
            .ok_or_else(|| not_found_module(module))?;
        let (inherited, _) = config::split(&config::parse(&module_row.config));
        let Some(name) = function else {
            let (effective, secrets) = config::split(&config::parse(&module_row.config));
            return Ok(ConfigInfo {
                effective,
                secrets,
                module: inherited,
                function: None,
                version: None,
            });
        };
        let row = self.function_row(&stored, name).await?;
        let (own, _) = config::split(&config::parse(&row.config));
        let (effective, secrets) = config::split(&config::merged(&module_row.config, &row.config));
        Ok(ConfigInfo {
            module: inherited,
            function: Some(own),
            effective,
            secrets,
            version: Some(row.version.max(0) as u64),
        })
    }

    async fn change_config(
        &self,
        who: &Subject,
        module: &str,
        function: Option<&str>,
        change: ConfigChange,
    ) -> ApiResult<ConfigInfo> {
        let stored = self.module_for(who, module).await?;
        let store = &self.inner.store;
        // A setting may only name a secret its writer holds.
        for name in change.secrets.values() {
            if store.get_secret(who.id, name).await.map_err(api)?.is_none() {
                return Err(ApiError::BadRequest(format!(
                    "no secret '{name}' (create it with PUT /v1/secrets/{name})"
                )));
            }
        }
        let change_of = || config::Change {
            set: &change.set,
            secrets: &change.secrets,
            owner: who.id,
            unset: &change.unset,
        };
        for _ in 0..CONFIG_ATTEMPTS {
            // Read, apply, and write only if nothing changed in between (else read again).
            let written = match function {
                None => {
                    let row = store
                        .get_module(&stored)
                        .await
                        .map_err(api)?
                        .ok_or_else(|| not_found_module(module))?;
                    let next = config::apply(&config::parse(&row.config), change_of())
                        .map_err(ApiError::BadRequest)?;
                    let written = store
                        .configure_module(&stored, &row.config, &config::to_text(&next))
                        .await;
                    if written.is_ok() {
                        // Its functions' cached environments go with it.
                        self.inner.catalog.module_changed(&stored);
                        tracing::info!(module = %shown_module(&stored), keys = next.len(), "module configured");
                    }
                    written
                }
                Some(name) => {
                    let row = self.function_row(&stored, name).await?;
                    let next = config::apply(&config::parse(&row.config), change_of())
                        .map_err(ApiError::BadRequest)?;
                    let written = store
                        .configure_function(
                            &stored,
                            name,
                            row.version,
                            &config::to_text(&next),
                            Some(&who.name),
                            self.keep_versions(),
                        )
                        .await;
                    written.map(|changed| {
                        self.inner.catalog.function_changed(&stored, name);
                        tracing::info!(function = %format!("{stored}/{name}"), version = changed.row.version, keys = next.len(), "function configured");
                        if !changed.dropped_hashes.is_empty() {
                            dispatch::evict(&self.inner.workers, changed.dropped_hashes);
                        }
                    })
                }
            };
            match written {
                Ok(()) => return self.get_config(who, module, function).await,
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(api(e)),
            }
        }
        Err(ApiError::Conflict(
            "the configuration kept changing while this change was applied; try again".into(),
        ))
    }
}
