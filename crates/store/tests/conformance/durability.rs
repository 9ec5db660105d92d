//! What a store wrote is there when the store is opened again (SQLite: the file
//! reopened; PostgreSQL: a new connection to the same database).

use tern_core::layer::LayerStatement;
use tern_store::{
    AccessKey, Enqueued, EventInvokeConfigRow, EventState, LogLine, ProvisionedSetting, Settle,
    Store,
};

use crate::support::{
    attempt, claim_and_settle, dead_letter, enqueue, event, function, ids, keyed, layer, T0,
};

const ACCOUNT: &str = "123456789012";

pub fn settings_survive_reopen(open: &dyn Fn() -> Box<dyn Store>) {
    let statements = vec![LayerStatement {
        statement_id: "all".into(),
        action: "lambda:GetLayerVersion".into(),
        principal: "*".into(),
    }];
    let key = AccessKey {
        access_key_id: "AKIA1".into(),
        secret: "s".into(),
        namespace: "default".into(),
    };
    let provisioned = ProvisionedSetting {
        namespace: "default".into(),
        function: "f".into(),
        qualifier: "live".into(),
        requested: 3,
        last_modified_ms: T0,
    };
    let config = EventInvokeConfigRow {
        namespace: "default".into(),
        function: "f".into(),
        qualifier: "$LATEST".into(),
        config: "{}".into(),
        last_modified_ms: T0,
    };
    let log = LogLine {
        namespace: "default".into(),
        function: "f".into(),
        request_id: Some("r1".into()),
        ts_ms: T0,
        line: "hello".into(),
    };
    let message_id;
    {
        let store = open();
        store
            .create_function(&function("default", "f", 10))
            .unwrap();
        store.put_access_key(&key).unwrap();
        store.put_meta("region", "eu-west-1").unwrap();
        store.append_logs(std::slice::from_ref(&log)).unwrap();
        store
            .put_reserved_concurrency("default", "f", Some(4))
            .unwrap();
        store.put_provisioned(&provisioned).unwrap();
        store.put_event_invoke_config(&config).unwrap();
        let v1 = store
            .publish_layer_version(&layer("default", ACCOUNT, "deps"), "rev0")
            .unwrap();
        store
            .publish_layer_version(&layer("default", ACCOUNT, "deps"), "rev0")
            .unwrap();
        store.delete_layer_version("default", "deps", 2).unwrap();
        store
            .put_layer_policy("default", "deps", v1.version, &statements, "rev0", "rev1")
            .unwrap();
        message_id = store.push_queue_message("default", "q", "m", T0).unwrap();
    }
    // Opening twice more also shows that opening an existing database changes nothing.
    drop(open());
    let store = open();
    assert_eq!(
        store.get_function("default", "f").unwrap(),
        Some(function("default", "f", 10))
    );
    assert_eq!(store.get_access_key("AKIA1").unwrap(), Some(key));
    assert_eq!(
        store.get_meta("region").unwrap().as_deref(),
        Some("eu-west-1")
    );
    assert_eq!(store.recent_logs("default", "f", None, 10).unwrap(), [log]);
    assert_eq!(
        store.list_reserved_concurrency().unwrap(),
        [("default".to_string(), "f".to_string(), 4)]
    );
    assert_eq!(store.list_provisioned().unwrap(), [provisioned]);
    assert_eq!(
        store.list_event_invoke_configs("default", "f").unwrap(),
        [config]
    );
    let got = store
        .get_layer_version(ACCOUNT, "deps", 1)
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.statements, got.policy_revision.as_str()),
        (statements, "rev1")
    );
    // The deleted number stays used.
    let next = store
        .publish_layer_version(&layer("default", ACCOUNT, "deps"), "rev0")
        .unwrap();
    assert_eq!(next.version, 3);
    let messages = store.read_queue_messages("default", "q", 0, 10).unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].id, message_id);
    assert!(store.push_queue_message("default", "q", "n", T0).unwrap() > message_id);
}

pub fn the_queue_survives_reopen(open: &dyn Fn() -> Box<dyn Store>) {
    let lease = T0 + 60_000;
    {
        let store = open();
        enqueue(
            store.as_ref(),
            &[
                ("dead", T0),
                ("running", T0 + 1),
                ("retrying", T0 + 2),
                ("queued", T0 + 100),
            ],
        );
        store
            .enqueue_events(&[keyed(event("keyed", "default", "f", T0 + 200), "k")], 0)
            .unwrap();
        dead_letter(store.as_ref(), "dead", T0);
        assert_eq!(
            ids(&store.claim_events("a", T0 + 1, lease, 1, &[]).unwrap()),
            ["running"]
        );
        claim_and_settle(
            store.as_ref(),
            "retrying",
            "o",
            T0 + 2,
            Some(&attempt(T0 + 2, "function_error")),
            &Settle::Retry {
                next_at_ms: T0 + 50,
                function_error: true,
            },
        );
    }
    let store = open();
    let state = |id| store.get_event(id).unwrap().unwrap().state;
    assert_eq!(state("running"), EventState::Running);
    assert_eq!(state("retrying"), EventState::Retrying);
    assert_eq!(state("queued"), EventState::Queued);
    let dead = store.list_dead_letters("default", "f", None, 10).unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, [attempt(T0, "function_error")]);
    assert_eq!(
        store
            .get_event("retrying")
            .unwrap()
            .unwrap()
            .function_attempts,
        1
    );

    // The idempotency key is remembered.
    let again = keyed(event("keyed-again", "default", "f", T0 + 300), "k");
    assert_eq!(
        store.enqueue_events(&[again], 0).unwrap(),
        [Enqueued::Duplicate {
            request_id: "keyed".into()
        }]
    );
    // The lease is remembered: only the others are due.
    let claimed = store
        .claim_events("b", T0 + 1_000, lease + 60_000, 10, &[])
        .unwrap();
    assert_eq!(ids(&claimed), ["keyed", "queued", "retrying"]);
    assert!(store
        .settle_event(
            "running",
            "a",
            &[],
            &Settle::Succeeded { response: None },
            T0 + 1_000
        )
        .unwrap());
}
