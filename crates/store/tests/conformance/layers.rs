//! Layer versions: numbering, lookup by the account in an ARN, listing, delete, and
//! the permission policy under its revision.

use tern_core::layer::LayerStatement;
use tern_store::{Store, StoreError};

use crate::support::layer;

const ACCOUNT: &str = "123456789012";

fn publish(store: &dyn Store, namespace: &str, name: &str) -> u64 {
    let rec = layer(namespace, ACCOUNT, name);
    let stored = store.publish_layer_version(&rec, "rev0").unwrap();
    assert_eq!(
        stored,
        tern_core::layer::LayerVersionRecord {
            version: stored.version,
            ..rec
        }
    );
    stored.version
}

fn statement(id: &str, principal: &str) -> LayerStatement {
    LayerStatement {
        statement_id: id.into(),
        action: "lambda:GetLayerVersion".into(),
        principal: principal.into(),
    }
}

pub fn publish_numbers_versions_without_reusing_deleted_ones(store: &dyn Store) {
    // The version given is ignored.
    let mut rec = layer("default", ACCOUNT, "deps");
    rec.version = 42;
    assert_eq!(
        store.publish_layer_version(&rec, "rev0").unwrap().version,
        1
    );
    assert_eq!(publish(store, "default", "deps"), 2);
    assert!(store.delete_layer_version("default", "deps", 2).unwrap());
    assert_eq!(publish(store, "default", "deps"), 3);
    for version in [1, 3] {
        assert!(store
            .delete_layer_version("default", "deps", version)
            .unwrap());
    }
    assert_eq!(publish(store, "default", "deps"), 4);
    // Numbering is per (namespace, name).
    assert_eq!(publish(store, "default", "other"), 1);
    assert_eq!(publish(store, "elsewhere", "deps"), 1);
}

pub fn get_finds_a_version_by_its_account(store: &dyn Store) {
    let rec = layer("default", ACCOUNT, "deps");
    let stored = store.publish_layer_version(&rec, "rev-a").unwrap();
    let got = store
        .get_layer_version(ACCOUNT, "deps", stored.version)
        .unwrap()
        .expect("published version");
    assert_eq!(got.record, stored);
    assert!(got.statements.is_empty());
    assert_eq!(got.policy_revision, "rev-a");

    assert!(store
        .get_layer_version("999999999999", "deps", stored.version)
        .unwrap()
        .is_none());
    assert!(store
        .get_layer_version(ACCOUNT, "deps", stored.version + 1)
        .unwrap()
        .is_none());
    assert!(store
        .get_layer_version(ACCOUNT, "nope", 1)
        .unwrap()
        .is_none());
}

pub fn list_gives_layers_by_name_newest_version_first(store: &dyn Store) {
    for name in ["b", "a", "b", "a", "a"] {
        publish(store, "default", name);
    }
    publish(store, "other", "a");
    let listed = |name| -> Vec<(String, u64)> {
        store
            .list_layer_versions("default", name)
            .unwrap()
            .into_iter()
            .map(|r| (r.name, r.version))
            .collect()
    };
    let v = |name: &str, version| (name.to_string(), version);
    assert_eq!(
        listed(None),
        [v("a", 3), v("a", 2), v("a", 1), v("b", 2), v("b", 1)]
    );
    assert_eq!(listed(Some("b")), [v("b", 2), v("b", 1)]);
    assert!(listed(Some("c")).is_empty());
    assert!(store.list_layer_versions("empty", None).unwrap().is_empty());
}

pub fn delete_removes_one_version(store: &dyn Store) {
    publish(store, "default", "deps");
    publish(store, "default", "deps");
    assert!(!store.delete_layer_version("default", "deps", 3).unwrap());
    assert!(!store.delete_layer_version("other", "deps", 1).unwrap());
    assert!(store.delete_layer_version("default", "deps", 1).unwrap());
    assert!(!store.delete_layer_version("default", "deps", 1).unwrap());
    assert!(store
        .get_layer_version(ACCOUNT, "deps", 1)
        .unwrap()
        .is_none());
    let left = store.list_layer_versions("default", None).unwrap();
    assert_eq!(left.iter().map(|r| r.version).collect::<Vec<_>>(), [2]);
}

pub fn layer_policy_is_replaced_only_under_its_current_revision(store: &dyn Store) {
    let version = publish(store, "default", "deps");
    let first = [statement("all", "*"), statement("one", ACCOUNT)];
    store
        .put_layer_policy("default", "deps", version, &first, "rev0", "rev1")
        .unwrap();
    let got = store
        .get_layer_version(ACCOUNT, "deps", version)
        .unwrap()
        .unwrap();
    assert_eq!(got.statements, first);
    assert_eq!(got.policy_revision, "rev1");

    // A writer that read rev0 lost the race.
    let stale = [statement("late", "*")];
    assert!(matches!(
        store.put_layer_policy("default", "deps", version, &stale, "rev0", "rev2"),
        Err(StoreError::Conflict(_))
    ));
    let got = store
        .get_layer_version(ACCOUNT, "deps", version)
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.statements, got.policy_revision.as_str()),
        (first.to_vec(), "rev1")
    );

    store
        .put_layer_policy("default", "deps", version, &[], "rev1", "rev2")
        .unwrap();
    let got = store
        .get_layer_version(ACCOUNT, "deps", version)
        .unwrap()
        .unwrap();
    assert!(got.statements.is_empty());

    // A deleted version has no policy to replace.
    store
        .delete_layer_version("default", "deps", version)
        .unwrap();
    assert!(matches!(
        store.put_layer_policy("default", "deps", version, &first, "rev2", "rev3"),
        Err(StoreError::Conflict(_))
    ));
}
