//! In-memory cache of function records, published versions and aliases (DESIGN D5:
//! no database query on the warm path). Every write goes through
//! [`crate::functions::FunctionService`], which updates it.
//!
//! A published version never changes, so it is kept until deleted. An alias is
//! re-read from the store once it is [`ALIAS_TTL`] old, so that a weight or a rollback
//! set through another server on the same database takes effect here too.
//!
//! A record read from the store is cached only if no write or delete went through the
//! registry while it was being read ([`Registry::generation`]); otherwise a read that
//! started before a delete (or an update) and finished after it would put the old
//! record back, and this server would serve a deleted version or alias, or an old
//! `$LATEST`, until restarted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tern_core::function::{AliasRecord, FunctionRecord, LATEST};
use tern_store::StoreHandle;

use crate::error::ServiceError;

/// How long an alias read from the store is used before it is read again.
pub const ALIAS_TTL: Duration = Duration::from_secs(2);

type VersionKey = (String, String, u64);
type AliasKey = (String, String, String);

pub struct Registry {
    store: StoreHandle,
    cache: RwLock<HashMap<(String, String), Arc<FunctionRecord>>>,
    versions: RwLock<HashMap<VersionKey, Arc<FunctionRecord>>>,
    aliases: RwLock<HashMap<AliasKey, (Instant, Arc<AliasRecord>)>>,
    /// Bumped by every put and remove before it changes a map.
    generation: AtomicU64,
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// What a qualifier names.
enum Qualifier<'a> {
    Latest,
    Version(u64),
    Alias(&'a str),
}

fn classify(qualifier: Option<&str>) -> Qualifier<'_> {
    match qualifier {
        None | Some(LATEST) => Qualifier::Latest,
        Some(q) => match q.parse::<u64>() {
            Ok(n) if q.bytes().all(|b| b.is_ascii_digit()) => Qualifier::Version(n),
            _ => Qualifier::Alias(q),
        },
    }
}

impl Registry {
    /// The record a qualifier names: `$LATEST` (no qualifier), a published version, or
    /// an alias's version. With `roll` (uniform in [0, 1)) an alias with a weighted
    /// second version picks between the two; without it, its primary version.
    pub async fn resolve(
        &self,
        namespace: &str,
        name: &str,
        qualifier: Option<&str>,
        roll: Option<f64>,
    ) -> Result<Option<Arc<FunctionRecord>>, ServiceError> {
        let version = match classify(qualifier) {
            Qualifier::Latest => return self.get(namespace, name).await,
            Qualifier::Version(n) => n,
            Qualifier::Alias(alias) => {
                let Some(alias) = self.alias(namespace, name, alias).await? else {
                    return Ok(None);
                };
                let picked = match roll {
                    Some(r) => alias.pick(r),
                    None => &alias.function_version,
                };
                match classify(Some(picked)) {
                    Qualifier::Version(n) => n,
                    Qualifier::Latest => return self.get(namespace, name).await,
                    Qualifier::Alias(_) => return Ok(None),
                }
            }
        };
        self.version(namespace, name, version).await
    }

