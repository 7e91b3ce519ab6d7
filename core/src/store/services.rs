//! Stored long-running services: code, child spec (JSON) and whether the service failed.

use super::{Pool, Result, Store, StoreError, code_size, is_unique_violation, now_ms};

/// A stored service.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ServiceRow {
    /// Store id.
    pub id: i64,
    /// Stored name (a subject's services are namespaced like its modules: `name~<id>`).
    pub name: String,
    /// The subject that created it.
    pub owner_id: Option<i64>,
    /// The program.
    pub code: Vec<u8>,
    /// SHA-256 of the code, lower-case hex.
    pub hash: String,
    /// `wasi_command` or `wasi_component`.
    pub abi: String,
    /// Size of the code, bytes.
    pub size: i64,
    /// The child spec, JSON text.
    pub spec: String,
    /// `running` or `failed`.
    pub state: String,
    /// Why it failed.
    pub reason: Option<String>,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Last change of its code or spec (create or update), unix milliseconds.
    pub updated_at: i64,
    /// Each replica's restarts, back-off streak and last exit (JSON), as the service manager
    /// last recorded them.
    pub replicas: Option<String>,
}

/// A service to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewService {
    /// Stored name.
    pub name: String,
    /// The subject creating it.
    pub owner_id: Option<i64>,
    /// The program.
    pub code: Vec<u8>,
    /// SHA-256 of the code.
    pub hash: String,
    /// Its form.
    pub abi: String,
    /// The child spec, JSON text.
    pub spec: String,
}

/// The error for a service that is not stored, named as its owner knows it.
fn not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("service '{}' not found", super::shown_module(name)))
}

/// The columns of a [`ServiceRow`].
macro_rules! service_columns {
    () => {
        "id, name, owner_id, code, hash, abi, size, spec, state, reason, created_at, updated_at, \
         replicas"
    };
}

