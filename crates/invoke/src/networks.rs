//! Private networks (`/tern/v1/networks`): the operator defines them, functions attach to
//! them by name (`VpcConfig`, `TernNetwork.Networks`), and every server keeps its egress
//! policy in step with the store: at once for a change made through it, within
//! [`SYNC_EVERY`] for one made through another server on the same PostgreSQL database.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tern_core::names::DEFAULT_NAMESPACE;
use tern_core::network::{AllowRule, NetworkRecord, Protocol};
use tern_runtime::{Cidr, InstanceManager, PrivateAllow, PrivateNetwork};
use tern_store::{StoreError, StoreHandle};
use tokio::sync::Notify;

use crate::error::{stored, ServiceError};
use crate::functions::Caller;
use crate::now_ms;

/// How often a server reads the networks back from the store.
pub const SYNC_EVERY: Duration = Duration::from_secs(5);

/// A network as the API takes and gives it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct NetworkBody {
    #[serde(default)]
    pub name: String,
    /// The address ranges it covers, `a.b.c.d/n`.
    pub cidrs: Vec<String>,
    /// What attached functions may reach: `HOST[/N][:PORT[-PORT]][/tcp|/udp]`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Namespaces whose functions may attach; empty: all.
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default, skip_deserializing)]
    pub last_modified: String,
}

impl NetworkBody {
    fn of(rec: &NetworkRecord) -> NetworkBody {
        NetworkBody {
            name: rec.name.clone(),
            cidrs: rec.cidrs.clone(),
            allow: rec.allow.iter().map(ToString::to_string).collect(),
            namespaces: rec.namespaces.clone(),
            last_modified: tern_core::timefmt::last_modified(rec.last_modified_ms),
        }
    }

    fn record(&self, name: &str) -> Result<NetworkRecord, ServiceError> {
        let allow = self
            .allow
            .iter()
            .map(|a| AllowRule::parse(a))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ServiceError::InvalidParameterValue)?;
        let rec = NetworkRecord {
            name: name.to_string(),
            cidrs: self.cidrs.clone(),
            allow,
            namespaces: self.namespaces.clone(),
            last_modified_ms: now_ms(),
        };
        rec.validate()
            .map_err(ServiceError::InvalidParameterValue)?;
        Ok(rec)
    }
}

pub struct NetworkService {
    store: StoreHandle,
    /// Wakes the sync loop after a change made here.
    changed: Arc<Notify>,
}

impl NetworkService {
    pub fn new(store: StoreHandle) -> NetworkService {
        NetworkService {
            store,
            changed: Arc::new(Notify::new()),
        }
    }

    /// Only the operator (keys of the `default` namespace) defines networks.
    fn operator(caller: &Caller) -> Result<(), ServiceError> {
        if caller.namespace == DEFAULT_NAMESPACE {
            Ok(())
        } else {
            Err(ServiceError::AccessDenied(
                "private networks are defined by the operator (keys of the default namespace)"
                    .into(),
            ))
        }
    }

    pub async fn create(
        &self,
        caller: &Caller,
        body: NetworkBody,
    ) -> Result<NetworkBody, ServiceError> {
        Self::operator(caller)?;
        let rec = body.record(&body.name)?;
        let to_store = rec.clone();
        stored(&self.store, move |s| {
            s.create_network(&to_store).map_err(|e| match e {
                StoreError::Conflict(m) => ServiceError::ResourceConflict(m),
                other => other.into(),
            })
        })
        .await?;
        tracing::info!(network = %rec.name, "network created");
        self.changed.notify_one();
        Ok(NetworkBody::of(&rec))
    }

