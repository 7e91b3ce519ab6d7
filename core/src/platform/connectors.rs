//! A function's event connectors and sinks as the Core runs them: started from the stored
//! definitions on create, update and Core start, kept in line with the store when another Core
//! changes it (`crate::peers`), and, on PostgreSQL, the connectors (and the services' manager)
//! only on the Core holding the lease (`crate::lease`).

use funless_api::ApiResult;
use funless_api::types::ConnectorInfo;

use super::*;

/// A function's stored event triggers (none when they no longer parse, which is logged).
pub(super) fn stored_triggers(row: &FunctionRow) -> Vec<events::Trigger> {
    stored_list(row, "events", row.events.as_deref(), events::parse)
}

/// A function's stored sinks (none when they no longer parse, which is logged).
pub(crate) fn stored_sinks(row: &FunctionRow) -> Vec<sinks::Sink> {
    stored_list(row, "sinks", row.sinks.as_deref(), sinks::parse)
}

/// A stored JSON list of `row` parsed by `parse`: none when absent, or when it no longer
/// parses (logged, naming `what`).
fn stored_list<T>(
    row: &FunctionRow,
    what: &str,
    text: Option<&str>,
    parse: impl Fn(&serde_json::Value) -> Result<Vec<T>, String>,
) -> Vec<T> {
    let Some(text) = text else {
        return Vec::new();
    };
    serde_json::from_str::<serde_json::Value>(text)
        .map_err(|e| e.to_string())
        .and_then(|value| parse(&value))
        .unwrap_or_else(|e| {
            tracing::error!(function = %format!("{}/{}", row.module, row.name), error = %e, "stored {what} no longer parse");
            Vec::new()
        })
}

