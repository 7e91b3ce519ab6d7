//! Stored asynchronous invocations (`crate::pending`): running one and recording how it ended,
//! and running one taken over from a Core that stopped.

use super::*;

impl Platform {
    /// Runs a stored asynchronous invocation and stores how it ended (in memory too, when this
    /// Core accepted it).
    pub(super) async fn run_pending(
        &self,
        row: &PendingRow,
        prepared: &Prepared,
        args_json: String,
    ) {
        let (_, finished) = self.execute(prepared, args_json).await;
        self.inner.activations.finish(&row.id, finished.clone());
        let info = crate::activations::record_info(
            &row.id,
            &prepared.module,
            &prepared.name,
            prepared.route,
            u64::try_from(row.created_at).unwrap_or(0),
            finished,
        );
        self.store_pending_record(row, &info).await;
    }

    pub(super) async fn store_pending_record(&self, row: &PendingRow, info: &ActivationInfo) {
        let record = match serde_json::to_string(info) {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(activation = %row.id, error = %e, "cannot encode an activation record");
                return;
            }
        };
        let core = self.inner.changes.id();
        match self
            .inner
            .store
            .finish_pending(&row.id, core, &record, crate::store::now_ms())
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(activation = %row.id, "another Core took this asynchronous invocation over; its record is that Core's")
            }
            Err(e) => {
                tracing::warn!(activation = %row.id, error = %e, "cannot store how an asynchronous invocation ended")
            }
        }
    }

    /// Runs again an asynchronous invocation taken over from a Core that stopped (its function
    /// retryable), or records that it was lost.
    pub(crate) async fn resume_pending(&self, row: PendingRow) {
        let system = Subject {
            id: row.owner_id,
            name: "async".into(),
            admin: true,
        };
        let version = row.version.and_then(|v| u64::try_from(v).ok());
        let prepared = match self
            .prepare(
                &system,
                &row.module,
                &row.function,
                version,
                row.script.clone(),
            )
            .await
        {
            Ok(prepared) => prepared,
            // A passing failure (the store away, ours): another look takes it again.
            Err(e @ (ApiError::Unavailable(_) | ApiError::Internal(_))) => {
                tracing::warn!(activation = %row.id, error = %e, "cannot run a taken-over asynchronous invocation yet");
                if let Err(e) = self
                    .inner
                    .store
                    .release_pending(&row.id, self.inner.changes.id())
                    .await
                {
                    tracing::warn!(activation = %row.id, error = %e, "cannot give an asynchronous invocation back");
                }
                return;
            }
            Err(e) => {
                let info = crate::pending::lost_info(
                    &row,
                    "cannot_run",
                    format!("the Core that accepted it stopped, and it cannot run again: {e}"),
                );
                self.store_pending_record(&row, &info).await;
                return;
            }
        };
        if !prepared.target.retryable {
            let info = crate::pending::lost_info(
                &row,
                "core_lost",
                "the Core running it stopped before it finished; the function is not \
                 retryable, so it was not run again"
                    .into(),
            );
            self.store_pending_record(&row, &info).await;
            return;
        }
        let args = row.args.clone();
        self.run_pending(&row, &prepared, args).await;
    }
}
