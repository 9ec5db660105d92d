//! Function URLs: one per qualifier, found by id, updated in place, deleted one or all,
//! and gone with their function.

use tern_core::function_url::{AuthType, Cors, FunctionUrlRecord, InvokeMode};
use tern_store::{Store, StoreError};

use crate::support::function;

pub fn url(id: &str, ns: &str, f: &str, qualifier: &str) -> FunctionUrlRecord {
    FunctionUrlRecord {
        url_id: format!("{id:a<32}"),
        namespace: ns.into(),
        function: f.into(),
        qualifier: qualifier.into(),
        auth_type: AuthType::None,
        cors: None,
        invoke_mode: InvokeMode::Buffered,
        creation_ms: 1,
        last_modified_ms: 1,
    }
}

pub fn urls_are_found_by_qualifier_and_by_id(store: &dyn Store) {
    let latest = url("one", "team", "f", "$LATEST");
    store.create_function_url(&latest).unwrap();
    assert_eq!(
        store.get_function_url("team", "f", "$LATEST").unwrap(),
        Some(latest.clone())
    );
    assert_eq!(
        store.get_function_url_by_id(&latest.url_id).unwrap(),
        Some(latest.clone())
    );
    assert_eq!(store.get_function_url("team", "f", "live").unwrap(), None);
    assert_eq!(
        store.get_function_url("other", "f", "$LATEST").unwrap(),
        None
    );
    assert_eq!(store.get_function_url_by_id(&"b".repeat(32)).unwrap(), None);
}

pub fn a_second_url_for_one_qualifier_conflicts(store: &dyn Store) {
    store
        .create_function_url(&url("one", "team", "f", "$LATEST"))
        .unwrap();
    let again = store.create_function_url(&url("two", "team", "f", "$LATEST"));
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(
        store
            .get_function_url_by_id(&url("two", "", "", "").url_id)
            .unwrap(),
        None,
        "nothing of the second is stored"
    );
    // Another qualifier, or another namespace's function of the same name, is fine.
    store
        .create_function_url(&url("three", "team", "f", "live"))
        .unwrap();
    store
        .create_function_url(&url("four", "other", "f", "$LATEST"))
        .unwrap();
}

pub fn an_update_keeps_the_id_and_replaces_the_rest(store: &dyn Store) {
    let missing = url("one", "team", "f", "$LATEST");
    assert!(!store.update_function_url(&missing).unwrap());
    assert_eq!(
        store.get_function_url("team", "f", "$LATEST").unwrap(),
        None
    );
    store.create_function_url(&missing).unwrap();
    let changed = FunctionUrlRecord {
        url_id: "c".repeat(32),
        auth_type: AuthType::AwsIam,
        cors: Some(Cors {
            allow_origins: Some(vec!["https://example.com".into()]),
            max_age: Some(60),
            ..Cors::default()
        }),
        last_modified_ms: 2,
        ..missing.clone()
    };
    assert!(store.update_function_url(&changed).unwrap());
    let stored = store
        .get_function_url("team", "f", "$LATEST")
        .unwrap()
        .unwrap();
    assert_eq!(stored.url_id, missing.url_id, "the id never changes");
    assert_eq!(
        stored,
        FunctionUrlRecord {
            url_id: missing.url_id.clone(),
            ..changed
        }
    );
    assert_eq!(store.get_function_url_by_id(&"c".repeat(32)).unwrap(), None);
}

pub fn urls_are_listed_by_qualifier_and_deleted_one_or_all(store: &dyn Store) {
    for (id, q) in [("x", "live"), ("y", "$LATEST"), ("z", "blue")] {
        store.create_function_url(&url(id, "team", "f", q)).unwrap();
    }
    store
        .create_function_url(&url("w", "team", "g", "$LATEST"))
        .unwrap();
    let qualifiers = |store: &dyn Store| -> Vec<String> {
        store
            .list_function_urls("team", "f")
            .unwrap()
            .into_iter()
            .map(|u| u.qualifier)
            .collect()
    };
    assert_eq!(qualifiers(store), ["$LATEST", "blue", "live"]);
    assert_eq!(
        store
            .delete_function_urls("team", "f", Some("blue"))
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .delete_function_urls("team", "f", Some("blue"))
            .unwrap(),
        0
    );
    assert_eq!(qualifiers(store), ["$LATEST", "live"]);
    assert_eq!(store.delete_function_urls("team", "f", None).unwrap(), 2);
    assert!(qualifiers(store).is_empty());
    assert_eq!(
        store.list_function_urls("team", "g").unwrap().len(),
        1,
        "another function's URL stays"
    );
}

pub fn deleting_the_function_deletes_its_urls(store: &dyn Store) {
    store.create_function(&function("team", "f", 10)).unwrap();
    let u = url("one", "team", "f", "$LATEST");
    store.create_function_url(&u).unwrap();
    store
        .create_function_url(&url("two", "team", "f", "live"))
        .unwrap();
    store
        .create_function_url(&url("three", "team", "g", "$LATEST"))
        .unwrap();
    assert!(store.delete_function("team", "f").unwrap());
    assert!(store.list_function_urls("team", "f").unwrap().is_empty());
    assert_eq!(store.get_function_url_by_id(&u.url_id).unwrap(), None);
    assert_eq!(store.list_function_urls("team", "g").unwrap().len(), 1);
}
