//! The canary routes' backend: [`CanaryBackend`] for the [`Platform`]. The store holds a
//! function's canary (`store/versions.rs`); the invocation path draws each call's side of the
//! split (`Platform::prepare`) and counts what it came to here, in `crate::canary::Tallies`
//! and `/metrics`.

use bytes::Bytes;
use funless_api::types::{
    Abi, BroadcastReport, CanaryInfo, CanarySplit, CanaryTally, FunctionCreated,
};
use funless_api::{ApiError, ApiResult, CanaryBackend, FunctionUpload, Subject};

use super::versions::Restore;
use super::{Platform, api, rfc3339};
use crate::canary::Route;
use crate::dispatch;
use crate::store::{FunctionRow, NewVersion, shown_module};

fn no_canary(module: &str, function: &str) -> ApiError {
    ApiError::NotFound(format!(
        "function '{}/{function}' has no canary",
        shown_module(module)
    ))
}

impl Platform {
    /// Counts an invocation of `module/name` that took `route` and ended with `outcome`, when
    /// its function has a canary.
    pub(super) fn count_route(
        &self,
        module: &str,
        name: &str,
        route: Route,
        outcome: &'static str,
    ) {
        let Some(track) = route.track() else {
            return;
        };
        self.inner.tallies.count(module, name, route, outcome);
        self.inner
            .metrics
            .canary_invocation(module, name, route.version, track.as_str(), outcome);
    }

    /// Answers an update staged as a canary (`store.stage_canary`): sends its code to the
    /// workers (unless they checked it already), so the canary's first calls are warm. The
    /// function's connectors and sinks stay the current version's.
    pub(super) async fn staged(
        &self,
        module: &str,
        staged: NewVersion,
        abi: Abi,
        checked: Option<BroadcastReport>,
        upload: FunctionUpload,
    ) -> FunctionCreated {
        let row = staged.row;
        self.inner.catalog.function_changed(module, &row.name);
        tracing::info!(function = %format!("{module}/{}", row.name), version = row.version, percent = ?row.canary_percent, hash = %row.hash, "update staged as a canary");
        let workers = match checked {
            Some(report) => report,
            None => {
                self.distribute(
                    super::function_id(&row),
                    upload.code,
                    upload.wait_for_workers,
                )
                .await
            }
        };
        if !staged.dropped_hashes.is_empty() {
            dispatch::evict(&self.inner.workers, staged.dropped_hashes);
        }
        let canary = row.canary().map(|(version, percent)| CanarySplit {
            version: version.max(0) as u64,
            percent,
        });
        FunctionCreated {
            name: row.name,
            hash: row.hash,
            abi,
            version: row.version.max(0) as u64,
            canary,
            workers,
            events: None,
            sinks: None,
        }
    }

    /// The canary of the stored function `row` and what it came to, if one runs.
    fn canary_info(&self, row: &FunctionRow) -> Option<CanaryInfo> {
        let (version, percent) = row.canary()?;
        let since = row.canary_since.unwrap_or(0);
        let versions = self
            .inner
            .tallies
            .of(&row.module, &row.name, since)
            .into_iter()
            .map(|tally| CanaryTally {
                version: tally.version.max(0) as u64,
                track: tally.track.as_str().to_string(),
                invocations: tally.outcomes.values().sum(),
                outcomes: tally
                    .outcomes
                    .into_iter()
                    .map(|(outcome, n)| (outcome.to_string(), n))
                    .collect(),
            })
            .collect();
        Some(CanaryInfo {
            version: version.max(0) as u64,
            percent,
            current: row.version.max(0) as u64,
            since: rfc3339(since),
            versions,
        })
    }
}

impl CanaryBackend for Platform {
    async fn get_canary(
        &self,
        who: &Subject,
        module: &str,
        function: &str,
    ) -> ApiResult<CanaryInfo> {
        let stored = self.module_for(who, module).await?;
        let row = self.function_row(&stored, function).await?;
        self.canary_info(&row)
            .ok_or_else(|| no_canary(&stored, function))
    }

    async fn set_canary(
        &self,
        who: &Subject,
        module: &str,
        function: &str,
        split: CanarySplit,
    ) -> ApiResult<CanaryInfo> {
        let stored = self.module_for(who, module).await?;
        // Read first: a 404 for a version that is not kept, before anything changes.
        let kept = self.kept_version(&stored, function, split.version).await?;
        let row = self
            .inner
            .store
            .set_canary(&stored, function, kept.version, split.percent)
            .await
            .map_err(api)?;
        self.inner.catalog.function_changed(&stored, function);
        tracing::info!(function = %format!("{stored}/{function}"), current = row.version, canary = kept.version, percent = split.percent, "canary set");
        // Its first invocations are warm: workers that evicted its code compile it now.
        if let Some(code) = self
            .inner
            .store
            .function_code(&stored, function, &kept.hash)
            .await
            .map_err(api)?
        {
            let id = super::function_id(&kept.applied_to(&row));
            self.distribute(id, Bytes::from(code), true).await;
        }
        self.canary_info(&row)
            .ok_or_else(|| ApiError::Conflict("the canary ended while it was set".into()))
    }

    async fn end_canary(
        &self,
        who: &Subject,
        module: &str,
        function: &str,
    ) -> ApiResult<CanaryInfo> {
        let stored = self.module_for(who, module).await?;
        let row = self.function_row(&stored, function).await?;
        let info = self.canary_info(&row);
        let ended = self
            .inner
            .store
            .end_canary(&stored, function)
            .await
            .map_err(api)?;
        self.inner.catalog.function_changed(&stored, function);
        self.inner.tallies.forget(&stored, function);
        tracing::info!(function = %format!("{stored}/{function}"), canary = ended, "canary ended");
        info.ok_or_else(|| no_canary(&stored, function))
    }

    async fn promote_canary(
        &self,
        who: &Subject,
        module: &str,
        function: &str,
    ) -> ApiResult<FunctionCreated> {
        let stored = self.module_for(who, module).await?;
        let row = self.function_row(&stored, function).await?;
        let Some((version, _)) = row.canary() else {
            return Err(ApiError::Conflict(format!(
                "function '{}/{function}' has no canary to promote",
                shown_module(&stored)
            )));
        };
        let kept = self
            .kept_version(&stored, function, version.max(0) as u64)
            .await?;
        self.restore_version(who, &stored, function, kept, Restore::Promote)
            .await
    }
}
