//! What happens to events after they finish: the dead-letter queue (list, redrive,
//! purge), pruning, and the pending depth of each namespace.

use tern_store::{Enqueued, EventState, QueueDepth, Settle, Store};

use crate::support::{
    attempt, claim_and_settle, dead_letter, enqueue, event, ids, keyed, LONG_LEASE, T0,
};

fn dead_ids(store: &dyn Store, function: &str, after: Option<&str>, limit: usize) -> Vec<String> {
    store
        .list_dead_letters("default", function, after, limit)
        .unwrap()
        .into_iter()
        .map(|e| e.request_id)
        .collect()
}

pub fn dead_letters_are_listed_by_request_id_after_a_marker(store: &dyn Store) {
    enqueue(
        store,
        &[("d3", T0), ("d1", T0 + 1), ("d2", T0 + 2), ("ok", T0 + 3)],
    );
    dead_letter(store, "d3", T0);
    dead_letter(store, "d1", T0 + 1);
    dead_letter(store, "d2", T0 + 2);
    claim_and_settle(
        store,
        "ok",
        "o",
        T0 + 3,
        None,
        &Settle::Succeeded { response: None },
    );
    store
        .enqueue_events(&[event("g1", "default", "g", T0 + 4)], 0)
        .unwrap();
    dead_letter(store, "g1", T0 + 4);

    assert_eq!(dead_ids(store, "f", None, 10), ["d1", "d2", "d3"]);
    assert_eq!(dead_ids(store, "f", None, 2), ["d1", "d2"]);
    assert_eq!(dead_ids(store, "f", Some("d1"), 1), ["d2"]);
    assert_eq!(dead_ids(store, "f", Some("d3"), 10), Vec::<String>::new());
    assert_eq!(dead_ids(store, "g", None, 10), ["g1"]);
    assert!(store
        .list_dead_letters("other", "f", None, 10)
        .unwrap()
        .is_empty());
}

pub fn redrive_of_one_dead_letter_requeues_it_now_with_its_history(store: &dyn Store) {
    enqueue(store, &[("e1", T0), ("e2", T0 + 5_000)]);
    // Two attempts: a system retry, then a function error that dead-letters it.
    claim_and_settle(
        store,
        "e1",
        "o",
        T0,
        Some(&attempt(T0, "throttled")),
        &Settle::Retry {
            next_at_ms: T0 + 2,
            function_error: false,
        },
    );
    dead_letter(store, "e1", T0 + 2);
    dead_letter(store, "e2", T0 + 5_000);
    let before = store.get_event("e1").unwrap().unwrap();
    assert_eq!((before.function_attempts, before.system_attempts), (0, 1));
    assert_eq!(before.attempts.len(), 2);

    let now = T0 + 9_000;
    assert_eq!(
        store
            .redrive_dead_letters("default", "f", Some("e1"), now)
            .unwrap(),
        1
    );
    let after = store.get_event("e1").unwrap().unwrap();
    assert_eq!(after.state, EventState::Queued);
    assert!(!after.dead_letter);
    assert_eq!(after.next_at_ms, now);
    assert_eq!(after.enqueued_ms, now, "its age counts from the redrive");
    assert_eq!((after.function_attempts, after.system_attempts), (0, 0));
    assert_eq!(after.attempts, before.attempts);
    assert_eq!(after.payload, before.payload);
    assert_eq!(dead_ids(store, "f", None, 10), ["e2"]);

    let claimed = store.claim_events("o", now, LONG_LEASE, 10, &[]).unwrap();
    assert_eq!(ids(&claimed), ["e1"]);
    assert_eq!(
        (
            claimed[0].function_attempts,
            claimed[0].system_attempts,
            claimed[0].lease_expired
        ),
        (0, 0, false)
    );

    // Only dead letters of that function are redriven.
    for (function, request_id) in [("f", "ghost"), ("f", "e1"), ("g", "e2")] {
        assert_eq!(
            store
                .redrive_dead_letters("default", function, Some(request_id), now)
                .unwrap(),
            0,
            "redrive of {function}/{request_id}"
        );
    }
}

