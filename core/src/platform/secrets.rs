//! The secrets routes' backend: [`SecretsBackend`] for the [`Platform`], over
//! `crate::secrets::Secrets`. Values go in and are never answered, logged or counted.

use funless_api::types::SecretInfo;
use funless_api::{ApiError, ApiResult, SecretsBackend, Subject};

use super::{Platform, rfc3339, secrets_error};
use crate::secrets::{MAX_PER_SUBJECT, MAX_VALUE_BYTES, SecretMeta};

fn info(meta: SecretMeta) -> SecretInfo {
    SecretInfo {
        name: meta.name,
        created_at: rfc3339(meta.created_at),
        updated_at: rfc3339(meta.updated_at),
    }
}

impl SecretsBackend for Platform {
    async fn list_secrets(&self, who: &Subject) -> ApiResult<Vec<SecretInfo>> {
        let listed = self.secrets().list(who.id).await.map_err(secrets_error)?;
        Ok(listed.into_iter().map(info).collect())
    }

    async fn put_secret(
        &self,
        who: &Subject,
        name: &str,
        value: String,
    ) -> ApiResult<(bool, SecretInfo)> {
        if value.len() > MAX_VALUE_BYTES {
            return Err(ApiError::BadRequest(format!(
                "the value is {} bytes, at most {MAX_VALUE_BYTES} are allowed",
                value.len()
            )));
        }
        if value.contains('\0') {
            return Err(ApiError::BadRequest(
                "the value contains a NUL character".into(),
            ));
        }
        let secrets = self.secrets();
        // One subject's writes in turn, so two new secrets cannot both take the last place.
        let _turn = self.inner.quotas.turn(who).await;
        let held = secrets.list(who.id).await.map_err(secrets_error)?;
        if held.len() >= MAX_PER_SUBJECT && !held.iter().any(|s| s.name == name) {
            return Err(ApiError::TooManyRequests(format!(
                "a subject holds at most {MAX_PER_SUBJECT} secrets; delete one first"
            )));
        }
        let created = secrets
            .put(who.id, name, &value)
            .await
            .map_err(secrets_error)?;
        self.changes().changed();
        tracing::info!(subject = %who.name, secret = %name, created, "secret stored");
        let meta = secrets
            .list(who.id)
            .await
            .map_err(secrets_error)?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| ApiError::Conflict(format!("secret '{name}' was deleted meanwhile")))?;
        Ok((created, info(meta)))
    }

    async fn delete_secret(&self, who: &Subject, name: &str) -> ApiResult<()> {
        self.secrets()
            .delete(who.id, name)
            .await
            .map_err(secrets_error)?;
        self.changes().changed();
        tracing::info!(subject = %who.name, secret = %name, "secret deleted");
        Ok(())
    }
}