impl Platform {
    /// (Re)starts a function's event connectors from its stored definition and reports their
    /// state after a short wait for the first connections (`None` when it has no events).
    pub(super) async fn start_connectors(&self, row: &FunctionRow) -> Option<Vec<ConnectorInfo>> {
        // Unchanged sinks keep their queues: an update of the code alone drops no result.
        self.inner
            .sinks
            .ensure(&row.module, &row.name, stored_sinks(row));
        if !self.runs_connectors() {
            // The Core holding the connectors' lease starts them when it hears of the change.
            return None;
        }
        let triggers = stored_triggers(row);
        let any = !triggers.is_empty();
        self.inner
            .connectors
            .set(&row.module, &row.name, triggers, self.fire(row));
        if !any {
            return None;
        }
        let (module, name) = (&row.module, &row.name);
        let deadline = Instant::now() + CONNECT_WAIT;
        loop {
            let info = self.inner.connectors.info(module, name);
            if info.iter().all(|c| c.connected) || Instant::now() >= deadline {
                return Some(info);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The sinks of a function as the create or update answer shows them.
    pub(super) fn sinks_metadata(
        &self,
        row: &FunctionRow,
    ) -> Option<Vec<funless_api::types::SinkInfo>> {
        row.sinks
            .as_ref()
            .map(|_| self.inner.sinks.info(&row.module, &row.name))
    }

    /// What a connector calls for each message: one invocation of the function as its
    /// module's owner would make it, recorded as an activation.
    pub(super) fn fire(&self, row: &FunctionRow) -> events::Fire {
        let platform = self.clone();
        let (module, name) = (row.module.clone(), row.name.clone());
        Arc::new(move |args_json: String| {
            let platform = platform.clone();
            let (module, name) = (module.clone(), name.clone());
            tokio::spawn(async move { platform.invoke_from_event(&module, &name, args_json).await })
        })
    }

    pub(super) async fn invoke_from_event(&self, module: &str, name: &str, args_json: String) {
        self.inner.metrics.event_message();
        let owner = match self.module_row(module).await {
            Ok(Some(row)) => row.owner_id.unwrap_or(0),
            Ok(None) => return, // deleted meanwhile; its connectors are being stopped
            Err(e) => {
                tracing::warn!(%module, error = %e, "event invocation: store unavailable");
                0
            }
        };
        let system = Subject {
            id: owner,
            name: "events".into(),
            admin: true,
        };
        let prepared = match self.prepare(&system, module, name, None, None).await {
            Ok(prepared) => prepared,
            Err(e) => {
                tracing::warn!(function = %format!("{module}/{name}"), error = %e, "event invocation refused");
                return;
            }
        };
        let (result, finished) = self.execute(&prepared, args_json).await;
        if let Err(e) = &result {
            tracing::warn!(function = %format!("{module}/{name}"), error = %e, "event invocation failed");
        }
        self.inner.activations.record(
            owner,
            &prepared.module,
            &prepared.name,
            prepared.route,
            finished,
        );
    }

    /// Starts the connectors of every stored function that has events (at Core start).
    pub async fn restore_connectors(&self) -> ApiResult<usize> {
        let modules = self.inner.store.list_modules().await.map_err(api)?;
        let mut started = 0;
        for module in modules {
            started += self.restore_module_connectors_counted(&module.name).await?;
        }
        if started > 0 {
            tracing::info!(functions = started, "event connectors restored");
        }
        Ok(started)
    }

    pub(super) async fn restore_module_connectors(&self, module: &str) -> ApiResult<()> {
        self.restore_module_connectors_counted(module)
            .await
            .map(drop)
    }

    pub(super) async fn restore_module_connectors_counted(&self, module: &str) -> ApiResult<usize> {
        let functions = self.inner.store.list_functions(module).await.map_err(api)?;
        let mut started = 0;
        for row in functions.iter().filter(|f| f.sinks.is_some()) {
            self.inner
                .sinks
                .set(&row.module, &row.name, stored_sinks(row));
        }
        if !self.runs_connectors() {
            return Ok(0);
        }
        for row in functions.iter().filter(|f| f.events.is_some()) {
            let triggers = stored_triggers(row);
            if !triggers.is_empty() {
                self.inner
                    .connectors
                    .set(&row.module, &row.name, triggers, self.fire(row));
                started += 1;
            }
        }
        Ok(started)
    }

    /// Whether this Core runs the functions' event connectors (see `Inner::runs_connectors`).
    pub(crate) fn runs_connectors(&self) -> bool {
        self.inner.runs_connectors.load(Ordering::Acquire)
    }

    /// This Core took the connectors' lease: it runs every stored function's connectors.
    pub(crate) async fn take_connectors(&self) -> ApiResult<usize> {
        self.inner.runs_connectors.store(true, Ordering::Release);
        self.inner.services.set_active(true);
        self.sync_with_store().await
    }

    /// This Core lost the connectors' lease: its connectors stop (another Core runs them).
    pub(crate) fn drop_connectors(&self) {
        self.inner.runs_connectors.store(false, Ordering::Release);
        self.inner.services.set_active(false);
        for (module, name) in self.inner.connectors.functions() {
            self.inner.connectors.remove(&module, &name);
        }
    }

    /// Makes the running sinks those of the stored functions, and the running connectors too
    /// when this Core runs them: new ones start, changed ones restart, unchanged ones go on,
    /// and those of functions gone (or without any) stop. For a change another Core made.
    pub(crate) async fn sync_with_store(&self) -> ApiResult<usize> {
        let connectors = self.runs_connectors();
        let store = &self.inner.store;
        let mut wanted = std::collections::HashSet::new();
        let mut with_sinks = std::collections::HashSet::new();
        for module in store.list_modules().await.map_err(api)? {
            for row in store.list_functions(&module.name).await.map_err(api)? {
                let sinks = stored_sinks(&row);
                if !sinks.is_empty() {
                    self.inner.sinks.ensure(&row.module, &row.name, sinks);
                    with_sinks.insert((row.module.clone(), row.name.clone()));
                }
                let triggers = stored_triggers(&row);
                if !connectors || triggers.is_empty() {
                    continue;
                }
                self.inner
                    .connectors
                    .ensure(&row.module, &row.name, triggers, self.fire(&row));
                wanted.insert((row.module, row.name));
            }
        }
        for key in self.inner.sinks.functions() {
            if !with_sinks.contains(&key) {
                self.inner.sinks.remove(&key.0, &key.1);
            }
        }
        if !connectors {
            return Ok(0);
        }
        for key in self.inner.connectors.functions() {
            if !wanted.contains(&key) {
                self.inner.connectors.remove(&key.0, &key.1);
            }
        }
        Ok(wanted.len())
    }
}
