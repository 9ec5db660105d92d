//! Private networks: create, conflict, update, list by name, delete.

use tern_core::network::{AllowRule, NetworkRecord};
use tern_store::{Store, StoreError};

fn network(name: &str, allow: &str) -> NetworkRecord {
    NetworkRecord {
        name: name.into(),
        cidrs: vec!["10.20.0.0/16".into()],
        allow: vec![AllowRule::parse(allow).unwrap()],
        namespaces: vec!["team-a".into()],
        last_modified_ms: 1,
    }
}

pub fn networks_are_created_listed_and_deleted(store: &dyn Store) {
    assert!(store.list_networks().unwrap().is_empty());
    store
        .create_network(&network("db", "10.20.0.5:5432"))
        .unwrap();
    store
        .create_network(&network("cache", "10.20.0.6:6379"))
        .unwrap();
    assert_eq!(
        store.get_network("db").unwrap(),
        Some(network("db", "10.20.0.5:5432"))
    );
    let names: Vec<String> = store
        .list_networks()
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["cache", "db"], "by name");
    assert!(store.delete_network("db").unwrap());
    assert!(!store.delete_network("db").unwrap(), "already gone");
    assert_eq!(store.get_network("db").unwrap(), None);
    assert_eq!(store.list_networks().unwrap().len(), 1);
}

pub fn creating_a_network_twice_conflicts(store: &dyn Store) {
    store
        .create_network(&network("db", "10.20.0.5:5432"))
        .unwrap();
    let again = store.create_network(&network("db", "10.20.0.7:5432"));
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(
        store.get_network("db").unwrap(),
        Some(network("db", "10.20.0.5:5432")),
        "the first is kept"
    );
}

pub fn an_update_replaces_an_existing_network_only(store: &dyn Store) {
    assert!(!store
        .update_network(&network("db", "10.20.0.5:5432"))
        .unwrap());
    assert_eq!(store.get_network("db").unwrap(), None, "nothing stored");
    store
        .create_network(&network("db", "10.20.0.5:5432"))
        .unwrap();
    let mut changed = network("db", "10.20.1.0/24:5432-5433");
    changed.namespaces.clear();
    changed.last_modified_ms = 2;
    assert!(store.update_network(&changed).unwrap());
    assert_eq!(store.get_network("db").unwrap(), Some(changed));
}
