//! What the manager learns from the worker table and the workers' reports: lost workers,
//! replicas to adopt, stale ones to stop, vanished ones.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use funless_actors::protocol::{ReplicaId, ReplicaReport};

use super::{MISSING_AFTER, ManagerState, replica_of};
use crate::services::State;

impl ManagerState {
    /// Moves the replicas of workers that are lost or gone.
    pub(super) fn check_workers(&mut self) {
        let states: HashMap<String, &'static str> = self
            .services
            .inner
            .workers
            .all()
            .into_iter()
            .map(|e| (e.name(), e.state()))
            .collect();
        let mut lost = Vec::new();
        for service in self.services.table().values() {
            for (index, replica) in service.replicas.iter().enumerate() {
                if !matches!(replica.state, State::Starting | State::Running) {
                    continue;
                }
                let Some(worker) = &replica.worker else {
                    continue;
                };
                match states.get(worker) {
                    Some(&"lost") => lost.push((
                        service.name.clone(),
                        index,
                        replica.incarnation,
                        format!("worker {worker} lost"),
                    )),
                    None => lost.push((
                        service.name.clone(),
                        index,
                        replica.incarnation,
                        format!("worker {worker} left the cluster"),
                    )),
                    Some(_) => {}
                }
            }
        }
        for (service, index, incarnation, reason) in lost {
            tracing::warn!(%service, index, %reason, "moving a service replica");
            let id = ReplicaId {
                service,
                index: index as u32,
                incarnation,
            };
            self.ended(&id, false, reason, true);
        }
    }

    /// What a worker runs: adopt what the manager does not know yet, stop what it does not
    /// want, and take as ended what should run there and does not.
    pub(super) fn report(&mut self, report: ReplicaReport) {
        let worker = report.worker;
        let now = Instant::now();
        let mut stale = Vec::new();
        let mut missing = Vec::new();
        {
            let mut table = self.services.table_mut();
            for (id, uptime_ms) in &report.running {
                // Only a service stored before the manager started may have replicas the
                // manager did not start (an update's rolling restart leaves replicas pending
                // whose earlier incarnation still runs: those are stale).
                let adoptable = table.get(&id.service).is_some_and(|s| s.adopt);
                let Some(replica) = replica_of(&mut table, id) else {
                    stale.push(id.clone());
                    continue;
                };
                if replica.incarnation == id.incarnation
                    && matches!(replica.state, State::Starting | State::Running)
                {
                    replica.state = State::Running;
                    replica.worker = Some(worker.clone());
                } else if replica.state == State::Pending && adoptable {
                    tracing::info!(replica = %id, %worker, "adopting a running service replica");
                    replica.state = State::Running;
                    replica.worker = Some(worker.clone());
                    replica.incarnation = id.incarnation;
                    replica.started = Some(
                        now.checked_sub(Duration::from_millis(*uptime_ms))
                            .unwrap_or(now),
                    );
                } else {
                    stale.push(id.clone());
                }
            }
            for service in table.values() {
                for (index, replica) in service.replicas.iter().enumerate() {
                    let here = replica.worker.as_deref() == Some(worker.as_str());
                    let old = replica.started.is_some_and(|t| t.elapsed() > MISSING_AFTER);
                    let listed = report.running.iter().any(|(id, _)| {
                        id.service == service.name && id.incarnation == replica.incarnation
                    });
                    if here && old && replica.state == State::Running && !listed {
                        missing.push(ReplicaId {
                            service: service.name.clone(),
                            index: index as u32,
                            incarnation: replica.incarnation,
                        });
                    }
                }
            }
        }
        for id in stale {
            tracing::info!(replica = %id, %worker, "stopping a replica the manager does not want");
            self.stop(
                &worker,
                id.service.clone(),
                Some(id.index),
                Some(id.incarnation),
            );
        }
        for id in missing {
            let reason = format!("no longer running on {worker}");
            self.ended(&id, false, reason, false);
        }
    }

    /// What a worker runs, as a watching manager shows it: the replicas listed run there, the
    /// ones it showed there that are not listed do not; nothing is started or stopped.
    pub(super) fn mirror(&mut self, report: ReplicaReport) {
        let worker = report.worker;
        let now = Instant::now();
        let mut table = self.services.table_mut();
        for (id, uptime_ms) in &report.running {
            if let Some(replica) = replica_of(&mut table, id) {
                replica.state = State::Running;
                replica.worker = Some(worker.clone());
                replica.incarnation = id.incarnation;
                replica.started = Some(
                    now.checked_sub(Duration::from_millis(*uptime_ms))
                        .unwrap_or(now),
                );
            }
        }
        for service in table.values_mut() {
            for replica in &mut service.replicas {
                let listed = report.running.iter().any(|(id, _)| {
                    id.service == service.name && id.incarnation == replica.incarnation
                });
                if replica.worker.as_deref() == Some(worker.as_str()) && !listed {
                    replica.state = State::Pending;
                    replica.worker = None;
                }
            }
        }
    }
}