    pub async fn update(
        &self,
        caller: &Caller,
        name: &str,
        body: NetworkBody,
    ) -> Result<NetworkBody, ServiceError> {
        Self::operator(caller)?;
        if !body.name.is_empty() && body.name != name {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Name {:?} differs from the network in the path ({name:?}); a network cannot be renamed",
                body.name
            )));
        }
        let rec = body.record(name)?;
        let to_store = rec.clone();
        let found = stored(&self.store, move |s| Ok(s.update_network(&to_store)?)).await?;
        if !found {
            return Err(not_found(name));
        }
        self.changed.notify_one();
        Ok(NetworkBody::of(&rec))
    }

    /// Networks the caller's functions may attach to (all, for the operator).
    pub async fn list(&self, caller: &Caller) -> Result<Vec<NetworkBody>, ServiceError> {
        let all = stored(&self.store, |s| Ok(s.list_networks()?)).await?;
        Ok(all
            .iter()
            .filter(|n| caller.namespace == DEFAULT_NAMESPACE || n.admits(&caller.namespace))
            .map(NetworkBody::of)
            .collect())
    }

    pub async fn get(&self, caller: &Caller, name: &str) -> Result<NetworkBody, ServiceError> {
        let owned = name.to_string();
        match stored(&self.store, move |s| Ok(s.get_network(&owned)?)).await? {
            Some(n) if caller.namespace == DEFAULT_NAMESPACE || n.admits(&caller.namespace) => {
                Ok(NetworkBody::of(&n))
            }
            _ => Err(not_found(name)),
        }
    }

    /// Deletes a network no function is attached to.
    pub async fn delete(&self, caller: &Caller, name: &str) -> Result<(), ServiceError> {
        Self::operator(caller)?;
        let owned = name.to_string();
        let users = stored(&self.store, move |s| {
            let mut users = Vec::new();
            let mut after: Option<(String, String)> = None;
            loop {
                let page = s.list_all_functions(
                    after.as_ref().map(|(n, f)| (n.as_str(), f.as_str())),
                    500,
                )?;
                let Some(last) = page.last() else { break };
                after = Some((last.namespace.clone(), last.name.clone()));
                users.extend(
                    page.iter()
                        .filter(|f| f.networks.contains(&owned))
                        .map(|f| format!("{}/{}", f.namespace, f.name)),
                );
            }
            Ok(users)
        })
        .await?;
        if !users.is_empty() {
            return Err(ServiceError::ResourceConflict(format!(
                "network {name:?} has functions attached: {}",
                users.join(", ")
            )));
        }
        let owned = name.to_string();
        if !stored(&self.store, move |s| Ok(s.delete_network(&owned)?)).await? {
            return Err(not_found(name));
        }
        self.changed.notify_one();
        Ok(())
    }

    /// Reads the networks from the store and makes them `instances`' private networks.
    pub async fn sync(&self, instances: &InstanceManager) -> Result<(), ServiceError> {
        let all = stored(&self.store, |s| Ok(s.list_networks()?)).await?;
        apply(instances, &all)
    }

    /// Keeps `instances`' egress policy in step with the stored networks for the
    /// server's life: after each change made here, and every [`SYNC_EVERY`] (a change
    /// made through another server). Only a list that differs from the last one applied
    /// is applied again.
    pub fn spawn_sync(self: &Arc<Self>, instances: Arc<InstanceManager>) {
        let service = self.clone();
        tokio::spawn(async move {
            let mut applied: Option<Vec<NetworkRecord>> = None;
            loop {
                tokio::select! {
                    () = service.changed.notified() => {}
                    () = tokio::time::sleep(SYNC_EVERY) => {}
                }
                let all = match stored(&service.store, |s| Ok(s.list_networks()?)).await {
                    Ok(all) => all,
                    Err(e) => {
                        tracing::warn!(error = %e, "could not read the private networks");
                        continue;
                    }
                };
                if applied.as_ref() == Some(&all) {
                    continue;
                }
                match apply(&instances, &all) {
                    Ok(()) => applied = Some(all),
                    Err(e) => tracing::warn!(error = %e, "could not apply the private networks"),
                }
            }
        });
    }
}

/// Makes `all` the private networks of `instances`' launcher.
fn apply(instances: &InstanceManager, all: &[NetworkRecord]) -> Result<(), ServiceError> {
    let networks: Vec<PrivateNetwork> = all.iter().map(private_network).collect();
    instances
        .set_private_networks(&networks)
        .map_err(ServiceError::Service)
}

fn not_found(name: &str) -> ServiceError {
    ServiceError::ResourceNotFound(format!("Network not found: {name}"))
}

/// What the launcher needs of a stored network.
fn private_network(rec: &NetworkRecord) -> PrivateNetwork {
    PrivateNetwork {
        name: rec.name.clone(),
        allow: rec
            .allow
            .iter()
            .map(|a| PrivateAllow {
                dest: Cidr::new(a.addr, a.prefix),
                udp: a.protocol == Protocol::Udp,
                ports: (a.from_port, a.to_port),
            })
            .collect(),
    }
}
