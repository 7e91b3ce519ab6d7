//! The persistent function store: modules, functions (code, hash and metadata) and subjects.
//!
//! One schema, two back ends through sqlx: SQLite (a file, the embedded default) and PostgreSQL.
//! The migrations in `migrations/sqlite` and `migrations/postgres` are embedded in the binary and
//! run by [`Store::open`], which also makes sure the default module [`DEFAULT_MODULE`] exists.
//! Every query is written once (SQLite accepts PostgreSQL's `$1` placeholders) and runs on
//! whichever pool the store holds. Timestamps are unix milliseconds. Subject tokens are stored
//! only as hashes, computed by the caller.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use sqlx::migrate::{Migrate, MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

#[cfg(test)]
mod tests;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");

/// The result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The module, function or subject does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The name is already taken.
    #[error("{0}")]
    Conflict(String),
    /// The operation is not allowed (e.g. deleting the default module).
    #[error("{0}")]
    Invalid(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] MigrateError),
    /// The database URL is not one the store supports.
    #[error("{0}")]
    Url(String),
}

/// The module functions go to when none is named; it always exists and cannot be renamed or
/// deleted.
pub const DEFAULT_MODULE: &str = "_";

/// The name a subject knows a stored module by. Subjects' modules are stored in their own
/// namespaces as `name~<owner id>` (its own default module as `_~<id>`), outside the naming
/// rule; the admin's as named.
pub fn shown_module(stored: &str) -> &str {
    match stored.rsplit_once('~') {
        Some((name, id)) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => stored,
    }
}

/// A module.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct ModuleRow {
    /// Database id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// The subject that created it, if any.
    pub owner_id: Option<i64>,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Its configuration, inherited by its functions: a JSON object of strings.
    pub config: String,
}

/// A function as listed: everything but its code.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct FunctionRow {
    /// Database id.
    pub id: i64,
    /// Name of its module.
    pub module: String,
    /// Name, unique within the module.
    pub name: String,
    /// SHA-256 of the code, lowercase hex.
    pub hash: String,
    /// The ABI the code implements.
    pub abi: String,
    /// Size of the code in bytes.
    pub size: i64,
    /// Memory the function declares it needs, bytes.
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
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Time of the last update (or creation), unix milliseconds.
    pub updated_at: i64,
    /// Number of the current version (1 at creation; every update and rollback adds one).
    pub version: i64,
    /// Its configuration (over its module's): a JSON object of strings.
    pub config: String,
    /// The kept version its canary sends a share of invocations to (migration 0011).
    pub canary_version: Option<i64>,
    /// That share, percent (1 to 99), when a canary runs.
    pub canary_percent: Option<i64>,
    /// When the canary started, unix milliseconds.
    pub canary_since: Option<i64>,
}

impl FunctionRow {
    /// Its canary, when one runs: the version and the percentage of invocations it gets.
    pub fn canary(&self) -> Option<(i64, u8)> {
        let percent = u8::try_from(self.canary_percent?).ok()?;
        Some((self.canary_version?, percent))
    }
}

/// A function to create, or the new version of one to update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFunction {
    /// Name of its module, which must exist.
    pub module: String,
    /// Name, unique within the module.
    pub name: String,
    /// The Wasm code (shared with the upload's body).
    pub code: bytes::Bytes,
    /// SHA-256 of the code, lowercase hex.
    pub hash: String,
    /// The ABI the code implements.
    pub abi: String,
    /// Memory the function declares it needs, bytes.
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
    /// The subject that made this version, recorded with it.
    pub created_by: Option<String>,
    /// Its configuration: a JSON object of strings.
    pub config: String,
}

impl NewFunction {
    /// The row this makes, as stored with `id` and these times and version number.
    fn row(
        &self,
        id: i64,
        size: i64,
        created_at: i64,
        updated_at: i64,
        version: i64,
    ) -> FunctionRow {
        FunctionRow {
            id,
            module: self.module.clone(),
            name: self.name.clone(),
            hash: self.hash.clone(),
            abi: self.abi.clone(),
            size,
            capacity_bytes: self.capacity_bytes,
            retryable: self.retryable,
            timeout_ms: self.timeout_ms,
            allow_hosts: self.allow_hosts.clone(),
            tag: self.tag.clone(),
            events: self.events.clone(),
            sinks: self.sinks.clone(),
            created_at,
            updated_at,
            version,
            config: self.config.clone(),
            canary_version: None,
            canary_percent: None,
            canary_since: None,
        }
    }
}