pub fn redrive_of_all_requeues_every_dead_letter_of_the_function(store: &dyn Store) {
    enqueue(store, &[("e1", T0), ("e2", T0 + 1), ("done", T0 + 2)]);
    dead_letter(store, "e1", T0);
    dead_letter(store, "e2", T0 + 1);
    claim_and_settle(
        store,
        "done",
        "o",
        T0 + 2,
        None,
        &Settle::Succeeded { response: None },
    );
    store
        .enqueue_events(&[event("g1", "default", "g", T0 + 3)], 0)
        .unwrap();
    dead_letter(store, "g1", T0 + 3);

    assert_eq!(
        store
            .redrive_dead_letters("default", "f", None, T0 + 100)
            .unwrap(),
        2
    );
    assert!(dead_ids(store, "f", None, 10).is_empty());
    assert_eq!(dead_ids(store, "g", None, 10), ["g1"]);
    assert_eq!(
        store.get_event("done").unwrap().unwrap().state,
        EventState::Succeeded
    );
    let claimed = store
        .claim_events("o", T0 + 100, LONG_LEASE, 10, &[])
        .unwrap();
    assert_eq!(ids(&claimed), ["e1", "e2"]);
    assert_eq!(
        store
            .redrive_dead_letters("default", "f", None, T0 + 100)
            .unwrap(),
        0
    );
}

pub fn purge_deletes_dead_letters_only(store: &dyn Store) {
    enqueue(
        store,
        &[
            ("e1", T0),
            ("e2", T0 + 1),
            ("e3", T0 + 2),
            ("pending", T0 + 50),
        ],
    );
    dead_letter(store, "e1", T0);
    dead_letter(store, "e2", T0 + 1);
    dead_letter(store, "e3", T0 + 2);
    store
        .enqueue_events(&[event("g1", "default", "g", T0 + 3)], 0)
        .unwrap();
    dead_letter(store, "g1", T0 + 3);

    assert_eq!(
        store
            .purge_dead_letters("default", "f", Some("e2"))
            .unwrap(),
        1
    );
    assert_eq!(store.get_event("e2").unwrap(), None);
    assert_eq!(
        store
            .purge_dead_letters("default", "f", Some("e2"))
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .purge_dead_letters("default", "f", Some("pending"))
            .unwrap(),
        0
    );
    assert_eq!(store.purge_dead_letters("default", "f", None).unwrap(), 2);
    assert!(dead_ids(store, "f", None, 10).is_empty());
    assert_eq!(store.get_event("e1").unwrap(), None);
    assert!(store.get_event("pending").unwrap().is_some());
    assert_eq!(dead_ids(store, "g", None, 10), ["g1"]);
}

pub fn prune_keeps_dead_letters_and_pending_events(store: &dyn Store) {
    let cutoff = T0 + 1_000;
    enqueue(
        store,
        &[
            ("old-ok", T0),
            ("old-failed", T0 + 1),
            ("old-expired", T0 + 2),
            ("old-dead", T0 + 3),
            ("retrying", T0 + 4),
            ("running", T0 + 5),
            ("new-ok", cutoff),
            ("queued", cutoff + 5_000),
        ],
    );
    let ok = Settle::Succeeded { response: None };
    claim_and_settle(store, "old-ok", "o", T0, None, &ok);
    claim_and_settle(
        store,
        "old-failed",
        "o",
        T0 + 1,
        None,
        &Settle::Failed {
            dead_letter: false,
            response: None,
        },
    );
    claim_and_settle(
        store,
        "old-expired",
        "o",
        T0 + 2,
        None,
        &Settle::Expired { dead_letter: false },
    );
    dead_letter(store, "old-dead", T0 + 3);
    claim_and_settle(
        store,
        "retrying",
        "o",
        T0 + 4,
        Some(&attempt(T0 + 4, "crash")),
        &Settle::Retry {
            next_at_ms: T0 + 50_000,
            function_error: true,
        },
    );
    assert_eq!(
        ids(&store.claim_events("o", T0 + 5, LONG_LEASE, 1, &[]).unwrap()),
        ["running"]
    );
    // Settled at cutoff + 10: finished, but not long enough ago.
    claim_and_settle(store, "new-ok", "o", cutoff, None, &ok);

    assert_eq!(store.prune_events(cutoff, 0, 0).unwrap(), 3);
    for gone in ["old-ok", "old-failed", "old-expired"] {
        assert_eq!(store.get_event(gone).unwrap(), None, "{gone} pruned");
    }
    for kept in ["old-dead", "retrying", "running", "queued", "new-ok"] {
        assert!(store.get_event(kept).unwrap().is_some(), "{kept} kept");
    }
    assert_eq!(dead_ids(store, "f", None, 10), ["old-dead"]);
    assert_eq!(store.prune_events(cutoff, 0, 0).unwrap(), 0);
}

