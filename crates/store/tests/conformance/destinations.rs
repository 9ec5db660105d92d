//! Event-invoke configurations and the tern-managed queues that destinations write to.

use tern_store::{EventInvokeConfigRow, QueueMessage, Store};

use crate::support::T0;

fn config(function: &str, qualifier: &str, retries: u32) -> EventInvokeConfigRow {
    EventInvokeConfigRow {
        namespace: "default".into(),
        function: function.into(),
        qualifier: qualifier.into(),
        config: format!("{{\"MaximumRetryAttempts\":{retries}}}"),
        last_modified_ms: T0 + i64::from(retries),
    }
}

pub fn event_invoke_configs_are_upserted_per_qualifier(store: &dyn Store) {
    assert_eq!(
        store
            .get_event_invoke_config("default", "f", "$LATEST")
            .unwrap(),
        None
    );
    store
        .put_event_invoke_config(&config("f", "$LATEST", 2))
        .unwrap();
    store
        .put_event_invoke_config(&config("f", "live", 1))
        .unwrap();
    store
        .put_event_invoke_config(&config("g", "$LATEST", 0))
        .unwrap();
    store
        .put_event_invoke_config(&config("f", "$LATEST", 0))
        .unwrap();
    assert_eq!(
        store
            .get_event_invoke_config("default", "f", "$LATEST")
            .unwrap(),
        Some(config("f", "$LATEST", 0))
    );
    assert_eq!(
        store
            .get_event_invoke_config("other", "f", "$LATEST")
            .unwrap(),
        None
    );

    assert!(store
        .delete_event_invoke_config("default", "f", "live")
        .unwrap());
    assert!(!store
        .delete_event_invoke_config("default", "f", "live")
        .unwrap());
    assert_eq!(
        store
            .get_event_invoke_config("default", "f", "live")
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .get_event_invoke_config("default", "g", "$LATEST")
            .unwrap(),
        Some(config("g", "$LATEST", 0))
    );
}

pub fn event_invoke_configs_are_listed_by_qualifier(store: &dyn Store) {
    for qualifier in ["prod", "$LATEST", "7", "10"] {
        store
            .put_event_invoke_config(&config("f", qualifier, 1))
            .unwrap();
    }
    store
        .put_event_invoke_config(&config("g", "prod", 1))
        .unwrap();
    let listed: Vec<String> = store
        .list_event_invoke_configs("default", "f")
        .unwrap()
        .into_iter()
        .map(|c| c.qualifier)
        .collect();
    assert_eq!(listed, ["$LATEST", "10", "7", "prod"]);
    assert_eq!(
        store.list_event_invoke_configs("default", "g").unwrap(),
        [config("g", "prod", 1)]
    );
    assert!(store
        .list_event_invoke_configs("default", "h")
        .unwrap()
        .is_empty());
}

fn bodies(messages: &[QueueMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.body.as_str()).collect()
}

pub fn queue_messages_are_read_and_deleted_by_id(store: &dyn Store) {
    let ids: Vec<i64> = (0..5)
        .map(|i| {
            store
                .push_queue_message("default", "q", &format!("m{i}"), T0 + i)
                .unwrap()
        })
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "increasing ids: {ids:?}"
    );

    let all = store.read_queue_messages("default", "q", 0, 100).unwrap();
    assert_eq!(bodies(&all), ["m0", "m1", "m2", "m3", "m4"]);
    assert_eq!(
        all[1],
        QueueMessage {
            id: ids[1],
            namespace: "default".into(),
            queue: "q".into(),
            body: "m1".into(),
            ts_ms: T0 + 1,
        }
    );
    let page = store
        .read_queue_messages("default", "q", ids[1], 2)
        .unwrap();
    assert_eq!(bodies(&page), ["m2", "m3"]);
    assert!(store
        .read_queue_messages("default", "q", ids[4], 10)
        .unwrap()
        .is_empty());

    assert_eq!(
        store.delete_queue_messages("default", "q", ids[2]).unwrap(),
        3
    );
    assert_eq!(
        store.delete_queue_messages("default", "q", ids[2]).unwrap(),
        0
    );
    let left = store.read_queue_messages("default", "q", 0, 100).unwrap();
    assert_eq!(bodies(&left), ["m3", "m4"]);

    // Ids keep increasing after a delete.
    let next = store
        .push_queue_message("default", "q", "m5", T0 + 5)
        .unwrap();
    assert!(next > ids[4]);
}

pub fn queues_are_kept_apart_per_namespace_and_name(store: &dyn Store) {
    let mut last = 0;
    for (ns, queue, body) in [
        ("default", "q", "d-q-1"),
        ("default", "r", "d-r-1"),
        ("other", "q", "o-q-1"),
        ("default", "q", "d-q-2"),
    ] {
        last = store.push_queue_message(ns, queue, body, T0).unwrap();
    }
    let read = |ns, queue| {
        let messages = store.read_queue_messages(ns, queue, 0, 100).unwrap();
        bodies(&messages)
            .iter()
            .map(|b| b.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(read("default", "q"), ["d-q-1", "d-q-2"]);
    assert_eq!(read("default", "r"), ["d-r-1"]);
    assert_eq!(read("other", "q"), ["o-q-1"]);

    assert_eq!(
        store.delete_queue_messages("default", "q", last).unwrap(),
        2
    );
    assert!(read("default", "q").is_empty());
    assert_eq!(read("default", "r"), ["d-r-1"]);
    assert_eq!(read("other", "q"), ["o-q-1"]);
}
