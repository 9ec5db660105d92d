//! In-memory cache of function records (DESIGN D5: no database query on the warm path).
//! Every write goes through [`crate::functions::FunctionService`], which updates it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tern_core::function::FunctionRecord;
use tern_store::StoreHandle;

use crate::error::ServiceError;

pub struct Registry {
    store: StoreHandle,
    cache: RwLock<HashMap<(String, String), Arc<FunctionRecord>>>,
}

impl Registry {
    pub fn new(store: StoreHandle) -> Self {
        Registry {
            store,
            cache: RwLock::new(HashMap::new()),
        }
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
        let loaded =
            crate::error::stored(&self.store, move |store| Ok(store.get_function(&ns, &n)?))
                .await?;
        Ok(loaded.map(|rec| {
            let rec = Arc::new(rec);
            self.cache
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, rec.clone());
            rec
        }))
    }

    pub fn put(&self, rec: FunctionRecord) {
        let key = (rec.namespace.clone(), rec.name.clone());
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, Arc::new(rec));
    }

    pub fn remove(&self, namespace: &str, name: &str) {
        self.cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(namespace.to_string(), name.to_string()));
    }
}
