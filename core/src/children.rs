//! A supervisor of children added and removed at run time (the Core's event connectors and
//! sink deliverers), whose specs are kept here so that the supervisor, when restarted, starts
//! them all again: dynamic children survive their supervisor's restart.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use funless_actors::supervisor::{
    ChildSpec, Restart, Strategy, Supervisor, SupervisorArgs, SupervisorMessage, no_reply,
};
use ractor::{Actor, ActorRef};

/// Restart intensity of a dynamic supervisor: a child that keeps failing faster than this
/// takes the supervisor down, and the Core's root decides (it restarts it, with every child).
const MAX_RESTARTS: usize = 20;
const WITHIN: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Inner {
    specs: BTreeMap<String, ChildSpec>,
    supervisor: Option<ActorRef<SupervisorMessage>>,
}

/// The children and the supervisor currently running them.
pub(crate) struct DynamicChildren {
    name: &'static str,
    role: &'static str,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for DynamicChildren {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamicChildren")
            .field("name", &self.name)
            .finish()
    }
}

impl DynamicChildren {
    /// An empty set, to be started by [`DynamicChildren::child_spec`].
    pub(crate) fn new(name: &'static str, role: &'static str) -> Arc<Self> {
        Arc::new(Self {
            name,
            role,
            inner: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The supervisor as a child of the Core's root. Every start spawns it empty, then, under
    /// the same lock as [`DynamicChildren::put`] and [`DynamicChildren::remove`], records it
    /// and starts every kept child in it, so no change made meanwhile is missed.
    pub(crate) fn child_spec(self: &Arc<Self>) -> ChildSpec {
        let this = self.clone();
        ChildSpec {
            name: self.name.into(),
            role: self.role.into(),
            restart: Restart::Permanent,
            is_supervisor: true,
            start: Arc::new(move |parent| {
                let this = this.clone();
                Box::pin(async move {
                    let (supervisor, _) = Actor::spawn_linked(
                        None,
                        Supervisor,
                        SupervisorArgs {
                            name: this.name.into(),
                            role: this.role.into(),
                            strategy: Strategy::OneForOne,
                            children: Vec::new(),
                            max_restarts: MAX_RESTARTS,
                            within: WITHIN,
                        },
                        parent,
                    )
                    .await?;
                    let mut inner = this.lock();
                    for spec in inner.specs.values() {
                        let _ = supervisor
                            .cast(SupervisorMessage::StartChild(spec.clone(), no_reply()));
                    }
                    inner.supervisor = Some(supervisor.clone());
                    Ok(supervisor.get_cell())
                })
            }),
        }
    }

    /// Adds a child, replacing (stopping) one of the same name, and starts it.
    pub(crate) fn put(&self, spec: ChildSpec) {
        let mut inner = self.lock();
        if let Some(supervisor) = &inner.supervisor {
            let _ = supervisor.cast(SupervisorMessage::StartChild(spec.clone(), no_reply()));
        }
        inner.specs.insert(spec.name.clone(), spec);
    }

    /// Stops and forgets the children whose names start with `prefix`.
    pub(crate) fn remove(&self, prefix: &str) {
        let mut inner = self.lock();
        let names: Vec<String> = inner
            .specs
            .keys()
            .filter(|name| name.starts_with(prefix))
            .cloned()
            .collect();
        for name in names {
            inner.specs.remove(&name);
            if let Some(supervisor) = &inner.supervisor {
                let _ = supervisor.cast(SupervisorMessage::StopChild(name, no_reply()));
            }
        }
    }
}
