//! The service routes' backend: [`ServicesBackend`] for the [`Platform`].
//!
//! Writes go to the store first, then the manager is told to read it again and answers once
//! it has acted (a new service's replicas are being started; a deleted one is forgotten and
//! its start requests under way are aborted). A delete then stops the replicas on every
//! worker and answers when they have stopped.

use std::time::Duration;

use funless_actors::Wire;
use funless_actors::protocol::{LogsRequest, ReplicaStop, ServicesMessage, WorkerMessage};
use funless_api::types::{Abi, ServiceInfo, ServiceLogLine, ServiceSpecRequest};
use funless_api::{ApiError, ApiResult, ServicesBackend, Subject};
use futures::future::join_all;
use ractor::rpc::CallResult;

use super::{RELOAD_TIMEOUT_MS, Services, stored_name, stored_spec};
use crate::platform::Platform;
use crate::store::{NewService, StoreError};

/// How long a worker has to stop a service's replicas (the grace period of a delete).
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long a worker has to hand over its log lines.
const LOGS_TIMEOUT: Duration = Duration::from_secs(3);

fn not_found(name: &str) -> ApiError {
    ApiError::NotFound(format!("service '{name}' not found"))
}

fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(m) => ApiError::NotFound(m),
        StoreError::Conflict(m) => ApiError::Conflict(m),
        StoreError::Invalid(m) => ApiError::BadRequest(m),
        other => ApiError::Internal(other.to_string()),
    }
}

impl Services {
    /// Has the manager read the store again and act on it.
    async fn reload(&self) -> ApiResult<()> {
        let manager = self
            .manager()
            .ok_or_else(|| ApiError::Unavailable("the service manager is restarting".into()))?;
        match ractor::call_t!(manager, ServicesMessage::Reload, RELOAD_TIMEOUT_MS) {
            Ok(answer) => answer
                .into_inner()
                .map_err(|e| ApiError::Internal(e.to_string()))?
                .map_err(ApiError::Internal),
            Err(e) => Err(ApiError::Unavailable(format!(
                "the service manager did not answer: {e}"
            ))),
        }
    }

    /// The stored name of a service `who` may see, or 404.
    fn visible(&self, who: &Subject, name: &str) -> ApiResult<String> {
        let stored = stored_name(who, name);
        let table = self.table();
        match table.get(&stored) {
            Some(service) if who.admin || service.owner_id == Some(who.id) => Ok(stored),
            _ => Err(not_found(name)),
        }
    }
}

/// The form of a service's code: a WASI command, a `wasi:cli/run` component, or JavaScript
/// whose main (`fl_main` or the default export) runs until it returns (400 otherwise).
/// Returns the form, the code and its hash.
async fn service_abi(code: Vec<u8>) -> ApiResult<(Abi, Vec<u8>, String)> {
    let code = bytes::Bytes::from(code);
    let (abi, hash) = crate::validate::validate_and_hash(code.clone(), None)
        .await
        .map_err(|e| ApiError::BadRequest(format!("invalid code: {e}")))?;
    if !matches!(abi, Abi::WasiCommand | Abi::WasiComponent | Abi::JavaScript) {
        return Err(ApiError::BadRequest(format!(
            "a service must be a WASI command (exporting _start), a wasi:cli/run component or \
             JavaScript, not {}",
            abi.as_str()
        )));
    }
    // The check's copy of the handle is gone: this takes the buffer back without copying.
    Ok((abi, Vec::from(code), hash))
}

/// A child spec with its defaults, checked (400 otherwise).
fn checked_spec(spec: ServiceSpecRequest) -> ApiResult<funless_api::types::ServiceSpec> {
    let spec = super::resolve(spec).map_err(ApiError::BadRequest)?;
    crate::platform::allow_hosts(Some(spec.allow_hosts.as_slice()))?;
    Ok(spec)
}

impl ServicesBackend for Platform {
    async fn create_service(
        &self,
        who: &Subject,
        name: &str,
        code: Vec<u8>,
        spec: ServiceSpecRequest,
    ) -> ApiResult<ServiceInfo> {
        let (abi, code, hash) = service_abi(code).await?;
        let spec = checked_spec(spec)?;
        // Counted and stored in the subject's turn, so racing creates cannot both take the
        // last slot (the table is reloaded before the turn ends).
        let _turn = self.quotas().turn(who).await;
        let owned = self
            .services()
            .table()
            .values()
            .filter(|s| s.owner_id == Some(who.id))
            .count();
        self.quotas().check_service(who, owned as u64)?;
        let stored = stored_name(who, name);
        let services = self.services();
        services
            .inner
            .store
            .create_service(NewService {
                name: stored.clone(),
                owner_id: Some(who.id),
                hash,
                code,
                abi: abi.as_str().to_string(),
                spec: stored_spec(&spec).map_err(ApiError::Internal)?,
            })
            .await
            .map_err(store_error)?;
        tracing::info!(service = %stored, replicas = spec.replicas, restart = %spec.restart, "service created");
        self.changes().changed();
        services.reload().await?;
        services.info(&stored).ok_or_else(|| {
            ApiError::Internal("the service manager did not take the service".into())
        })
    }