impl Store {
    /// Stores a new service (state `running`). `Conflict` if the name is taken.
    pub async fn create_service(&self, new: NewService) -> Result<ServiceRow> {
        const SQL: &str = "INSERT INTO services \
             (name, owner_id, code, hash, abi, size, spec, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'running', $8, $8) RETURNING id";
        let now = now_ms();
        let size = code_size(&new.code)?;
        let id: i64 = on_pool!(self, p => sqlx::query_scalar(SQL)
            .bind(&new.name)
            .bind(new.owner_id)
            .bind(&new.code)
            .bind(&new.hash)
            .bind(&new.abi)
            .bind(size)
            .bind(&new.spec)
            .bind(now)
            .fetch_one(p)
            .await)
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!(
                    "service '{}' already exists",
                    super::shown_module(&new.name)
                ))
            } else {
                e.into()
            }
        })?;
        Ok(ServiceRow {
            id,
            name: new.name,
            owner_id: new.owner_id,
            code: new.code,
            hash: new.hash,
            abi: new.abi,
            size,
            spec: new.spec,
            state: "running".into(),
            reason: None,
            created_at: now,
            updated_at: now,
            replicas: None,
        })
    }

    /// Every service with its code, by name.
    pub async fn list_services(&self) -> Result<Vec<ServiceRow>> {
        const SQL: &str = concat!(
            "SELECT ",
            service_columns!(),
            " FROM services ORDER BY name"
        );
        Ok(on_pool!(self, p => sqlx::query_as(SQL).fetch_all(p).await?))
    }

    /// One service.
    pub async fn get_service(&self, name: &str) -> Result<Option<ServiceRow>> {
        const SQL: &str = concat!(
            "SELECT ",
            service_columns!(),
            " FROM services WHERE name = $1"
        );
        Ok(on_pool!(self, p => sqlx::query_as(SQL).bind(name).fetch_optional(p).await?))
    }

    /// Records a service's state (`running`, or `failed` with the reason); `updated_at` stays,
    /// since it tells the service manager of updates.
    pub async fn set_service_state(
        &self,
        name: &str,
        state: &str,
        reason: Option<&str>,
    ) -> Result<()> {
        const SQL: &str = "UPDATE services SET state = $2, reason = $3 WHERE name = $1";
        on_pool!(self, p => sqlx::query(SQL)
            .bind(name)
            .bind(state)
            .bind(reason)
            .execute(p)
            .await
            .map(drop)?);
        Ok(())
    }

    /// Records what its replicas went through (JSON); `updated_at` stays, as for the state.
    pub async fn set_service_replicas(&self, name: &str, replicas: &str) -> Result<()> {
        const SQL: &str = "UPDATE services SET replicas = $2 WHERE name = $1";
        on_pool!(self, p => sqlx::query(SQL)
            .bind(name)
            .bind(replicas)
            .execute(p)
            .await
            .map(drop)?);
        Ok(())
    }

    /// Replaces a service's code (when given: code, hash, form) and spec, and marks it
    /// `running` again (an update restarts a failed service). `NotFound`.
    pub async fn update_service(
        &self,
        name: &str,
        code: Option<(Vec<u8>, String, String)>,
        spec: &str,
    ) -> Result<()> {
        // `updated_at` always moves forward, even for two updates within one millisecond: it is
        // how the service manager tells an update.
        const SQL: &str = "UPDATE services SET spec = $2, state = 'running', reason = NULL, \
             updated_at = CASE WHEN updated_at < $3 THEN $3 ELSE updated_at + 1 END \
             WHERE name = $1";
        const CODE_SQL: &str = "UPDATE services SET code = $2, hash = $3, abi = $4, size = $5, \
             spec = $6, state = 'running', reason = NULL, \
             updated_at = CASE WHEN updated_at < $7 THEN $7 ELSE updated_at + 1 END \
             WHERE name = $1";
        let now = now_ms();
        let updated = match code {
            None => on_pool!(self, p => sqlx::query(SQL)
                .bind(name)
                .bind(spec)
                .bind(now)
                .execute(p)
                .await?
                .rows_affected()),
            Some((code, hash, abi)) => {
                let size = code_size(&code)?;
                on_pool!(self, p => sqlx::query(CODE_SQL)
                    .bind(name)
                    .bind(&code)
                    .bind(&hash)
                    .bind(&abi)
                    .bind(size)
                    .bind(spec)
                    .bind(now)
                    .execute(p)
                    .await?
                    .rows_affected())
            }
        };
        if updated == 0 {
            return Err(not_found(name));
        }
        Ok(())
    }

    /// Deletes a service. `NotFound`.
    pub async fn delete_service(&self, name: &str) -> Result<()> {
        let deleted = on_pool!(self, p => sqlx::query("DELETE FROM services WHERE name = $1")
            .bind(name)
            .execute(p)
            .await?
            .rows_affected());
        if deleted == 0 {
            return Err(not_found(name));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Run on both back ends by the store's suite.
    pub(in crate::store) async fn suite(store: &Store) {
        let new = NewService {
            name: "svc".into(),
            owner_id: None,
            code: vec![0, 97, 115, 109],
            hash: "h".into(),
            abi: "wasi_command".into(),
            spec: "{}".into(),
        };
        let row = store.create_service(new.clone()).await.unwrap();
        assert_eq!((row.state.as_str(), row.size), ("running", 4));
        assert!(matches!(
            store.create_service(new).await,
            Err(StoreError::Conflict(m)) if m == "service 'svc' already exists"
        ));
        store
            .set_service_state("svc", "failed", Some("too many restarts"))
            .await
            .unwrap();
        let stored = store.get_service("svc").await.unwrap().unwrap();
        assert_eq!(stored.replicas, None);
        let history = r#"[{"restarts":3,"streak":1,"last_exit":"exit code 1"}]"#;
        store.set_service_replicas("svc", history).await.unwrap();
        let with_history = store.get_service("svc").await.unwrap().unwrap();
        assert_eq!(with_history.replicas.as_deref(), Some(history));
        assert_eq!(with_history.updated_at, stored.updated_at);
        assert_eq!(stored.state, "failed");
        assert_eq!(stored.reason.as_deref(), Some("too many restarts"));
        assert_eq!(stored.code, [0, 97, 115, 109]);
        store
            .update_service(
                "svc",
                Some((vec![1, 2], "h2".into(), "wasi_command".into())),
                "{\"replicas\":2}",
            )
            .await
            .unwrap();
        let updated = store.get_service("svc").await.unwrap().unwrap();
        assert_eq!((updated.state.as_str(), updated.reason), ("running", None));
        assert_eq!((updated.hash.as_str(), updated.size), ("h2", 2));
        assert_eq!(updated.spec, "{\"replicas\":2}");
        store.update_service("svc", None, "{}").await.unwrap();
        let again = store.get_service("svc").await.unwrap().unwrap();
        assert_eq!(again.hash, "h2");
        assert!(again.updated_at > updated.updated_at);
        assert!(matches!(
            store.update_service("nope", None, "{}").await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(store.list_services().await.unwrap().len(), 1);
        store.delete_service("svc").await.unwrap();
        assert!(matches!(
            store.delete_service("svc").await,
            Err(StoreError::NotFound(_))
        ));
        assert!(store.list_services().await.unwrap().is_empty());
    }
}