    pub fn new(store: StoreHandle) -> Self {
        Registry {
            store,
            cache: RwLock::new(HashMap::new()),
            versions: RwLock::new(HashMap::new()),
            aliases: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// Taken before a store read; the read is cached only if it is unchanged after.
    fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Caches `value` read from the store if nothing changed since `seen`. (A writer
    /// bumps first, so either this sees the bump or the writer's change lands after.)
    fn cache_loaded<K: std::hash::Hash + Eq, V>(
        &self,
        map: &RwLock<HashMap<K, V>>,
        seen: u64,
        key: K,
        value: V,
    ) {
        let mut map = write(map);
        if self.generation() == seen {
            map.insert(key, value);
        }
    }

    /// A published version, from cache or (once) from the store.
    pub async fn version(
        &self,
        namespace: &str,
        name: &str,
        version: u64,
    ) -> Result<Option<Arc<FunctionRecord>>, ServiceError> {
        let key = (namespace.to_string(), name.to_string(), version);
        if let Some(rec) = read(&self.versions).get(&key) {
            return Ok(Some(rec.clone()));
        }
        let (ns, n) = (key.0.clone(), key.1.clone());
        let seen = self.generation();
        let loaded = crate::error::stored(&self.store, move |store| {
            Ok(store.get_version(&ns, &n, version)?)
        })
        .await?;
        Ok(loaded.map(|rec| {
            let rec = Arc::new(rec);
            self.cache_loaded(&self.versions, seen, key, rec.clone());
            rec
        }))
    }

    pub fn put_version(&self, rec: FunctionRecord) {
        if let Some(n) = rec.version_number() {
            let key = (rec.namespace.clone(), rec.name.clone(), n);
            self.bump();
            write(&self.versions).insert(key, Arc::new(rec));
        }
    }

    pub fn remove_version(&self, namespace: &str, name: &str, version: u64) {
        self.bump();
        write(&self.versions).remove(&(namespace.to_string(), name.to_string(), version));
    }

    /// An alias, from cache (while younger than [`ALIAS_TTL`]) or from the store.
    pub async fn alias(
        &self,
        namespace: &str,
        function: &str,
        name: &str,
    ) -> Result<Option<Arc<AliasRecord>>, ServiceError> {
        let key = (
            namespace.to_string(),
            function.to_string(),
            name.to_string(),
        );
        if let Some((at, alias)) = read(&self.aliases).get(&key) {
            if at.elapsed() < ALIAS_TTL {
                return Ok(Some(alias.clone()));
            }
        }
        let (ns, f, a) = key.clone();
        let seen = self.generation();
        let loaded =
            crate::error::stored(&self.store, move |store| Ok(store.get_alias(&ns, &f, &a)?))
                .await?;
        Ok(match loaded {
            Some(alias) => {
                let alias = Arc::new(alias);
                self.cache_loaded(&self.aliases, seen, key, (Instant::now(), alias.clone()));
                Some(alias)
            }
            None => {
                write(&self.aliases).remove(&key);
                None
            }
        })
    }

    pub fn put_alias(&self, alias: AliasRecord) {
        let key = (
            alias.namespace.clone(),
            alias.function.clone(),
            alias.name.clone(),
        );
        self.bump();
        write(&self.aliases).insert(key, (Instant::now(), Arc::new(alias)));
    }

    pub fn remove_alias(&self, namespace: &str, function: &str, name: &str) {
        self.bump();
        write(&self.aliases).remove(&(
            namespace.to_string(),
            function.to_string(),
            name.to_string(),
        ));
    }

    /// The current record, from cache or (once) from the store.
    pub async fn get(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Arc<FunctionRecord>>, ServiceError> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(rec) = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(Some(rec.clone()));
        }
        let (ns, n) = key.clone();
        let seen = self.generation();
        let loaded =
            crate::error::stored(&self.store, move |store| Ok(store.get_function(&ns, &n)?))
                .await?;
        Ok(loaded.map(|rec| {
            let rec = Arc::new(rec);
            self.cache_loaded(&self.cache, seen, key, rec.clone());
            rec
        }))
    }

    pub fn put(&self, rec: FunctionRecord) {
        let key = (rec.namespace.clone(), rec.name.clone());
        self.bump();
        write(&self.cache).insert(key, Arc::new(rec));
    }

    /// Forgets a function with its versions and aliases.
    pub fn remove(&self, namespace: &str, name: &str) {
        self.bump();
        write(&self.cache).remove(&(namespace.to_string(), name.to_string()));
        write(&self.versions).retain(|(ns, n, _), _| ns != namespace || n != name);
        write(&self.aliases).retain(|(ns, f, _), _| ns != namespace || f != name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_qualifier_is_latest_a_version_number_or_an_alias() {
        assert!(matches!(classify(None), Qualifier::Latest));
        assert!(matches!(classify(Some("$LATEST")), Qualifier::Latest));
        assert!(matches!(classify(Some("12")), Qualifier::Version(12)));
        assert!(matches!(classify(Some("+12")), Qualifier::Alias("+12")));
        assert!(matches!(classify(Some("live")), Qualifier::Alias("live")));
        assert!(matches!(classify(Some("v2")), Qualifier::Alias("v2")));
    }

    fn registry() -> (tempfile::TempDir, Registry) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = tern_store::SqliteStore::open(&dir.path().join("db")).expect("store");
        let handle = StoreHandle::new(Arc::new(store), 1).expect("handle");
        (dir, Registry::new(handle))
    }

    // The interleaving a store read racing a delete can take: the read starts, the
    // delete commits and forgets the record, the read finishes and would cache it.
    #[test]
    fn a_read_that_straddles_a_delete_does_not_cache_what_was_deleted() {
        let (_dir, reg) = registry();
        let deletes: [&dyn Fn(&Registry); 3] = [
            &|r| r.remove_version("default", "f", 1),
            &|r| r.remove_alias("default", "f", "live"),
            &|r| r.remove("default", "f"),
        ];
        for delete in deletes {
            let loaded = RwLock::new(HashMap::new());
            let seen = reg.generation();
            delete(&reg);
            reg.cache_loaded(&loaded, seen, "key", "stale");
            assert!(read(&loaded).is_empty());
        }
        let loaded = RwLock::new(HashMap::new());
        let seen = reg.generation();
        reg.cache_loaded(&loaded, seen, "key", "fresh");
        assert_eq!(read(&loaded).get("key"), Some(&"fresh"));
    }
}