    async fn update_service(
        &self,
        who: &Subject,
        name: &str,
        code: Option<Vec<u8>>,
        spec: Option<ServiceSpecRequest>,
    ) -> ApiResult<ServiceInfo> {
        let services = self.services();
        let stored = services.visible(who, name)?;
        let code = match code {
            Some(code) => {
                let (abi, code, hash) = service_abi(code).await?;
                Some((code, hash, abi.as_str().to_string()))
            }
            None => None,
        };
        let spec = match spec {
            Some(spec) => checked_spec(spec)?,
            None => services
                .table()
                .get(&stored)
                .map(|s| s.spec.clone())
                .ok_or_else(|| not_found(name))?,
        };
        services
            .inner
            .store
            .update_service(
                &stored,
                code,
                &stored_spec(&spec).map_err(ApiError::Internal)?,
            )
            .await
            .map_err(store_error)?;
        tracing::info!(service = %stored, "service updated");
        self.changes().changed();
        services.reload().await?;
        services.info(&stored).ok_or_else(|| not_found(name))
    }

    async fn list_services(&self, who: &Subject) -> ApiResult<Vec<ServiceInfo>> {
        let owner = (!who.admin).then_some(who.id);
        Ok(self.services().infos(owner))
    }

    async fn get_service(&self, who: &Subject, name: &str) -> ApiResult<ServiceInfo> {
        let services = self.services();
        let stored = services.visible(who, name)?;
        services.info(&stored).ok_or_else(|| not_found(name))
    }

    async fn delete_service(&self, who: &Subject, name: &str) -> ApiResult<()> {
        let services = self.services();
        let stored = services.visible(who, name)?;
        services
            .inner
            .store
            .delete_service(&stored)
            .await
            .map_err(store_error)?;
        self.changes().changed();
        services.reload().await?;
        let stops = services.inner.workers.live().into_iter().map(|entry| {
            let stop = ReplicaStop {
                service: stored.clone(),
                index: None,
                incarnation: None,
                forget_logs: true,
            };
            async move {
                let answer = entry
                    .actor
                    .call(
                        |port| WorkerMessage::StopReplicas(Wire::new(stop), port),
                        Some(STOP_GRACE),
                    )
                    .await;
                match answer {
                    Ok(CallResult::Success(stopped)) => stopped.into_inner().unwrap_or(0),
                    _ => {
                        tracing::warn!(worker = %entry.name(), "a worker did not confirm the stop of a deleted service's replicas");
                        0
                    }
                }
            }
        });
        let stopped: u32 = join_all(stops).await.into_iter().sum();
        tracing::info!(service = %stored, stopped, "service deleted");
        Ok(())
    }

    async fn service_logs(
        &self,
        who: &Subject,
        name: &str,
        lines: usize,
    ) -> ApiResult<Vec<ServiceLogLine>> {
        let services = self.services();
        let stored = services.visible(who, name)?;
        let asks = services.inner.workers.live().into_iter().map(|entry| {
            let request = LogsRequest {
                service: stored.clone(),
                lines: lines as u32,
            };
            async move {
                let worker = entry.name();
                let answer = entry
                    .actor
                    .call(
                        |port| WorkerMessage::ReplicaLogs(Wire::new(request), port),
                        Some(LOGS_TIMEOUT),
                    )
                    .await;
                match answer {
                    Ok(CallResult::Success(lines)) => lines
                        .into_inner()
                        .unwrap_or_default()
                        .into_iter()
                        .map(|l| ServiceLogLine {
                            replica: l.index,
                            worker: worker.clone(),
                            at_ms: l.at_ms,
                            stream: l.stream,
                            line: l.line,
                        })
                        .collect(),
                    _ => Vec::new(),
                }
            }
        });
        let mut all: Vec<ServiceLogLine> = join_all(asks).await.into_iter().flatten().collect();
        all.sort_by_key(|l| l.at_ms);
        Ok(all)
    }
}