pub fn prune_forgets_old_idempotency_keys(store: &dyn Store) {
    let answers = store
        .enqueue_events(
            &[
                keyed(event("old", "default", "f", T0), "k-old"),
                keyed(event("new", "default", "f", T0 + 2_000), "k-new"),
            ],
            0,
        )
        .unwrap();
    assert_eq!(answers, [Enqueued::New, Enqueued::New]);

    assert_eq!(store.prune_events(0, 0, T0 + 1_000).unwrap(), 0);
    // With a window reaching back to the start of time, only a forgotten key is new.
    let answers = store
        .enqueue_events(
            &[
                keyed(event("old-again", "default", "f", T0 + 3_000), "k-old"),
                keyed(event("new-again", "default", "f", T0 + 3_000), "k-new"),
            ],
            0,
        )
        .unwrap();
    assert_eq!(
        answers,
        [
            Enqueued::New,
            Enqueued::Duplicate {
                request_id: "new".into()
            }
        ]
    );
    // Pruning keys leaves the events alone.
    assert!(store.get_event("old").unwrap().is_some());
}

pub fn queue_depths_count_pending_events_per_namespace(store: &dyn Store) {
    assert!(store.queue_depths().unwrap().is_empty());
    let in_ns = |id: &str, ns: &str, at| event(id, ns, "f", at);
    store
        .enqueue_events(
            &[
                in_ns("a-done", "a", T0),
                in_ns("a-running", "a", T0 + 50),
                in_ns("a-retrying", "a", T0 + 70),
                in_ns("a-queued", "a", T0 + 100),
                in_ns("b-queued", "b", T0 + 500),
                in_ns("c-done", "c", T0 + 1),
            ],
            0,
        )
        .unwrap();
    let ok = Settle::Succeeded { response: None };
    let claimed = store
        .claim_events("o", T0 + 1, LONG_LEASE, 10, &[])
        .unwrap();
    assert_eq!(ids(&claimed), ["a-done", "c-done"]);
    for done in ["a-done", "c-done"] {
        assert!(store.settle_event(done, "o", &[], &ok, T0 + 2).unwrap());
    }
    assert_eq!(
        ids(&store
            .claim_events("o", T0 + 50, LONG_LEASE, 10, &[])
            .unwrap()),
        ["a-running"]
    );
    claim_and_settle(
        store,
        "a-retrying",
        "o",
        T0 + 70,
        None,
        &Settle::Retry {
            next_at_ms: T0 + 90_000,
            function_error: false,
        },
    );

    let mut depths = store.queue_depths().unwrap();
    depths.sort_by(|x, y| x.namespace.cmp(&y.namespace));
    assert_eq!(
        depths,
        [
            QueueDepth {
                namespace: "a".into(),
                pending: 3,
                oldest_enqueued_ms: Some(T0 + 50),
            },
            QueueDepth {
                namespace: "b".into(),
                pending: 1,
                oldest_enqueued_ms: Some(T0 + 500),
            },
        ]
    );
}

pub fn prune_removes_dead_letters_only_past_their_own_age(store: &dyn Store) {
    enqueue(store, &[("old", T0), ("young", T0 + 10_000)]);
    dead_letter(store, "old", T0);
    dead_letter(store, "young", T0 + 10_000);
    // Finished events go at T0 + 20,000; dead letters only before T0 + 5,000.
    assert_eq!(store.prune_events(T0 + 20_000, T0 + 5_000, 0).unwrap(), 1);
    assert_eq!(dead_ids(store, "f", None, 10), ["young"]);
    assert!(store.get_event("old").unwrap().is_none());
}
