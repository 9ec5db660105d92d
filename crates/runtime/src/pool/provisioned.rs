//! Provisioned concurrency: initialised instances kept for a function whatever the
//! demand, filled in the background, with Lambda's status.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::capacity::Claim;
use super::{lock, FunctionSpec, Idle, InstanceManager, PoolKey};

/// Status of a function's provisioned instances, as Lambda reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProvisionedStatus {
    InProgress,
    Ready,
    Failed(String),
}

/// A snapshot of a function's provisioned instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedState {
    pub requested: usize,
    /// Initialised instances (idle or busy).
    pub allocated: usize,
    /// Of those, idle right now.
    pub available: usize,
    pub status: ProvisionedStatus,
}

pub(super) struct Provisioned {
    pub(super) spec: FunctionSpec,
    pub(super) requested: usize,
    /// Live provisioned instances of `spec`'s revision.
    pub(super) live: usize,
    pub(super) status: ProvisionedStatus,
    pub(super) filling: bool,
}

impl InstanceManager {
    /// Sets how many initialised instances of `f` to keep (0 removes the setting).
    /// Filling happens in the background; see [`InstanceManager::provisioned_state`].
    pub fn set_provisioned(self: &Arc<Self>, f: &FunctionSpec, requested: usize) {
        let fkey = f.unit();
        {
            let mut prov = lock(&self.provisioned);
            if requested == 0 {
                prov.remove(&fkey);
            } else {
                let entry = prov.entry(fkey.clone()).or_insert_with(|| Provisioned {
                    spec: f.clone(),
                    requested,
                    live: 0,
                    status: ProvisionedStatus::InProgress,
                    filling: false,
                });
                if entry.spec.revision != f.revision {
                    entry.spec = f.clone();
                    entry.live = 0;
                }
                entry.requested = requested;
                entry.status = if entry.live >= requested {
                    ProvisionedStatus::Ready
                } else {
                    ProvisionedStatus::InProgress
                };
            }
        }
        // Idle instances no longer covered by a setting become ordinary warm ones.
        {
            let mut prov = lock(&self.provisioned);
            let mut idle = lock(&self.idle);
            let mut demoted_current = 0;
            for (k, list) in idle.iter_mut() {
                if !k.is_of(&f.namespace, &f.name, Some(&f.version)) {
                    continue;
                }
                let current = prov.get(&fkey).filter(|p| p.spec.revision == k.revision);
                let keep = current.map(|p| p.requested).unwrap_or(0);
                let mut kept = 0;
                for i in list.iter_mut().filter(|i| i.provisioned) {
                    if kept < keep {
                        kept += 1;
                    } else {
                        i.provisioned = false;
                        i.since = Instant::now();
                        if current.is_some() {
                            demoted_current += 1;
                        }
                    }
                }
            }
            if let Some(p) = prov.get_mut(&fkey) {
                p.live = p.live.saturating_sub(demoted_current);
            }
        }
        self.fill_provisioned();
    }

    /// The provisioned instances of one version (or `$LATEST`) of a function.
    pub fn provisioned_state(
        &self,
        namespace: &str,
        name: &str,
        version: &str,
    ) -> Option<ProvisionedState> {
        let prov = lock(&self.provisioned);
        let p = prov.get(&(namespace.to_string(), name.to_string(), version.to_string()))?;
        let key = PoolKey::of(&p.spec);
        let available = lock(&self.idle)
            .get(&key)
            .map(|l| l.iter().filter(|i| i.provisioned).count())
            .unwrap_or(0);
        Some(ProvisionedState {
            requested: p.requested,
            allocated: p.live.min(p.requested),
            available: available.min(p.requested),
            status: p.status.clone(),
        })
    }

    /// Starts missing provisioned instances in the background, one function at a time.
    pub(super) fn fill_provisioned(self: &Arc<Self>) {
        let work: Vec<(FunctionSpec, usize)> = {
            let mut prov = lock(&self.provisioned);
            prov.values_mut()
                .filter(|p| !p.filling && p.live < p.requested)
                .map(|p| {
                    p.filling = true;
                    (p.spec.clone(), p.requested - p.live)
                })
                .collect()
        };
        for (spec, missing) in work {
            let mgr = self.clone();
            tokio::spawn(async move { mgr.fill_one(spec, missing).await });
        }
    }

    pub(super) async fn fill_one(self: Arc<Self>, f: FunctionSpec, missing: usize) {
        let fkey = f.unit();
        let mut failure = None;
        for _ in 0..missing {
            let still_wanted = lock(&self.provisioned)
                .get(&fkey)
                .is_some_and(|p| p.spec.revision == f.revision && p.live < p.requested);
            if !still_wanted {
                break;
            }
            let Some(kind) = self.catalog.get(&f.runtime).cloned() else {
                failure = Some(format!("runtime {} is not available", f.runtime));
                break;
            };
            let Ok(permit) = self.starts.clone().acquire_owned().await else {
                break;
            };
            if !self
                .claim_capacity(Claim::of(&f), Some(&PoolKey::of(&f)))
                .await
            {
                failure = Some(format!(
                    "not enough capacity on this server ({})",
                    self.describe_capacity()
                ));
                break;
            }
            let started = self.start(&f, &kind, true).await;
            drop(permit);
            match started {
                Ok(instance) if self.closed.load(Ordering::Acquire) => {
                    let claim = Claim::declared(&instance);
                    self.retire(instance, false, &PoolKey::of(&f), claim).await;
                    break;
                }
                Ok(instance) => {
                    let counted = {
                        let mut prov = lock(&self.provisioned);
                        match prov.get_mut(&fkey) {
                            Some(p) if p.spec.revision == f.revision => {
                                p.live += 1;
                                true
                            }
                            _ => false,
                        }
                    };
                    self.park(&instance);
                    lock(&self.idle)
                        .entry(PoolKey::of(&f))
                        .or_default()
                        .push(Idle {
                            charged: Claim::declared(&instance),
                            instance,
                            since: Instant::now(),
                            provisioned: counted,
                        });
                    self.released.notify_waiters();
                }
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        let mut prov = lock(&self.provisioned);
        if let Some(p) = prov.get_mut(&fkey) {
            p.filling = false;
            if p.spec.revision == f.revision {
                p.status = match failure {
                    Some(reason) if p.live < p.requested => {
                        tracing::warn!(function = %f.name, %reason, "provisioned instances failed to start");
                        ProvisionedStatus::Failed(reason)
                    }
                    _ if p.live >= p.requested => ProvisionedStatus::Ready,
                    _ => ProvisionedStatus::InProgress,
                };
            }
        }
    }
}