/// A function's new current version, from an update or a rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVersion {
    /// The function as it is now.
    pub row: FunctionRow,
    /// Code no kept version holds any more (older versions beyond the number kept were
    /// deleted): the workers may evict it.
    pub dropped_hashes: Vec<String>,
}

/// What a subject's function holds against its quotas (`Store::owned_functions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct OwnedFunction {
    /// Name of its module.
    pub module: String,
    /// Name.
    pub name: String,
    /// Size of the code in bytes.
    pub size: i64,
    /// Events that trigger it, JSON text.
    pub events: Option<String>,
    /// Where its results go, JSON text.
    pub sinks: Option<String>,
}

/// A subject: an identity that holds an API token.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SubjectRow {
    /// Database id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Whether it may manage subjects.
    pub admin: bool,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// When its token was revoked, if it was.
    pub revoked_at: Option<i64>,
}

/// A FunLess APP scheduling script.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ScriptRow {
    /// Store id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// The YAML source, as uploaded.
    pub source: String,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
}

/// The function store; cheap to clone (it holds a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: Pool,
}

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Evaluates `$body` with `$p` bound to the store's concrete pool, so each query is written once
/// and compiled for both back ends.
macro_rules! on_pool {
    ($store:expr, $p:ident => $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// The columns of a [`FunctionRow`], selected from `functions` with the module name bound to `$1`.
macro_rules! function_columns {
    () => {
        "id, $1 AS module, name, hash, abi, size, capacity_bytes, retryable, timeout_ms, allow_hosts, tag, events, sinks, \
         created_at, updated_at, version, config, canary_version, canary_percent, canary_since"
    };
}

/// Writes a function's code as its `function_code` rows (migrations 0007 and 0008),
/// `CODE_ROW_BYTES` each, inside the caller's transaction `$tx`, unless the function already
/// holds code with this hash (an earlier version's).
macro_rules! insert_code_rows {
    ($tx:expr, $id:expr, $hash:expr, $code:expr) => {
        let held: i64 = sqlx::query_scalar(HAS_CODE)
            .bind($id)
            .bind($hash)
            .fetch_one(&mut *$tx)
            .await?;
        if held == 0 {
            for (seq, chunk) in $code.chunks(CODE_ROW_BYTES).enumerate() {
                sqlx::query(INSERT_CODE_ROW)
                    .bind($id)
                    .bind($hash)
                    .bind(seq as i64)
                    .bind(chunk)
                    .execute(&mut *$tx)
                    .await?;
            }
        }
    };
}

/// Records `$row` (a function's new current version, as [`FunctionRow`]) in
/// `function_versions`, inside the caller's transaction `$tx`.
macro_rules! insert_version {
    ($tx:expr, $row:expr, $created_by:expr, $rollback_of:expr, $now:expr) => {
        sqlx::query(INSERT_VERSION)
            .bind($row.id)
            .bind($row.version)
            .bind(&$row.hash)
            .bind(&$row.abi)
            .bind($row.size)
            .bind($row.capacity_bytes)
            .bind($row.retryable)
            .bind($row.timeout_ms)
            .bind(&$row.allow_hosts)
            .bind(&$row.tag)
            .bind(&$row.events)
            .bind(&$row.sinks)
            .bind($created_by)
            .bind($rollback_of)
            .bind($now)
            .bind(&$row.config)
            .execute(&mut *$tx)
            .await?;
    };
}

/// Deletes the versions of function `$id` older than the `$keep` newest (the newest, `$newest`,
/// is the current one), except its canary's, and the code no kept version holds, inside `$tx`; evaluates to the
/// hashes whose code went, for the workers to evict.
macro_rules! prune_versions {
    ($tx:expr, $id:expr, $newest:expr, $keep:expr) => {{
        let oldest_kept = $newest - i64::from($keep.max(1)) + 1;
        let mut pruned: Vec<String> = sqlx::query_scalar(
            "DELETE FROM function_versions WHERE function_id = $1 AND version < $2 \
             AND version <> COALESCE((SELECT canary_version FROM functions WHERE id = $1), 0) \
             RETURNING hash",
        )
        .bind($id)
        .bind(oldest_kept)
        .fetch_all(&mut *$tx)
        .await?;
        pruned.sort();
        pruned.dedup();
        let mut gone = Vec::with_capacity(pruned.len());
        for hash in pruned {
            let deleted = sqlx::query(DELETE_UNHELD_CODE)
                .bind($id)
                .bind(&hash)
                .execute(&mut *$tx)
                .await?;
            if deleted.rows_affected() > 0 {
                gone.push(hash);
            }
        }
        gone
    }};
}

/// Takes function `$name` of module `$module` for the transaction `$tx` ([`LOCK_FUNCTION`]):
/// evaluates to its id and current version, `None` when it does not exist.
macro_rules! lock_function {
    ($tx:expr, $module:expr, $name:expr) => {{
        let locked: Option<(i64, i64)> = sqlx::query_as(LOCK_FUNCTION)
            .bind($module)
            .bind($name)
            .fetch_optional(&mut *$tx)
            .await?;
        locked
    }};
}

/// Restricts `functions` to the module named by `$1`.
macro_rules! in_module {
    () => {
        "module_id = (SELECT id FROM modules WHERE name = $1)"
    };
}

mod services;
pub use services::{NewService, ServiceRow};
mod versions;
pub use versions::VersionRow;
mod pending;
pub use pending::PendingRow;
mod sink_deliveries;
pub use sink_deliveries::{SinkDeliveryRow, SinkTarget};
mod secrets;
pub use secrets::SecretRow;

/// Runs `migrator` on `conn`. `Migrator::run_direct` (public, though hidden from sqlx's docs) is
/// sqlx's own way around `Migrator::run` making the caller's future non-`Send` ("implementation
/// of `Acquire` is not general enough"), which would keep [`Store::open`] off `tokio::spawn`.
async fn migrate<C: Migrate>(migrator: &Migrator, conn: &mut C) -> Result<(), MigrateError> {
    migrator.run_direct(conn).await
}

/// Now, unix milliseconds, as the store keeps times.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_foreign_key_violation())
}

fn module_not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("module '{name}' not found"))
}

