//! Published versions and aliases: numbering that never reuses a number, the
//! `$LATEST` revision precondition, aliases that only route to versions that exist,
//! and deletes that keep both sides consistent.

use std::collections::BTreeMap;

use tern_core::function::AliasRecord;
use tern_store::{Store, StoreError};

use crate::support::{function, release};

pub fn alias(name: &str, version: &str, weights: &[(&str, f64)]) -> AliasRecord {
    AliasRecord {
        namespace: "default".into(),
        function: "f".into(),
        name: name.into(),
        function_version: version.into(),
        description: String::new(),
        additional_weights: weights
            .iter()
            .map(|(v, w)| (v.to_string(), *w))
            .collect::<BTreeMap<_, _>>(),
        revision_id: format!("{name}-{version}"),
        history: Vec::new(),
        last_modified_ms: 1,
    }
}

pub fn publish_numbers_versions_from_one_and_never_reuses_a_number(store: &dyn Store) {
    let f = function("default", "f", 10);
    store.create_function(&f).unwrap();
    let v1 = store.publish_version(&release(&f), "r1").unwrap();
    let v2 = store.publish_version(&release(&f), "r1").unwrap();
    assert_eq!((v1.version.as_str(), v2.version.as_str()), ("1", "2"));
    assert_eq!(store.get_version("default", "f", 1).unwrap(), Some(v1));
    assert!(store.delete_version("default", "f", 2).unwrap());
    assert!(!store.delete_version("default", "f", 2).unwrap());
    let v3 = store.publish_version(&release(&f), "r1").unwrap();
    assert_eq!(v3.version, "3");
    let listed: Vec<String> = store
        .list_versions("default", "f", 0, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.version)
        .collect();
    assert_eq!(listed, ["1", "3"]);
    let after_one: Vec<String> = store
        .list_versions("default", "f", 1, 10)
        .unwrap()
        .into_iter()
        .map(|r| r.version)
        .collect();
    assert_eq!(after_one, ["3"]);
    assert_eq!(store.list_versions("default", "f", 0, 1).unwrap().len(), 1);
}

pub fn publish_against_a_stale_revision_or_a_missing_function_fails(store: &dyn Store) {
    let f = function("default", "f", 10);
    assert!(matches!(
        store.publish_version(&release(&f), "r1"),
        Err(StoreError::NotFound(_))
    ));
    store.create_function(&f).unwrap();
    assert!(matches!(
        store.publish_version(&f, "stale"),
        Err(StoreError::Precondition(_))
    ));
    assert!(store
        .list_versions("default", "f", 0, 10)
        .unwrap()
        .is_empty());
}

pub fn an_alias_routes_only_to_versions_that_exist(store: &dyn Store) {
    let f = function("default", "f", 10);
    store.create_function(&f).unwrap();
    store.publish_version(&release(&f), "r1").unwrap();
    assert!(matches!(
        store.create_alias(&alias("live", "2", &[])),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.create_alias(&alias("live", "1", &[("7", 0.1)])),
        Err(StoreError::NotFound(_))
    ));
    store.create_alias(&alias("live", "1", &[])).unwrap();
    store.create_alias(&alias("dev", "$LATEST", &[])).unwrap();
    assert!(matches!(
        store.create_alias(&alias("live", "1", &[])),
        Err(StoreError::Conflict(_))
    ));
    let mut other = alias("live", "1", &[]);
    other.function = "missing".into();
    assert!(matches!(
        store.create_alias(&other),
        Err(StoreError::NotFound(_))
    ));
    let names: Vec<String> = store
        .list_aliases("default", "f", None, 10)
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["dev", "live"]);
    let after: Vec<String> = store
        .list_aliases("default", "f", Some("dev"), 10)
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(after, ["live"]);
}

pub fn an_alias_update_needs_its_current_revision(store: &dyn Store) {
    let f = function("default", "f", 10);
    store.create_function(&f).unwrap();
    store.publish_version(&release(&f), "r1").unwrap();
    store.publish_version(&release(&f), "r1").unwrap();
    let live = alias("live", "1", &[]);
    store.create_alias(&live).unwrap();
    let mut next = alias("live", "2", &[("1", 0.25)]);
    next.history = vec!["1".into()];
    assert!(matches!(
        store.update_alias(&next, "stale"),
        Err(StoreError::Precondition(_))
    ));
    store.update_alias(&next, &live.revision_id).unwrap();
    assert_eq!(
        store.get_alias("default", "f", "live").unwrap(),
        Some(next.clone())
    );
    let mut missing = alias("live", "9", &[]);
    missing.revision_id = "x".into();
    assert!(matches!(
        store.update_alias(&missing, &next.revision_id),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.update_alias(&alias("nope", "1", &[]), "x"),
        Err(StoreError::NotFound(_))
    ));
}

