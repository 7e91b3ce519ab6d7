//! A function's versions (migration 0008): every create, update and rollback stores one,
//! immutable; `functions` holds a copy of the current one (the newest, unless an update staged
//! as a canary is newer: migration 0011).

use super::*;

/// One stored version of a function.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct VersionRow {
    /// Its number: 1 at creation, one more for every update and rollback, never reused.
    pub version: i64,
    /// SHA-256 of its code, lowercase hex.
    pub hash: String,
    /// The ABI its code implements.
    pub abi: String,
    /// Size of its code in bytes.
    pub size: i64,
    /// Memory it declares it needs, bytes.
    pub capacity_bytes: i64,
    /// Whether it may run again elsewhere when its worker is lost mid-call.
    pub retryable: bool,
    /// Its time limit, milliseconds.
    pub timeout_ms: i64,
    /// Its egress allow-list, JSON array text.
    pub allow_hosts: String,
    /// Placement tag, if any.
    pub tag: Option<String>,
    /// Events that trigger it, JSON text.
    pub events: Option<String>,
    /// Where its results go, JSON text.
    pub sinks: Option<String>,
    /// The subject that made it, when known (versions from before migration 0008: not).
    pub created_by: Option<String>,
    /// The version whose code and metadata it restored, when it is a rollback.
    pub rollback_of: Option<i64>,
    /// When it was made, unix milliseconds.
    pub created_at: i64,
    /// Its configuration: a JSON object of strings.
    pub config: String,
}

/// The columns of a [`VersionRow`].
macro_rules! version_columns {
    () => {
        "version, hash, abi, size, capacity_bytes, retryable, timeout_ms, allow_hosts, tag, \
         events, sinks, created_by, rollback_of, created_at, config"
    };
}

/// Restricts `function_versions` to the function `$2` of the module named `$1`.
macro_rules! of_function {
    () => {
        concat!(
            "function_id = (SELECT id FROM functions WHERE ",
            in_module!(),
            " AND name = $2)"
        )
    };
}

impl VersionRow {
    /// The function `function` as it would be with this version current.
    pub fn applied_to(&self, function: &FunctionRow) -> FunctionRow {
        FunctionRow {
            id: function.id,
            module: function.module.clone(),
            name: function.name.clone(),
            hash: self.hash.clone(),
            abi: self.abi.clone(),
            size: self.size,
            capacity_bytes: self.capacity_bytes,
            retryable: self.retryable,
            timeout_ms: self.timeout_ms,
            allow_hosts: self.allow_hosts.clone(),
            tag: self.tag.clone(),
            events: self.events.clone(),
            sinks: self.sinks.clone(),
            created_at: function.created_at,
            updated_at: function.updated_at,
            version: self.version,
            config: self.config.clone(),
            // A version run on its own has no canary of its own.
            canary_version: None,
            canary_percent: None,
            canary_since: None,
        }
    }
}

impl Store {
    /// The kept versions of `module/name`, newest first. `NotFound`.
    pub async fn list_versions(&self, module: &str, name: &str) -> Result<Vec<VersionRow>> {
        const SQL: &str = concat!(
            "SELECT ",
            version_columns!(),
            " FROM function_versions WHERE ",
            of_function!(),
            " ORDER BY version DESC"
        );
        let rows: Vec<VersionRow> = on_pool!(self, p => sqlx::query_as(SQL)
            .bind(module)
            .bind(name)
            .fetch_all(p)
            .await?);
        // Every function has at least its current version.
        if rows.is_empty() {
            return Err(function_not_found(module, name));
        }
        Ok(rows)
    }

    /// Version `version` of `module/name`, if the function and that version exist.
    pub async fn get_version(
        &self,
        module: &str,
        name: &str,
        version: i64,
    ) -> Result<Option<VersionRow>> {
        const SQL: &str = concat!(
            "SELECT ",
            version_columns!(),
            " FROM function_versions WHERE ",
            of_function!(),
            " AND version = $3"
        );
        Ok(on_pool!(self, p => sqlx::query_as(SQL)
            .bind(module)
            .bind(name)
            .bind(version)
            .fetch_optional(p)
            .await?))
    }

