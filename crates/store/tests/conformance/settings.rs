//! Access keys, meta values, function logs, and reserved and provisioned concurrency.

use tern_store::{AccessKey, LogLine, ProvisionedSetting, Store};

use crate::support::T0;

fn key(id: &str, secret: &str, namespace: &str) -> AccessKey {
    AccessKey {
        access_key_id: id.into(),
        secret: secret.into(),
        namespace: namespace.into(),
    }
}

pub fn access_keys_are_upserted(store: &dyn Store) {
    assert_eq!(store.get_access_key("AKIA1").unwrap(), None);
    store
        .put_access_key(&key("AKIA1", "s1", "default"))
        .unwrap();
    store.put_access_key(&key("AKIA2", "s2", "other")).unwrap();
    assert_eq!(
        store.get_access_key("AKIA1").unwrap(),
        Some(key("AKIA1", "s1", "default"))
    );
    store
        .put_access_key(&key("AKIA1", "rotated", "moved"))
        .unwrap();
    assert_eq!(
        store.get_access_key("AKIA1").unwrap(),
        Some(key("AKIA1", "rotated", "moved"))
    );
    assert_eq!(
        store.get_access_key("AKIA2").unwrap(),
        Some(key("AKIA2", "s2", "other"))
    );
}

pub fn meta_values_are_upserted(store: &dyn Store) {
    assert_eq!(store.get_meta("region").unwrap(), None);
    store.put_meta("region", "eu-west-1").unwrap();
    store.put_meta("account", "123456789012").unwrap();
    store.put_meta("region", "us-east-1").unwrap();
    assert_eq!(
        store.get_meta("region").unwrap().as_deref(),
        Some("us-east-1")
    );
    assert_eq!(
        store.get_meta("account").unwrap().as_deref(),
        Some("123456789012")
    );
}

fn log(function: &str, request_id: Option<&str>, ts_ms: i64) -> LogLine {
    LogLine {
        namespace: "default".into(),
        function: function.into(),
        request_id: request_id.map(Into::into),
        ts_ms,
        line: format!("line at {ts_ms}"),
    }
}

pub fn recent_logs_are_the_newest_lines_oldest_first(store: &dyn Store) {
    store
        .append_logs(&[
            log("f", Some("r1"), T0 + 1),
            log("f", Some("r2"), T0 + 2),
            log("g", Some("r2"), T0 + 3),
            log("f", None, T0 + 4),
        ])
        .unwrap();
    store
        .append_logs(&[log("f", Some("r2"), T0 + 5), log("f", Some("r1"), T0 + 6)])
        .unwrap();
    let ts = |lines: Vec<LogLine>| lines.iter().map(|l| l.ts_ms - T0).collect::<Vec<_>>();

    assert_eq!(
        ts(store.recent_logs("default", "f", None, 3).unwrap()),
        [4, 5, 6]
    );
    assert_eq!(
        ts(store.recent_logs("default", "f", None, 100).unwrap()),
        [1, 2, 4, 5, 6]
    );
    assert_eq!(
        ts(store.recent_logs("default", "f", Some("r2"), 100).unwrap()),
        [2, 5]
    );
    assert_eq!(
        ts(store.recent_logs("default", "f", Some("r1"), 1).unwrap()),
        [6]
    );
    assert!(store
        .recent_logs("other", "f", None, 10)
        .unwrap()
        .is_empty());
    // Lines come back as they went in.
    assert_eq!(
        store.recent_logs("default", "g", None, 10).unwrap(),
        [log("g", Some("r2"), T0 + 3)]
    );
    assert_eq!(
        store.recent_logs("default", "f", None, 1).unwrap(),
        [log("f", Some("r1"), T0 + 6)]
    );
}

pub fn prune_logs_deletes_lines_older_than_the_cutoff(store: &dyn Store) {
    store
        .append_logs(&[
            log("f", None, T0),
            log("g", None, T0 + 1),
            log("f", None, T0 + 2),
            log("f", None, T0 + 3),
        ])
        .unwrap();
    assert_eq!(store.prune_logs(T0 + 2).unwrap(), 2);
    assert_eq!(store.prune_logs(T0 + 2).unwrap(), 0);
    let left = store.recent_logs("default", "f", None, 10).unwrap();
    assert_eq!(
        left.iter().map(|l| l.ts_ms - T0).collect::<Vec<_>>(),
        [2, 3]
    );
    assert!(store
        .recent_logs("default", "g", None, 10)
        .unwrap()
        .is_empty());
}

pub fn reserved_concurrency_is_set_replaced_and_removed(store: &dyn Store) {
    assert!(store.list_reserved_concurrency().unwrap().is_empty());
    store
        .put_reserved_concurrency("default", "f", Some(5))
        .unwrap();
    store
        .put_reserved_concurrency("default", "g", Some(0))
        .unwrap();
    store
        .put_reserved_concurrency("other", "f", Some(1))
        .unwrap();
    store
        .put_reserved_concurrency("default", "f", Some(7))
        .unwrap();
    let mut all = store.list_reserved_concurrency().unwrap();
    all.sort();
    let row = |ns: &str, f: &str, n| (ns.to_string(), f.to_string(), n);
    assert_eq!(
        all,
        [
            row("default", "f", 7),
            row("default", "g", 0),
            row("other", "f", 1)
        ]
    );
    store
        .put_reserved_concurrency("default", "f", None)
        .unwrap();
    // Removing what is not set is not an error.
    store
        .put_reserved_concurrency("default", "nope", None)
        .unwrap();
    let mut all = store.list_reserved_concurrency().unwrap();
    all.sort();
    assert_eq!(all, [row("default", "g", 0), row("other", "f", 1)]);
}

fn provisioned(function: &str, qualifier: &str, requested: u32) -> ProvisionedSetting {
    ProvisionedSetting {
        namespace: "default".into(),
        function: function.into(),
        qualifier: qualifier.into(),
        requested,
        last_modified_ms: T0 + i64::from(requested),
    }
}

pub fn provisioned_concurrency_is_upserted_per_qualifier(store: &dyn Store) {
    assert_eq!(store.get_provisioned("default", "f", "live").unwrap(), None);
    store.put_provisioned(&provisioned("f", "live", 2)).unwrap();
    store.put_provisioned(&provisioned("f", "1", 3)).unwrap();
    store.put_provisioned(&provisioned("g", "live", 4)).unwrap();
    store.put_provisioned(&provisioned("f", "live", 5)).unwrap();
    assert_eq!(
        store.get_provisioned("default", "f", "live").unwrap(),
        Some(provisioned("f", "live", 5))
    );
    let mut all = store.list_provisioned().unwrap();
    all.sort_by(|a, b| (&a.function, &a.qualifier).cmp(&(&b.function, &b.qualifier)));
    assert_eq!(
        all,
        [
            provisioned("f", "1", 3),
            provisioned("f", "live", 5),
            provisioned("g", "live", 4)
        ]
    );
    assert!(store.delete_provisioned("default", "f", "live").unwrap());
    assert!(!store.delete_provisioned("default", "f", "live").unwrap());
    assert_eq!(store.get_provisioned("default", "f", "live").unwrap(), None);
    assert_eq!(store.list_provisioned().unwrap().len(), 2);
}