pub fn a_version_an_alias_routes_to_cannot_be_deleted(store: &dyn Store) {
    let f = function("default", "f", 10);
    store.create_function(&f).unwrap();
    for _ in 0..3 {
        store.publish_version(&release(&f), "r1").unwrap();
    }
    store
        .create_alias(&alias("live", "1", &[("2", 0.1)]))
        .unwrap();
    assert!(matches!(
        store.delete_version("default", "f", 1),
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        store.delete_version("default", "f", 2),
        Err(StoreError::Conflict(_))
    ));
    assert!(store.delete_version("default", "f", 3).unwrap());
    assert!(store.delete_alias("default", "f", "live").unwrap());
    assert!(!store.delete_alias("default", "f", "live").unwrap());
    assert!(store.delete_version("default", "f", 1).unwrap());
}

pub fn deleting_the_function_takes_its_versions_and_aliases(store: &dyn Store) {
    let f = function("default", "f", 10);
    store.create_function(&f).unwrap();
    store.publish_version(&release(&f), "r1").unwrap();
    store.create_alias(&alias("live", "1", &[])).unwrap();
    assert!(store.delete_function("default", "f").unwrap());
    store.create_function(&f).unwrap();
    assert_eq!(store.get_version("default", "f", 1).unwrap(), None);
    assert_eq!(store.get_alias("default", "f", "live").unwrap(), None);
    // A function created again under the name starts its numbers again, as on Lambda.
    assert_eq!(
        store.publish_version(&release(&f), "r1").unwrap().version,
        "1"
    );
}

pub fn deleting_an_alias_takes_its_url_and_settings(store: &dyn Store) {
    let f = function("default", "f", 10);
    store.create_function(&f).unwrap();
    store.publish_version(&release(&f), "r1").unwrap();
    store.create_alias(&alias("live", "1", &[])).unwrap();
    store.create_alias(&alias("beta", "1", &[])).unwrap();
    let live_url = crate::urls::url("live", "default", "f", "live");
    let beta_url = crate::urls::url("beta", "default", "f", "beta");
    store.create_function_url(&live_url).unwrap();
    store.create_function_url(&beta_url).unwrap();
    assert!(store.delete_alias("default", "f", "live").unwrap());
    assert_eq!(
        store.get_function_url("default", "f", "live").unwrap(),
        None
    );
    assert_eq!(
        store.get_function_url("default", "f", "beta").unwrap(),
        Some(beta_url)
    );
}

pub fn a_function_holds_at_most_the_version_limit(store: &dyn Store) {
    let f = function("default", "f", 10);
    store.create_function(&f).unwrap();
    for _ in 0..tern_core::limits::VERSIONS_PER_FUNCTION {
        store.publish_version(&release(&f), "r1").unwrap();
    }
    assert!(matches!(
        store.publish_version(&release(&f), "r1"),
        Err(StoreError::LimitExceeded(_))
    ));
    // Deleting one makes room again; the number is still never reused.
    assert!(store.delete_version("default", "f", 1).unwrap());
    let next = store.publish_version(&release(&f), "r1").unwrap();
    assert_eq!(
        next.version,
        (tern_core::limits::VERSIONS_PER_FUNCTION + 1).to_string()
    );
}

pub fn publishing_what_the_newest_version_holds_returns_that_version(store: &dyn Store) {
    let f = function("default", "f", 10);
    store.create_function(&f).unwrap();
    let v1 = store.publish_version(&f, "r1").unwrap();
    let mut same = f.clone();
    same.description = "only the description differs".into();
    assert_eq!(store.publish_version(&same, "r1").unwrap(), v1);
    let v2 = store.publish_version(&release(&f), "r1").unwrap();
    assert_eq!(v2.version, "2");
    // Only the newest counts: going back to version 1's configuration is a new version.
    assert_eq!(store.publish_version(&f, "r1").unwrap().version, "3");
}

pub fn a_function_holds_at_most_the_alias_limit(store: &dyn Store) {
    let f = function("default", "f", 10);
    store.create_function(&f).unwrap();
    for n in 0..tern_core::limits::ALIASES_PER_FUNCTION {
        store
            .create_alias(&alias(&format!("a{n}"), "$LATEST", &[]))
            .unwrap();
    }
    assert!(matches!(
        store.create_alias(&alias("one-more", "$LATEST", &[])),
        Err(StoreError::LimitExceeded(_))
    ));
    assert!(store.delete_alias("default", "f", "a0").unwrap());
    store
        .create_alias(&alias("one-more", "$LATEST", &[]))
        .unwrap();
}