    /// Makes a new current version of `module/name` with the code, metadata and
    /// configuration of its kept version `version`, made by `by`; keeps the `keep` newest
    /// versions. `NotFound` for the function or the version.
    pub async fn rollback_function(
        &self,
        module: &str,
        name: &str,
        version: i64,
        by: Option<&str>,
        keep: u32,
    ) -> Result<NewVersion> {
        self.derive_version(module, name, Derive::Rollback(version), by, keep)
            .await
    }

    /// Makes a new current version of `module/name` with its current code and metadata and
    /// the configuration `config` (a JSON object of strings), made by `by`, if its current
    /// version is still `based_on` (`Conflict` otherwise: read it again and retry); keeps the
    /// `keep` newest versions. `NotFound`.
    pub async fn configure_function(
        &self,
        module: &str,
        name: &str,
        based_on: i64,
        config: &str,
        by: Option<&str>,
        keep: u32,
    ) -> Result<NewVersion> {
        self.derive_version(
            module,
            name,
            Derive::Configure { based_on, config },
            by,
            keep,
        )
        .await
    }

    /// Starts or changes the canary of `module/name`: from now on `percent` (1 to 99) of its
    /// invocations run its kept version `version`. Changing the share of a running canary of
    /// the same version keeps its start time. Answers the function's row. `NotFound` for the
    /// function or the version, `Conflict` when `version` is the current one.
    pub async fn set_canary(
        &self,
        module: &str,
        name: &str,
        version: i64,
        percent: u8,
    ) -> Result<FunctionRow> {
        const KEPT: &str =
            "SELECT COUNT(*) FROM function_versions WHERE function_id = $1 AND version = $2";
        const SET: &str = "UPDATE functions SET canary_percent = $3, \
            canary_since = CASE WHEN canary_version = $2 THEN canary_since ELSE $4 END, \
            canary_version = $2 WHERE id = $1";
        const ROW: &str = concat!(
            "SELECT ",
            function_columns!(),
            " FROM functions WHERE id = $2"
        );
        let done: Result<FunctionRow> = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let Some((id, current)) = lock_function!(tx, module, name) else {
                return Err(function_not_found(module, name));
            };
            if version == current {
                return Err(StoreError::Conflict(format!(
                    "version {version} is the current version of '{}/{name}': a canary runs another kept version",
                    shown_module(module)
                )));
            }
            let kept: i64 = sqlx::query_scalar(KEPT)
                .bind(id)
                .bind(version)
                .fetch_one(&mut *tx)
                .await?;
            if kept == 0 {
                return Err(version_not_found(module, name, version));
            }
            sqlx::query(SET)
                .bind(id)
                .bind(version)
                .bind(i64::from(percent))
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            let row: FunctionRow = sqlx::query_as(ROW)
                .bind(module)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(row)
        });
        done
    }

    /// Stores `f` (new code and metadata of the existing function `f.name`) as a new version
    /// that is not the current one but its canary: from now on `percent` of its invocations
    /// run it (a running canary is replaced). Keeps the `keep` newest versions up to the
    /// current one. Answers the new version as a row, with the canary. `NotFound`.
    pub async fn stage_canary(&self, f: NewFunction, percent: u8, keep: u32) -> Result<NewVersion> {
        const STAGE: &str = concat!(
            "UPDATE functions SET last_version = last_version + 1, \
             canary_version = last_version + 1, canary_percent = $3, canary_since = $4 WHERE ",
            in_module!(),
            " AND name = $2 RETURNING id, created_at, updated_at, version, last_version"
        );
        let size = code_size(&f.code)?;
        let now = now_ms();
        let done: Result<NewVersion> = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            // Takes the function's row, as an update does.
            let staged: Option<(i64, i64, i64, i64, i64)> = sqlx::query_as(STAGE)
                .bind(&f.module)
                .bind(&f.name)
                .bind(i64::from(percent))
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((id, created_at, updated_at, current, version)) = staged else {
                return Err(function_not_found(&f.module, &f.name));
            };
            insert_code_rows!(tx, id, &f.hash, &f.code);
            let row = FunctionRow {
                canary_version: Some(version),
                canary_percent: Some(i64::from(percent)),
                canary_since: Some(now),
                ..f.row(id, size, created_at, updated_at, version)
            };
            insert_version!(tx, row, &f.created_by, None::<i64>, now);
            let dropped_hashes = prune_versions!(tx, id, current, keep);
            tx.commit().await?;
            Ok(NewVersion { row, dropped_hashes })
        });
        done
    }

    /// Ends the canary of `module/name` (every invocation runs the current version again);
    /// answers the version the canary ran. `NotFound` for the function, or when no canary
    /// runs.
    pub async fn end_canary(&self, module: &str, name: &str) -> Result<i64> {
        let done: Result<i64> = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let Some((id, _)) = lock_function!(tx, module, name) else {
                return Err(function_not_found(module, name));
            };
            let canary: Option<i64> = sqlx::query_scalar(CANARY_OF)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            let Some(canary) = canary else {
                return Err(StoreError::NotFound(format!(
                    "function '{}/{name}' has no canary",
                    shown_module(module)
                )));
            };
            sqlx::query(END_CANARY).bind(id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(canary)
        });
        done
    }

    /// Makes the canary's version of `module/name` the current one (that version itself, no
    /// new one) and ends the canary, in one transaction; prunes as a new version would.
    /// `NotFound` for the function, `Conflict` when no canary runs.
    pub async fn promote_canary(
        &self,
        module: &str,
        name: &str,
        by: Option<&str>,
        keep: u32,
    ) -> Result<NewVersion> {
        self.derive_version(module, name, Derive::Promote, by, keep)
            .await
    }

    /// A new current version copied from a kept one, or a kept one made current (`derive`).
    async fn derive_version(
        &self,
        module: &str,
        name: &str,
        derive: Derive<'_>,
        by: Option<&str>,
        keep: u32,
    ) -> Result<NewVersion> {
        let (mut from, config) = match derive {
            Derive::Rollback(version) => (Some(version), None),
            Derive::Configure { config, .. } => (None, Some(config)),
            Derive::Promote => (None, None),
        };
        const VERSION: &str = concat!(
            "SELECT ",
            version_columns!(),
            " FROM function_versions WHERE function_id = $1 AND version = $2"
        );
        const APPLY: &str = "UPDATE functions SET hash = $2, abi = $3, size = $4, \
            capacity_bytes = $5, retryable = $6, timeout_ms = $7, allow_hosts = $8, tag = $9, \
            events = $10, sinks = $11, \
            updated_at = CASE WHEN $12 > updated_at THEN $12 ELSE updated_at + 1 END, \
            config = $13, \
            version = CASE WHEN $14 > 0 THEN $14 ELSE last_version + 1 END, \
            last_version = CASE WHEN $14 > 0 THEN last_version ELSE last_version + 1 END \
            WHERE id = $1 RETURNING version";
        const ROW: &str = concat!(
            "SELECT ",
            function_columns!(),
            " FROM functions WHERE id = $2"
        );
        let now = now_ms();
        let done: Result<NewVersion> = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            // The function's row is held from here: its versions cannot change underneath.
            let Some((id, current)) = lock_function!(tx, module, name) else {
                return Err(function_not_found(module, name));
            };
            if let Derive::Configure { based_on, .. } = derive
                && based_on != current
            {
                return Err(StoreError::Conflict(format!(
                    "function '{}/{name}' changed meanwhile (version {current})",
                    shown_module(module)
                )));
            }
            if let Derive::Promote = derive {
                let canary: Option<i64> = sqlx::query_scalar(CANARY_OF)
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                let Some(canary) = canary else {
                    return Err(StoreError::Conflict(format!(
                        "function '{}/{name}' has no canary to promote",
                        shown_module(module)
                    )));
                };
                from = Some(canary);
            }
            let source = from.unwrap_or(current);
            let old: Option<VersionRow> = sqlx::query_as(VERSION)
                .bind(id)
                .bind(source)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(old) = old else {
                return Err(version_not_found(module, name, source));
            };
            let new_version: i64 = sqlx::query_scalar(APPLY)
                .bind(id)
                .bind(&old.hash)
                .bind(&old.abi)
                .bind(old.size)
                .bind(old.capacity_bytes)
                .bind(old.retryable)
                .bind(old.timeout_ms)
                .bind(&old.allow_hosts)
                .bind(&old.tag)
                .bind(&old.events)
                .bind(&old.sinks)
                .bind(now)
                .bind(config.unwrap_or(&old.config))
                // A promoted canary's version becomes the current one as it is; every other
                // change is a new version.
                .bind(if let Derive::Promote = derive { source } else { 0 })
                .fetch_one(&mut *tx)
                .await?;
            if let Derive::Promote = derive {
                sqlx::query(END_CANARY).bind(id).execute(&mut *tx).await?;
            }
            let row: FunctionRow = sqlx::query_as(ROW)
                .bind(module)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            if !matches!(derive, Derive::Promote) {
                insert_version!(tx, row, by, from, now);
            }
            let dropped_hashes = prune_versions!(tx, id, new_version, keep);
            tx.commit().await?;
            Ok(NewVersion { row, dropped_hashes })
        });
        done
    }

    /// Replaces module `name`'s configuration `old` with `new` (JSON objects of strings):
    /// `Conflict` when it is no longer `old` (read it again and retry). `NotFound`.
    pub async fn configure_module(&self, name: &str, old: &str, new: &str) -> Result<()> {
        const SQL: &str = "UPDATE modules SET config = $3 WHERE name = $1 AND config = $2";
        let changed = on_pool!(self, p => sqlx::query(SQL)
            .bind(name)
            .bind(old)
            .bind(new)
            .execute(p)
            .await?
            .rows_affected());
        if changed == 0 {
            return match self.get_module(name).await? {
                Some(_) => Err(StoreError::Conflict(format!(
                    "module '{name}' was reconfigured meanwhile"
                ))),
                None => Err(module_not_found(name)),
            };
        }
        Ok(())
    }

    /// Deletes the kept version `version` of `module/name` and, when no other version holds
    /// its code, the code; answers the code's hash in that case, for the workers to evict.
    /// `NotFound`; `Conflict` for the current version (roll back or update first).
    pub async fn delete_version(
        &self,
        module: &str,
        name: &str,
        version: i64,
    ) -> Result<Option<String>> {
        const DELETE: &str =
            "DELETE FROM function_versions WHERE function_id = $1 AND version = $2 RETURNING hash";
        let done: Result<Option<String>> = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let Some((id, current)) = lock_function!(tx, module, name) else {
                return Err(function_not_found(module, name));
            };
            if version == current {
                return Err(StoreError::Conflict(format!(
                    "version {version} is the current version of '{}/{name}'; update or roll back first",
                    shown_module(module)
                )));
            }
            let canary: Option<i64> = sqlx::query_scalar(CANARY_OF)
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            if canary == Some(version) {
                return Err(StoreError::Conflict(format!(
                    "version {version} is the canary of '{}/{name}'; promote or end the canary first",
                    shown_module(module)
                )));
            }
            let hash: Option<String> = sqlx::query_scalar(DELETE)
                .bind(id)
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(hash) = hash else {
                return Err(version_not_found(module, name, version));
            };
            let code = sqlx::query(DELETE_UNHELD_CODE)
                .bind(id)
                .bind(&hash)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok((code.rows_affected() > 0).then_some(hash))
        });
        done
    }
}

/// The canary version of function `$1` (NULL when no canary runs).
const CANARY_OF: &str = "SELECT canary_version FROM functions WHERE id = $1";
/// Ends the canary of function `$1`.
const END_CANARY: &str = "UPDATE functions SET canary_version = NULL, canary_percent = NULL, \
    canary_since = NULL WHERE id = $1";

/// What a derived version copies and changes.
#[derive(Debug, Clone, Copy)]
enum Derive<'a> {
    /// Everything of this kept version.
    Rollback(i64),
    /// The canary's version itself, ending the canary.
    Promote,
    /// The current version, which must be `based_on`, with this configuration.
    Configure { based_on: i64, config: &'a str },
}

fn version_not_found(module: &str, name: &str, version: i64) -> StoreError {
    StoreError::NotFound(format!(
        "function '{}/{name}' has no version {version}",
        shown_module(module)
    ))
}