fn function_not_found(module: &str, name: &str) -> StoreError {
    StoreError::NotFound(format!(
        "function '{}/{name}' not found",
        shown_module(module)
    ))
}

/// Bytes of code per `function_code` row (migration 0007): a store request holds about one row
/// of it at a time, never the whole code.
const CODE_ROW_BYTES: usize = 1024 * 1024;
/// A configuration with no entries.
pub const EMPTY_CONFIG: &str = "{}";
/// `functions.code`, which migration 0007 left empty: the code is in `function_code`.
const EMPTY_CODE: &[u8] = b"";
const INSERT_CODE_ROW: &str =
    "INSERT INTO function_code (function_id, hash, seq, chunk) VALUES ($1, $2, $3, $4)";
const INSERT_VERSION: &str = "INSERT INTO function_versions \
    (function_id, version, hash, abi, size, capacity_bytes, retryable, timeout_ms, allow_hosts, \
     tag, events, sinks, created_by, rollback_of, created_at, config) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)";
/// Deletes function `$1`'s code with hash `$2` when no version of it holds that hash.
const DELETE_UNHELD_CODE: &str = "DELETE FROM function_code WHERE function_id = $1 AND hash = $2 \
    AND NOT EXISTS (SELECT 1 FROM function_versions WHERE function_id = $1 AND hash = $2)";
/// Takes the row of function `$2` in module `$1` for the transaction (PostgreSQL's row lock,
/// SQLite's write lock) without changing it; answers its id and current version.
const LOCK_FUNCTION: &str = concat!(
    "UPDATE functions SET version = version WHERE ",
    in_module!(),
    " AND name = $2 RETURNING id, version"
);
/// The distinct code hashes of function `$1`'s versions.
const VERSION_HASHES: &str = "SELECT DISTINCT hash FROM function_versions WHERE function_id = $1";
const HAS_CODE: &str =
    "SELECT COUNT(*) FROM function_code WHERE function_id = $1 AND hash = $2 AND seq = 0";

fn code_size(code: &[u8]) -> Result<i64> {
    i64::try_from(code.len()).map_err(|_| StoreError::Invalid("the code is too large".into()))
}

/// How a SQLite store makes a commit durable (it runs in WAL mode).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SqliteSync {
    /// `PRAGMA synchronous = NORMAL`: a commit is written to the log, which is flushed to the
    /// disk at checkpoints. A process that dies, `kill -9` included, loses nothing; a power cut
    /// may lose the commits since the last checkpoint, never the database's consistency.
    /// A commit costs microseconds instead of a flush (measured in docs/BENCHMARKS.md).
    #[default]
    Normal,
    /// `PRAGMA synchronous = FULL`: every commit is flushed to the disk before it returns
    /// (milliseconds on an SD card or a virtual disk); a power cut loses nothing committed.
    Full,
}

