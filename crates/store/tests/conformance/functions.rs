//! Function records: create, optimistic update, list pages, usage, and delete taking
//! the function's settings with it.

use tern_store::{EventInvokeConfigRow, ProvisionedSetting, Settle, Store, StoreError};

use crate::support::{attempt, claim_and_settle, enqueue, function, LONG_LEASE, T0};

fn names(page: &[tern_core::function::FunctionRecord]) -> Vec<String> {
    page.iter()
        .map(|r| format!("{}/{}", r.namespace, r.name))
        .collect()
}

pub fn create_conflicts_with_an_existing_name(store: &dyn Store) {
    let rec = function("default", "a", 10);
    store.create_function(&rec).unwrap();
    assert!(matches!(
        store.create_function(&function("default", "a", 99)),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_function("default", "a").unwrap(), Some(rec));
    // The same name in another namespace is another function.
    store.create_function(&function("other", "a", 10)).unwrap();
}

pub fn update_with_a_stale_revision_conflicts(store: &dyn Store) {
    store
        .create_function(&function("default", "a", 10))
        .unwrap();
    let mut next = function("default", "a", 20);
    next.revision_id = "r2".into();
    next.revision = 2;
    store.update_function(&next, "r1").unwrap();
    assert_eq!(
        store.get_function("default", "a").unwrap(),
        Some(next.clone())
    );

    let mut stale = function("default", "a", 30);
    stale.revision_id = "r3".into();
    assert!(matches!(
        store.update_function(&stale, "r1"),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_function("default", "a").unwrap(), Some(next));
    assert_eq!(store.usage("default").unwrap(), (1, 20));

    // Updating a function that is not there creates nothing.
    assert!(matches!(
        store.update_function(&function("default", "ghost", 1), "r1"),
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.get_function("default", "ghost").unwrap(), None);
}

pub fn get_and_delete_say_whether_the_function_exists(store: &dyn Store) {
    assert_eq!(store.get_function("default", "a").unwrap(), None);
    assert!(!store.delete_function("default", "a").unwrap());
    store
        .create_function(&function("default", "a", 10))
        .unwrap();
    store.create_function(&function("other", "a", 10)).unwrap();
    assert!(store.delete_function("default", "a").unwrap());
    assert_eq!(store.get_function("default", "a").unwrap(), None);
    assert!(!store.delete_function("default", "a").unwrap());
    assert!(store.get_function("other", "a").unwrap().is_some());
    // A deleted name can be created again.
    store
        .create_function(&function("default", "a", 10))
        .unwrap();
}

pub fn list_pages_by_name_after_a_marker(store: &dyn Store) {
    for name in ["c", "a", "d", "b"] {
        store
            .create_function(&function("default", name, 10))
            .unwrap();
    }
    store.create_function(&function("other", "aa", 10)).unwrap();
    let page = |after, limit| names(&store.list_functions("default", after, limit).unwrap());
    assert_eq!(page(None, 2), ["default/a", "default/b"]);
    assert_eq!(page(Some("b"), 2), ["default/c", "default/d"]);
    assert_eq!(page(Some("d"), 2), Vec::<String>::new());
    // The marker need not be a function that exists.
    assert_eq!(page(Some("bb"), 10), ["default/c", "default/d"]);
    assert_eq!(page(None, 10).len(), 4);
    assert!(store.list_functions("empty", None, 10).unwrap().is_empty());
}

pub fn list_orders_names_bytewise(store: &dyn Store) {
    for name in ["ab", "a_b", "B", "a-b", "a"] {
        store
            .create_function(&function("default", name, 1))
            .unwrap();
    }
    let page = names(&store.list_functions("default", None, 10).unwrap());
    assert_eq!(
        page,
        [
            "default/B",
            "default/a",
            "default/a-b",
            "default/a_b",
            "default/ab"
        ]
    );
    let rest = names(&store.list_functions("default", Some("a-b"), 10).unwrap());
    assert_eq!(rest, ["default/a_b", "default/ab"]);
}

pub fn list_all_orders_by_namespace_then_name(store: &dyn Store) {
    for (ns, name) in [
        ("zeta", "a"),
        ("default", "b"),
        ("default", "a"),
        ("alpha", "z"),
    ] {
        store.create_function(&function(ns, name, 10)).unwrap();
    }
    let first = store.list_all_functions(None, 3).unwrap();
    assert_eq!(names(&first), ["alpha/z", "default/a", "default/b"]);
    let rest = store.list_all_functions(Some(("default", "b")), 3).unwrap();
    assert_eq!(names(&rest), ["zeta/a"]);
    // A marker's name orders only within its namespace.
    let after_alpha = store.list_all_functions(Some(("alpha", "zz")), 10).unwrap();
    assert_eq!(names(&after_alpha), ["default/a", "default/b", "zeta/a"]);
    assert!(store
        .list_all_functions(Some(("zeta", "a")), 3)
        .unwrap()
        .is_empty());
}

pub fn usage_counts_functions_and_zipped_code_of_a_namespace(store: &dyn Store) {
    assert_eq!(store.usage("default").unwrap(), (0, 0));
    store
        .create_function(&function("default", "a", 100))
        .unwrap();
    store
        .create_function(&function("default", "b", 23))
        .unwrap();
    store
        .create_function(&function("other", "c", 1000))
        .unwrap();
    assert_eq!(store.usage("default").unwrap(), (2, 123));
    assert_eq!(store.usage("other").unwrap(), (1, 1000));
    store.delete_function("default", "a").unwrap();
    assert_eq!(store.usage("default").unwrap(), (1, 23));
}

fn invoke_config(function: &str, qualifier: &str) -> EventInvokeConfigRow {
    EventInvokeConfigRow {
        namespace: "default".into(),
        function: function.into(),
        qualifier: qualifier.into(),
        config: "{\"MaximumRetryAttempts\":1}".into(),
        last_modified_ms: T0,
    }
}

fn provisioned(function: &str) -> ProvisionedSetting {
    ProvisionedSetting {
        namespace: "default".into(),
        function: function.into(),
        qualifier: "live".into(),
        requested: 2,
        last_modified_ms: T0,
    }
}

pub fn delete_takes_the_settings_and_the_events(store: &dyn Store) {
    for name in ["f", "g"] {
        store
            .create_function(&function("default", name, 10))
            .unwrap();
        store
            .put_reserved_concurrency("default", name, Some(3))
            .unwrap();
        store.put_provisioned(&provisioned(name)).unwrap();
        for qualifier in ["$LATEST", "live"] {
            store
                .put_event_invoke_config(&invoke_config(name, qualifier))
                .unwrap();
        }
    }
    enqueue(store, &[("dead", T0), ("queued", T0 + 100)]);
    claim_and_settle(
        store,
        "dead",
        "d",
        T0,
        Some(&attempt(T0, "function_error")),
        &Settle::Failed {
            dead_letter: true,
            response: None,
        },
    );

    assert!(store.delete_function("default", "f").unwrap());

    assert_eq!(
        store.list_reserved_concurrency().unwrap(),
        [("default".to_string(), "g".to_string(), 3)]
    );
    assert_eq!(store.list_provisioned().unwrap(), [provisioned("g")]);
    assert_eq!(store.get_provisioned("default", "f", "live").unwrap(), None);
    assert!(store
        .list_event_invoke_configs("default", "f")
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .get_event_invoke_config("default", "f", "$LATEST")
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .list_event_invoke_configs("default", "g")
            .unwrap()
            .len(),
        2
    );

    // Its events go with it: a function created later under the name runs none.
    assert_eq!(store.get_event("queued").unwrap(), None);
    assert_eq!(store.get_event("dead").unwrap(), None);
    assert!(store
        .list_dead_letters("default", "f", None, 10)
        .unwrap()
        .is_empty());
    assert!(store
        .claim_events("o", T0 + 10_000, LONG_LEASE, 10, &[])
        .unwrap()
        .is_empty());
}