impl Store {
    /// Opens the store at `url`: `sqlite://PATH` (the file is created if missing;
    /// `sqlite::memory:` also works) or `postgres://...` / `postgresql://...`. Runs the
    /// migrations and makes sure the default module `_` exists (idempotent, and safe when two
    /// processes start at once).
    pub async fn open(url: &str) -> Result<Store> {
        Self::open_with(url, SqliteSync::default()).await
    }

    /// As [`Store::open`], a SQLite database committing with `sync`.
    pub async fn open_with(url: &str, sync: SqliteSync) -> Result<Store> {
        let store = if url.starts_with("sqlite:") {
            Self::open_sqlite(url, sync).await?
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .connect_with(PgConnectOptions::from_str(url)?)
                .await?;
            // The PostgreSQL migrator holds an advisory lock while it runs.
            let mut conn = pool.acquire().await?;
            migrate(&POSTGRES_MIGRATIONS, &mut *conn).await?;
            drop(conn);
            Store {
                pool: Pool::Postgres(pool),
            }
        } else {
            let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
            return Err(StoreError::Url(format!(
                "unsupported database URL scheme '{scheme}': use sqlite://PATH or postgres://..."
            )));
        };
        let now = now_ms();
        on_pool!(store, p => {
            sqlx::query(
                "INSERT INTO modules (name, created_at) VALUES ($1, $2) \
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(DEFAULT_MODULE)
            .bind(now)
            .execute(p)
            .await?;
        });
        Ok(store)
    }

    async fn open_sqlite(url: &str, sync: SqliteSync) -> Result<Store> {
        // Two processes opening a fresh database at once can get SQLITE_BUSY without the busy
        // handler being consulted (switching it to WAL, for one): retry for a few seconds.
        let mut attempt = 0;
        loop {
            match Self::try_open_sqlite(url, sync).await {
                Err(StoreError::Database(sqlx::Error::Database(e)))
                    if attempt < 50 && matches!(e.code().as_deref(), Some("5" | "6")) =>
                {
                    attempt += 1;
                    tracing::debug!(attempt, error = %e, "SQLite busy while opening; retrying");
                    tokio::time::sleep(Duration::from_millis(20 + 10 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn try_open_sqlite(url: &str, sync: SqliteSync) -> Result<Store> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = if url.contains(":memory:") || url.contains("mode=memory") {
            // An in-memory database lives as long as its connections: keep exactly one, forever.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await?
        } else {
            SqlitePoolOptions::new()
                .connect_with(options.journal_mode(SqliteJournalMode::Wal).synchronous(
                    match sync {
                        SqliteSync::Normal => SqliteSynchronous::Normal,
                        SqliteSync::Full => SqliteSynchronous::Full,
                    },
                ))
                .await?
        };
        // SQLite has no advisory lock: migrate holding the write lock, so that two processes
        // starting at once migrate one after the other.
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        migrate(&SQLITE_MIGRATIONS, &mut *tx).await?;
        tx.commit().await?;
        Ok(Store {
            pool: Pool::Sqlite(pool),
        })
    }

    /// The back end: `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// Sends `payload` on the notification channel `channel` (PostgreSQL's `NOTIFY`, to the
    /// other Cores sharing the store: `crate::peers`); nothing on SQLite.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        if let Pool::Postgres(pool) = &self.pool {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(channel)
                .bind(payload)
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// A connection listening on the notification channel `channel` (PostgreSQL); `Invalid`
    /// on SQLite, which has none.
    pub async fn listener(&self, channel: &str) -> Result<sqlx::postgres::PgListener> {
        let Pool::Postgres(pool) = &self.pool else {
            return Err(StoreError::Invalid(
                "SQLite has no notifications: it serves one Core".into(),
            ));
        };
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(channel).await?;
        Ok(listener)
    }

    /// A PostgreSQL connection outside the pool, for a session that must last as long as
    /// its holder (an advisory lock: `crate::lease`); `Invalid` on SQLite.
    pub async fn dedicated_connection(&self) -> Result<sqlx::postgres::PgConnection> {
        use sqlx::ConnectOptions;
        let Pool::Postgres(pool) = &self.pool else {
            return Err(StoreError::Invalid(
                "SQLite has no sessions to hold: it serves one Core".into(),
            ));
        };
        Ok(pool.connect_options().connect().await?)
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        on_pool!(self, p => p.close().await)
    }

    /// All modules, ordered by name.
    pub async fn list_modules(&self) -> Result<Vec<ModuleRow>> {
        const SQL: &str =
            "SELECT id, name, owner_id, created_at, config FROM modules ORDER BY name";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).fetch_all(p).await?))
    }

    /// The module called `name`, if it exists.
    pub async fn get_module(&self, name: &str) -> Result<Option<ModuleRow>> {
        const SQL: &str =
            "SELECT id, name, owner_id, created_at, config FROM modules WHERE name = $1";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(name).fetch_optional(p).await?))
    }

    /// Creates a module. `Conflict` if the name is taken; `Invalid` if the owner does not exist.
    pub async fn create_module(&self, name: &str, owner_id: Option<i64>) -> Result<ModuleRow> {
        const SQL: &str =
            "INSERT INTO modules (name, owner_id, created_at) VALUES ($1, $2, $3) RETURNING id";
        let created_at = now_ms();
        let id: i64 = on_pool!(self, p => sqlx::query_scalar(SQL)
            .bind(name)
            .bind(owner_id)
            .bind(created_at)
            .fetch_one(p)
            .await)
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("module '{name}' already exists"))
            } else if is_foreign_key_violation(&e) {
                StoreError::Invalid(format!(
                    "subject {} does not exist",
                    owner_id.unwrap_or_default()
                ))
            } else {
                e.into()
            }
        })?;
        Ok(ModuleRow {
            id,
            name: name.to_string(),
            owner_id,
            created_at,
            config: EMPTY_CONFIG.to_string(),
        })
    }

    /// Renames a module, keeping its functions. `NotFound`; `Conflict` if `new_name` is taken;
    /// `Invalid` for the default module.
    pub async fn rename_module(&self, name: &str, new_name: &str) -> Result<()> {
        const SQL: &str = "UPDATE modules SET name = $2 WHERE name = $1";
        if name == DEFAULT_MODULE {
            return Err(StoreError::Invalid(format!(
                "the default module '{DEFAULT_MODULE}' cannot be renamed"
            )));
        }
        let updated = on_pool!(self, p => sqlx::query(SQL)
            .bind(name)
            .bind(new_name)
            .execute(p)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("module '{new_name}' already exists"))
            } else {
                e.into()
            }
        })?;
        if updated == 0 {
            return Err(module_not_found(name));
        }
        Ok(())
    }

    /// Deletes a module and its functions in one transaction; returns the deleted functions
    /// (ordered by name) so the caller can evict them. `NotFound`; `Invalid` for the default
    /// module.
    pub async fn delete_module(&self, name: &str) -> Result<Vec<FunctionRow>> {
        const DELETE_FUNCTIONS: &str = concat!(
            "DELETE FROM functions WHERE ",
            in_module!(),
            " RETURNING ",
            function_columns!()
        );
        const DELETE_MODULE: &str = "DELETE FROM modules WHERE name = $1";
        if name == DEFAULT_MODULE {
            return Err(StoreError::Invalid(format!(
                "the default module '{DEFAULT_MODULE}' cannot be deleted"
            )));
        }
        // Writing first (rather than reading) takes SQLite's write lock at once.
        let mut deleted: Vec<FunctionRow> = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let deleted = sqlx::query_as(DELETE_FUNCTIONS).bind(name).fetch_all(&mut *tx).await?;
            let gone = sqlx::query(DELETE_MODULE).bind(name).execute(&mut *tx).await?;
            if gone.rows_affected() == 0 {
                return Err(module_not_found(name));
            }
            tx.commit().await?;
            deleted
        });
        deleted.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(deleted)
    }

    /// The functions of a module, ordered by name. `NotFound` if the module does not exist.
    pub async fn list_functions(&self, module: &str) -> Result<Vec<FunctionRow>> {
        const SQL: &str = concat!(
            "SELECT ",
            function_columns!(),
            " FROM functions WHERE ",
            in_module!(),
            " ORDER BY name"
        );
        let rows: Vec<FunctionRow> =
            on_pool!(self, p => sqlx::query_as(SQL).bind(module).fetch_all(p).await?);
        if rows.is_empty() && self.get_module(module).await?.is_none() {
            return Err(module_not_found(module));
        }
        Ok(rows)
    }

    /// The function `module/name`, if it exists.
    pub async fn get_function(&self, module: &str, name: &str) -> Result<Option<FunctionRow>> {
        const SQL: &str = concat!(
            "SELECT ",
            function_columns!(),
            " FROM functions WHERE ",
            in_module!(),
            " AND name = $2"
        );
        Ok(on_pool!(self, p => sqlx::query_as(SQL)
            .bind(module)
            .bind(name)
            .fetch_optional(p)
            .await?))
    }

    /// The code with `hash` of `module/name` (its current version's or a kept earlier
    /// version's), if the function and that code exist.
    pub async fn function_code(
        &self,
        module: &str,
        name: &str,
        hash: &str,
    ) -> Result<Option<Vec<u8>>> {
        const SQL: &str = "SELECT v.size, c.chunk FROM function_code c \
            JOIN function_versions v ON v.function_id = c.function_id AND v.hash = c.hash \
            AND v.version = (SELECT MAX(version) FROM function_versions \
                             WHERE function_id = c.function_id AND hash = c.hash) \
            WHERE c.function_id = (SELECT id FROM functions WHERE \
                module_id = (SELECT id FROM modules WHERE name = $1) AND name = $2) \
            AND c.hash = $3 ORDER BY c.seq";
        let mut found: Option<Vec<u8>> = None;
        on_pool!(self, p => {
            let mut rows = sqlx::query_as::<_, (i64, Vec<u8>)>(SQL)
                .bind(module)
                .bind(name)
                .bind(hash)
                .fetch(p);
            while let Some((size, chunk)) = rows.try_next().await? {
                found
                    .get_or_insert_with(|| Vec::with_capacity(usize::try_from(size).unwrap_or(0)))
                    .extend_from_slice(&chunk);
            }
        });
        Ok(found)
    }

    /// Creates a function. `NotFound` if its module does not exist; `Conflict` if it exists.
    pub async fn create_function(&self, f: NewFunction) -> Result<FunctionRow> {
        const SQL: &str = "INSERT INTO functions \
            (module_id, name, code, hash, abi, size, capacity_bytes, tag, events, sinks, \
             created_at, updated_at, retryable, timeout_ms, allow_hosts, config) \
            SELECT id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14, $15 FROM modules WHERE name = $1 \
            RETURNING id";
        let size = code_size(&f.code)?;
        let now = now_ms();
        let id: Option<i64> = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            let id: Option<i64> = sqlx::query_scalar(SQL)
            .bind(&f.module)
            .bind(&f.name)
            .bind(EMPTY_CODE)
            .bind(&f.hash)
            .bind(&f.abi)
            .bind(size)
            .bind(f.capacity_bytes)
            .bind(&f.tag)
            .bind(&f.events)
            .bind(&f.sinks)
            .bind(now)
            .bind(f.retryable)
            .bind(f.timeout_ms)
            .bind(&f.allow_hosts)
            .bind(&f.config)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!(
                        "function '{}/{}' already exists",
                        shown_module(&f.module),
                        f.name
                    ))
                } else if is_foreign_key_violation(&e) {
                    // The module was deleted while the function was being inserted.
                    module_not_found(&f.module)
                } else {
                    e.into()
                }
            })?;
            if let Some(id) = id {
                insert_code_rows!(tx, id, &f.hash, &f.code);
                let row = f.row(id, size, now, now, 1);
                insert_version!(tx, row, &f.created_by, None::<i64>, now);
            }
            tx.commit().await?;
            id
        });
        let id = id.ok_or_else(|| module_not_found(&f.module))?;
        Ok(f.row(id, size, now, now, 1))
    }

    /// Makes `f` the new current version of the existing function `name` (renaming it to
    /// `f.name` when that differs): keeps its creation time, moves `updated_at` forward, and
    /// keeps the `keep` newest versions (at least 1). `NotFound`; `Conflict` if the new name is
    /// taken.
    pub async fn update_function(
        &self,
        name: &str,
        f: NewFunction,
        keep: u32,
    ) -> Result<NewVersion> {
        const SQL: &str = concat!(
            "UPDATE functions SET name = $2, code = $3, hash = $4, abi = $5, size = $6, capacity_bytes = $7, \
             tag = $8, events = $9, sinks = $10, retryable = $12, timeout_ms = $13, allow_hosts = $14, \
             updated_at = CASE WHEN $11 > updated_at THEN $11 ELSE updated_at + 1 END, \
             version = last_version + 1, last_version = last_version + 1, config = $16 \
             WHERE ",
            in_module!(),
            " AND name = $15 RETURNING id, created_at, updated_at, version, canary_version, canary_percent, canary_since"
        );
        let size = code_size(&f.code)?;
        let now = now_ms();
        // The UPDATE comes first: it holds the function's row (PostgreSQL) or SQLite's write
        // lock, so a concurrent update, rollback or version deletion of it waits.
        let updated: Option<NewVersion> = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            #[allow(clippy::type_complexity)]
            let updated: Option<(i64, i64, i64, i64, Option<i64>, Option<i64>, Option<i64>)> =
                sqlx::query_as(SQL)
            .bind(&f.module)
            .bind(&f.name)
            .bind(EMPTY_CODE)
            .bind(&f.hash)
            .bind(&f.abi)
            .bind(size)
            .bind(f.capacity_bytes)
            .bind(&f.tag)
            .bind(&f.events)
            .bind(&f.sinks)
            .bind(now)
            .bind(f.retryable)
            .bind(f.timeout_ms)
            .bind(&f.allow_hosts)
            .bind(name)
            .bind(&f.config)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict(format!("function '{}/{}' already exists", f.module, f.name))
                } else {
                    StoreError::from(e)
                }
            })?;
            match updated {
                Some((id, created_at, updated_at, version, canary_version, canary_percent, canary_since)) => {
                    insert_code_rows!(tx, id, &f.hash, &f.code);
                    // An update keeps a running canary (it names a kept version, not this one).
                    let row = FunctionRow {
                        canary_version,
                        canary_percent,
                        canary_since,
                        ..f.row(id, size, created_at, updated_at, version)
                    };
                    insert_version!(tx, row, &f.created_by, None::<i64>, now);
                    let dropped_hashes = prune_versions!(tx, id, version, keep);
                    tx.commit().await?;
                    Some(NewVersion { row, dropped_hashes })
                }
                None => None,
            }
        });
        updated.ok_or_else(|| function_not_found(&f.module, name))
    }

    /// Deletes the function `module/name` with its versions; returns its row and the hashes
    /// of the code its versions held, for the workers to evict. `NotFound`.
    pub async fn delete_function(
        &self,
        module: &str,
        name: &str,
    ) -> Result<(FunctionRow, Vec<String>)> {
        const SQL: &str = concat!(
            "DELETE FROM functions WHERE ",
            in_module!(),
            " AND name = $2 RETURNING ",
            function_columns!()
        );
        let deleted: Option<(FunctionRow, Vec<String>)> = on_pool!(self, p => {
            let mut tx = p.begin().await?;
            // Locks the row first, so no version is added between reading the hashes and
            // deleting.
            let hashes: Vec<String> = match lock_function!(tx, module, name) {
                Some((id, _)) => sqlx::query_scalar(VERSION_HASHES).bind(id).fetch_all(&mut *tx).await?,
                None => Vec::new(),
            };
            let row: Option<FunctionRow> = sqlx::query_as(SQL)
                .bind(module)
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            tx.commit().await?;
            row.map(|row| (row, hashes))
        });
        deleted.ok_or_else(|| function_not_found(module, name))
    }

    /// The names of the modules `owner_id` owns, ordered: what counts against its quota.
    pub async fn owned_modules(&self, owner_id: i64) -> Result<Vec<String>> {
        const SQL: &str = "SELECT name FROM modules WHERE owner_id = $1 ORDER BY name";
        Ok(on_pool!(self, p => sqlx::query_scalar(SQL).bind(owner_id).fetch_all(p).await?))
    }

    /// The functions of every module `owner_id` owns: what counts against its quotas.
    pub async fn owned_functions(&self, owner_id: i64) -> Result<Vec<OwnedFunction>> {
        const SQL: &str = "SELECT m.name AS module, f.name AS name, f.size AS size, \
            f.events AS events, f.sinks AS sinks \
            FROM functions f JOIN modules m ON m.id = f.module_id WHERE m.owner_id = $1";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(owner_id).fetch_all(p).await?))
    }

    /// Creates a subject whose token hashes to `token_hash`. `Conflict` if the name is taken.
    pub async fn create_subject(
        &self,
        name: &str,
        token_hash: &str,
        admin: bool,
    ) -> Result<SubjectRow> {
        const SQL: &str = "INSERT INTO subjects (name, token_hash, admin, created_at) \
            VALUES ($1, $2, $3, $4) RETURNING id";
        // A revoked subject gives its name up: it is kept (its modules still name it as owner)
        // as `name~id`, outside the naming rule, so no API call can take that name.
        const FREE: &str = "UPDATE subjects SET name = name || '~' || CAST(id AS TEXT) \
            WHERE name = $1 AND revoked_at IS NOT NULL";
        on_pool!(self, p => sqlx::query(FREE).bind(name).execute(p).await.map(drop)?);
        let created_at = now_ms();
        let id: i64 = on_pool!(self, p => sqlx::query_scalar(SQL)
            .bind(name)
            .bind(token_hash)
            .bind(admin)
            .bind(created_at)
            .fetch_one(p)
            .await)
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("subject '{name}' already exists"))
            } else {
                e.into()
            }
        })?;
        Ok(SubjectRow {
            id,
            name: name.to_string(),
            admin,
            created_at,
            revoked_at: None,
        })
    }

    /// All subjects, revoked ones included, ordered by name.
    pub async fn list_subjects(&self) -> Result<Vec<SubjectRow>> {
        const SQL: &str =
            "SELECT id, name, admin, created_at, revoked_at FROM subjects ORDER BY name";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).fetch_all(p).await?))
    }

    /// The subject whose token hashes to `token_hash`; `None` if there is none or it was revoked.
    pub async fn subject_by_token_hash(&self, token_hash: &str) -> Result<Option<SubjectRow>> {
        const SQL: &str = "SELECT id, name, admin, created_at, revoked_at FROM subjects \
            WHERE token_hash = $1 AND revoked_at IS NULL";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(token_hash).fetch_optional(p).await?))
    }

    /// Revokes a subject's token (revoking twice keeps the first time). `NotFound`.
    pub async fn revoke_subject(&self, name: &str) -> Result<()> {
        const SQL: &str =
            "UPDATE subjects SET revoked_at = COALESCE(revoked_at, $2) WHERE name = $1";
        let now = now_ms();
        let updated = on_pool!(self, p => sqlx::query(SQL)
            .bind(name)
            .bind(now)
            .execute(p)
            .await?
            .rows_affected());
        if updated == 0 {
            return Err(StoreError::NotFound(format!("subject '{name}' not found")));
        }
        Ok(())
    }

    /// The number of subjects, revoked ones included.
    pub async fn count_subjects(&self) -> Result<i64> {
        const SQL: &str = "SELECT COUNT(*) FROM subjects";
        Ok(on_pool!(self, p => sqlx::query_scalar(SQL).fetch_one(p).await?))
    }

    /// Stores a scheduling script. `Conflict` if the name is taken.
    pub async fn create_script(&self, name: &str, source: &str) -> Result<ScriptRow> {
        let now = now_ms();
        let id: i64 = on_pool!(self, p => sqlx::query_scalar(
            "INSERT INTO app_scripts (name, source, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(name)
        .bind(source)
        .bind(now)
        .fetch_one(p)
        .await)
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("scheduling script '{name}' already exists"))
            } else {
                e.into()
            }
        })?;
        Ok(ScriptRow {
            id,
            name: name.to_string(),
            source: source.to_string(),
            created_at: now,
        })
    }

    /// Every scheduling script, by name.
    pub async fn list_scripts(&self) -> Result<Vec<ScriptRow>> {
        const SQL: &str = "SELECT id, name, source, created_at FROM app_scripts ORDER BY name";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).fetch_all(p).await?))
    }

    /// One scheduling script.
    pub async fn get_script(&self, name: &str) -> Result<Option<ScriptRow>> {
        const SQL: &str = "SELECT id, name, source, created_at FROM app_scripts WHERE name = $1";
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(name).fetch_optional(p).await?))
    }

    /// Deletes a scheduling script. `NotFound`.
    pub async fn delete_script(&self, name: &str) -> Result<()> {
        let deleted = on_pool!(self, p => sqlx::query("DELETE FROM app_scripts WHERE name = $1")
            .bind(name)
            .execute(p)
            .await?
            .rows_affected());
        if deleted == 0 {
            return Err(StoreError::NotFound(format!(
                "scheduling script '{name}' not found"
            )));
        }
        Ok(())
    }
}
