//! The asynchronous-invocation queue: enqueue with idempotency keys, claims under
//! leases, settling attempts, lease renewal and abandonment.

use tern_store::{ClaimedEvent, Enqueued, EventState, EventStatus, Settle, Store};

use crate::support::{
    attempt, claim_and_settle, dead_letter, enqueue, event, ids, keyed, LONG_LEASE, T0,
};

fn status(store: &dyn Store, request_id: &str) -> EventStatus {
    store
        .get_event(request_id)
        .unwrap()
        .unwrap_or_else(|| panic!("event {request_id} is stored"))
}

fn duplicate_of(request_id: &str) -> Enqueued {
    Enqueued::Duplicate {
        request_id: request_id.into(),
    }
}

pub fn enqueued_events_are_stored_queued_and_due(store: &dyn Store) {
    let new = event("e1", "default", "f", T0);
    assert_eq!(
        store.enqueue_events(std::slice::from_ref(&new), 0).unwrap(),
        [Enqueued::New]
    );
    assert_eq!(
        store.get_event("e1").unwrap(),
        Some(EventStatus {
            request_id: "e1".into(),
            namespace: "default".into(),
            function: "f".into(),
            qualifier: "$LATEST".into(),
            state: EventState::Queued,
            enqueued_ms: T0,
            updated_ms: T0,
            next_at_ms: T0,
            function_attempts: 0,
            system_attempts: 0,
            dead_letter: false,
            payload: new.payload,
            response: None,
            attempts: Vec::new(),
        })
    );
    assert_eq!(store.get_event("nope").unwrap(), None);
    assert!(store.enqueue_events(&[], 0).unwrap().is_empty());
}

pub fn a_repeated_key_within_the_window_is_a_duplicate(store: &dyn Store) {
    let first = keyed(event("e1", "default", "f", T0), "k");
    assert_eq!(store.enqueue_events(&[first], 0).unwrap(), [Enqueued::New]);

    let again = keyed(event("e2", "default", "f", T0 + 500), "k");
    // The key was stored at T0: "at or after" the window's start counts.
    assert_eq!(
        store.enqueue_events(&[again], T0).unwrap(),
        [duplicate_of("e1")]
    );
    assert_eq!(store.get_event("e2").unwrap(), None);

    // Keys are per namespace and function.
    let answers = store
        .enqueue_events(
            &[
                keyed(event("e3", "default", "g", T0 + 600), "k"),
                keyed(event("e4", "other", "f", T0 + 600), "k"),
                keyed(event("e5", "default", "f", T0 + 600), "k2"),
            ],
            T0,
        )
        .unwrap();
    assert_eq!(answers, [Enqueued::New, Enqueued::New, Enqueued::New]);
    for id in ["e3", "e4", "e5"] {
        assert!(store.get_event(id).unwrap().is_some(), "{id} stored");
    }
}

pub fn a_key_older_than_the_window_is_replaced(store: &dyn Store) {
    let first = keyed(event("e1", "default", "f", T0), "k");
    store.enqueue_events(&[first], 0).unwrap();

    let later = keyed(event("e2", "default", "f", T0 + 5_000), "k");
    assert_eq!(
        store.enqueue_events(&[later], T0 + 1).unwrap(),
        [Enqueued::New]
    );
    assert_eq!(status(store, "e2").state, EventState::Queued);
    assert_eq!(status(store, "e1").state, EventState::Queued);

    // The key now names the second event.
    let third = keyed(event("e3", "default", "f", T0 + 6_000), "k");
    assert_eq!(
        store.enqueue_events(&[third], T0 + 1).unwrap(),
        [duplicate_of("e2")]
    );
    assert_eq!(store.get_event("e3").unwrap(), None);
}

pub fn a_key_repeated_within_one_batch_is_a_duplicate_of_the_first(store: &dyn Store) {
    let batch = [
        keyed(event("a", "default", "f", T0), "k"),
        keyed(event("b", "default", "f", T0), "k"),
        event("c", "default", "f", T0),
        keyed(event("d", "default", "f", T0), "k"),
    ];
    assert_eq!(
        store.enqueue_events(&batch, T0).unwrap(),
        [
            Enqueued::New,
            duplicate_of("a"),
            Enqueued::New,
            duplicate_of("a")
        ]
    );
    assert!(store.get_event("b").unwrap().is_none());
    assert!(store.get_event("d").unwrap().is_none());
    let claimed = store.claim_events("o", T0, LONG_LEASE, 10, &[]).unwrap();
    assert_eq!(ids(&claimed), ["a", "c"]);
}

pub fn claim_takes_due_events_oldest_first_up_to_the_limit(store: &dyn Store) {
    enqueue(
        store,
        &[
            ("late", T0 + 900),
            ("third", T0 + 300),
            ("first", T0 + 100),
            ("second", T0 + 200),
        ],
    );
    assert!(store
        .claim_events("o", T0 + 99, LONG_LEASE, 10, &[])
        .unwrap()
        .is_empty());
    // Due means next_at_ms <= now.
    assert_eq!(
        ids(&store
            .claim_events("o", T0 + 100, LONG_LEASE, 10, &[])
            .unwrap()),
        ["first"]
    );
    assert_eq!(
        ids(&store
            .claim_events("o", T0 + 1_000, LONG_LEASE, 1, &[])
            .unwrap()),
        ["second"]
    );
    assert_eq!(
        ids(&store
            .claim_events("o", T0 + 1_000, LONG_LEASE, 2, &[])
            .unwrap()),
        ["late", "third"]
    );
    assert!(store
        .claim_events("o", T0 + 1_000, LONG_LEASE, 10, &[])
        .unwrap()
        .is_empty());
}

pub fn a_claimed_event_carries_the_event(store: &dyn Store) {
    let mut new = event("e1", "default", "f", T0);
    new.qualifier = "live".into();
    new.incarnation = "second-life".into();
    new.payload = vec![0, 159, 146, 150, 255];
    store.enqueue_events(std::slice::from_ref(&new), 0).unwrap();
    let claimed = store.claim_events("o", T0, LONG_LEASE, 10, &[]).unwrap();
    assert_eq!(
        claimed,
        [ClaimedEvent {
            request_id: "e1".into(),
            namespace: "default".into(),
            function: "f".into(),
            qualifier: "live".into(),
            payload: new.payload,
            enqueued_ms: T0,
            function_attempts: 0,
            system_attempts: 0,
            lease_expired: false,
            incarnation: "second-life".into(),
        }]
    );
    assert_eq!(status(store, "e1").state, EventState::Running);
}

pub fn a_leased_event_is_claimed_again_only_after_its_lease_expires(store: &dyn Store) {
    enqueue(store, &[("e1", T0)]);
    let lease = T0 + 5_000;
    assert_eq!(
        ids(&store.claim_events("a", T0, lease, 10, &[]).unwrap()),
        ["e1"]
    );
    assert!(store
        .claim_events("b", T0 + 10, T0 + 9_000, 10, &[])
        .unwrap()
        .is_empty());
    assert!(store
        .claim_events("a", lease - 1, T0 + 9_000, 10, &[])
        .unwrap()
        .is_empty());

    let again = store
        .claim_events("b", lease + 1, lease + 5_000, 10, &[])
        .unwrap();
    assert_eq!(ids(&again), ["e1"]);
    assert!(again[0].lease_expired, "reclaimed after an expired lease");
    assert_eq!(status(store, "e1").state, EventState::Running);
    // Now b holds it: a can no longer settle it.
    let settled = Settle::Succeeded { response: None };
    assert!(!store
        .settle_event("e1", "a", &[], &settled, lease + 2)
        .unwrap());
    assert!(store
        .settle_event("e1", "b", &[], &settled, lease + 2)
        .unwrap());
}

pub fn settle_by_another_owner_changes_nothing(store: &dyn Store) {
    enqueue(store, &[("held", T0), ("queued", T0 + 1)]);
    assert_eq!(
        ids(&store.claim_events("a", T0 + 1, LONG_LEASE, 1, &[]).unwrap()),
        ["held"]
    );
    let done = Settle::Succeeded {
        response: Some(b"nope".to_vec()),
    };
    let tried = attempt(T0, "success");
    // Nobody but "a" holds the running event, and nobody holds a queued one.
    for (request_id, owner) in [("held", "b"), ("queued", "a")] {
        let before = status(store, request_id);
        assert!(!store
            .settle_event(
                request_id,
                owner,
                std::slice::from_ref(&tried),
                &done,
                T0 + 1
            )
            .unwrap());
        assert_eq!(status(store, request_id), before);
    }
    assert!(!store
        .settle_event("ghost", "a", &[], &done, T0 + 1)
        .unwrap());
}

pub fn settle_succeeded_stores_the_response(store: &dyn Store) {
    enqueue(store, &[("e1", T0)]);
    store.claim_events("o", T0, LONG_LEASE, 10, &[]).unwrap();
    let done = Settle::Succeeded {
        response: Some(b"{\"ok\":true}".to_vec()),
    };
    let tried = attempt(T0 + 1, "success");
    assert!(store
        .settle_event("e1", "o", std::slice::from_ref(&tried), &done, T0 + 20)
        .unwrap());
    let got = status(store, "e1");
    assert_eq!(got.state, EventState::Succeeded);
    assert_eq!(got.response.as_deref(), Some(&b"{\"ok\":true}"[..]));
    assert_eq!(got.attempts, [tried]);
    assert_eq!(got.updated_ms, T0 + 20);
    assert!(!got.dead_letter);
    // Finished: never claimed again, not even once its lease would have run out.
    assert!(store
        .claim_events("o", LONG_LEASE + 1, LONG_LEASE + 2, 10, &[])
        .unwrap()
        .is_empty());
    // Nor settled again.
    assert!(!store.settle_event("e1", "o", &[], &done, T0 + 30).unwrap());
}

pub fn settle_retry_counts_function_and_system_failures_apart(store: &dyn Store) {
    enqueue(store, &[("e1", T0)]);
    store.claim_events("o", T0, LONG_LEASE, 10, &[]).unwrap();
    let retry_at = T0 + 5_000;
    let function_error = Settle::Retry {
        next_at_ms: retry_at,
        function_error: true,
    };
    assert!(store
        .settle_event(
            "e1",
            "o",
            &[attempt(T0, "function_error")],
            &function_error,
            T0 + 10
        )
        .unwrap());
    let got = status(store, "e1");
    assert_eq!(
        (
            got.state,
            got.function_attempts,
            got.system_attempts,
            got.next_at_ms
        ),
        (EventState::Retrying, 1, 0, retry_at)
    );
    assert_eq!(got.updated_ms, T0 + 10);

    assert!(store
        .claim_events("o", retry_at - 1, LONG_LEASE, 10, &[])
        .unwrap()
        .is_empty());
    let claimed = store
        .claim_events("o", retry_at, LONG_LEASE, 10, &[])
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (
            claimed[0].function_attempts,
            claimed[0].system_attempts,
            claimed[0].lease_expired
        ),
        (1, 0, false)
    );

    let system_error = Settle::Retry {
        next_at_ms: retry_at + 1_000,
        function_error: false,
    };
    assert!(store
        .settle_event(
            "e1",
            "o",
            &[attempt(retry_at, "throttled")],
            &system_error,
            retry_at + 1
        )
        .unwrap());
    let got = status(store, "e1");
    assert_eq!(
        (
            got.state,
            got.function_attempts,
            got.system_attempts,
            got.next_at_ms
        ),
        (EventState::Retrying, 1, 1, retry_at + 1_000)
    );
    assert_eq!(got.attempts.len(), 2);
    let claimed = store
        .claim_events("o", retry_at + 1_000, LONG_LEASE, 10, &[])
        .unwrap();
    assert_eq!(
        (claimed[0].function_attempts, claimed[0].system_attempts),
        (1, 1)
    );
}

pub fn settle_failed_or_expired_goes_to_the_dead_letter_queue_when_asked(store: &dyn Store) {
    enqueue(
        store,
        &[("dlq", T0), ("dropped", T0 + 1), ("expired", T0 + 2)],
    );
    let claimed = store
        .claim_events("o", T0 + 2, LONG_LEASE, 10, &[])
        .unwrap();
    assert_eq!(claimed.len(), 3);
    let failed = |dead_letter| Settle::Failed {
        dead_letter,
        response: Some(b"{\"errorType\":\"Boom\"}".to_vec()),
    };
    let tried = attempt(T0 + 3, "function_error");
    assert!(store
        .settle_event(
            "dlq",
            "o",
            std::slice::from_ref(&tried),
            &failed(true),
            T0 + 10
        )
        .unwrap());
    assert!(store
        .settle_event(
            "dropped",
            "o",
            std::slice::from_ref(&tried),
            &failed(false),
            T0 + 10
        )
        .unwrap());
    assert!(store
        .settle_event(
            "expired",
            "o",
            &[],
            &Settle::Expired { dead_letter: true },
            T0 + 10
        )
        .unwrap());

    let dlq = status(store, "dlq");
    assert_eq!((dlq.state, dlq.dead_letter), (EventState::Failed, true));
    assert_eq!(
        dlq.response.as_deref(),
        Some(&b"{\"errorType\":\"Boom\"}"[..])
    );
    assert_eq!(dlq.attempts, [tried]);
    let dropped = status(store, "dropped");
    assert_eq!(
        (dropped.state, dropped.dead_letter),
        (EventState::Failed, false)
    );
    let expired = status(store, "expired");
    assert_eq!(
        (expired.state, expired.dead_letter),
        (EventState::Expired, true)
    );
    assert!(expired.attempts.is_empty());

    let listed = store.list_dead_letters("default", "f", None, 10).unwrap();
    assert_eq!(listed, [dlq, expired]);
    assert!(store
        .claim_events("o", LONG_LEASE + 1, LONG_LEASE + 2, 10, &[])
        .unwrap()
        .is_empty());
}

pub fn get_event_returns_every_attempt_in_order(store: &dyn Store) {
    enqueue(store, &[("e1", T0)]);
    let tries = [
        attempt(T0, "timeout"),
        attempt(T0 + 100, "launch_error"),
        attempt(T0 + 200, "success"),
    ];
    let settles = [
        Settle::Retry {
            next_at_ms: T0 + 100,
            function_error: true,
        },
        Settle::Retry {
            next_at_ms: T0 + 200,
            function_error: false,
        },
        Settle::Succeeded { response: None },
    ];
    for (tried, settle) in tries.iter().zip(&settles) {
        let now = tried.started_ms;
        assert_eq!(
            ids(&store.claim_events("o", now, LONG_LEASE, 10, &[]).unwrap()),
            ["e1"]
        );
        assert!(store
            .settle_event("e1", "o", std::slice::from_ref(tried), settle, now + 50)
            .unwrap());
    }
    let got = status(store, "e1");
    assert_eq!(got.attempts, tries);
    assert_eq!(got.attempts[2].error_type, None);
    assert_eq!(
        got.attempts[0].error_message.as_deref(),
        Some("it was a timeout")
    );
    assert_eq!(got.response, None);
}

pub fn renew_extends_only_the_owners_leases(store: &dyn Store) {
    enqueue(
        store,
        &[
            ("a1", T0),
            ("a2", T0 + 1),
            ("b1", T0 + 2),
            ("q", T0 + 10_000),
        ],
    );
    let lease = T0 + 1_000;
    assert_eq!(
        store
            .claim_events("a", T0 + 1, lease, 2, &[])
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        ids(&store.claim_events("b", T0 + 2, lease, 10, &[]).unwrap()),
        ["b1"]
    );

    assert_eq!(store.renew_leases("a", T0 + 50_000).unwrap(), 2);
    assert_eq!(store.renew_leases("nobody", T0 + 50_000).unwrap(), 0);

    let taken = store
        .claim_events("c", T0 + 20_000, T0 + 60_000, 10, &[])
        .unwrap();
    assert_eq!(ids(&taken), ["b1", "q"]);
    assert!(
        taken
            .iter()
            .find(|c| c.request_id == "b1")
            .unwrap()
            .lease_expired
    );
    assert!(
        !taken
            .iter()
            .find(|c| c.request_id == "q")
            .unwrap()
            .lease_expired
    );
    // a still holds its two.
    let done = Settle::Succeeded { response: None };
    assert!(store
        .settle_event("a1", "a", &[], &done, T0 + 20_001)
        .unwrap());
    assert!(!store
        .settle_event("b1", "b", &[], &done, T0 + 20_001)
        .unwrap());
}

pub fn abandon_frees_other_owners_leases_at_once(store: &dyn Store) {
    enqueue(store, &[("mine", T0), ("theirs", T0 + 1), ("also", T0 + 2)]);
    assert_eq!(
        ids(&store.claim_events("me", T0, LONG_LEASE, 1, &[]).unwrap()),
        ["mine"]
    );
    assert_eq!(
        store
            .claim_events("dead", T0 + 2, LONG_LEASE, 10, &[])
            .unwrap()
            .len(),
        2
    );

    assert_eq!(store.abandon_leases("me").unwrap(), 2);
    // The store's clock is the caller's: "now" is the time the claims above used.
    let freed = store
        .claim_events("me", T0 + 3, LONG_LEASE, 10, &[])
        .unwrap();
    assert_eq!(ids(&freed), ["also", "theirs"]);
    assert!(freed.iter().all(|c| c.lease_expired), "{freed:?}");
    assert_eq!(store.abandon_leases("me").unwrap(), 0);
    let done = Settle::Succeeded { response: None };
    assert!(store
        .settle_event("mine", "me", &[], &done, T0 + 4)
        .unwrap());
}

pub fn claim_skips_the_namespaces_it_is_told_to(store: &dyn Store) {
    store
        .enqueue_events(
            &[
                event("a1", "busy", "f", T0),
                event("b1", "calm", "f", T0 + 1),
                event("a2", "busy", "f", T0 + 2),
            ],
            0,
        )
        .unwrap();
    let skip = ["busy".to_string()];
    assert_eq!(
        ids(&store
            .claim_events("o", T0 + 10, LONG_LEASE, 10, &skip)
            .unwrap()),
        ["b1"]
    );
    assert_eq!(
        ids(&store
            .claim_events("o", T0 + 10, LONG_LEASE, 10, &[])
            .unwrap()),
        ["a1", "a2"]
    );
}

pub fn one_settle_records_several_attempts_in_order(store: &dyn Store) {
    enqueue(store, &[("e1", T0)]);
    store.claim_events("o", T0, LONG_LEASE, 10, &[]).unwrap();
    let tried = [attempt(T0, "lease_expired"), attempt(T0 + 10, "success")];
    assert!(store
        .settle_event(
            "e1",
            "o",
            &tried,
            &Settle::Succeeded { response: None },
            T0 + 20
        )
        .unwrap());
    let outcomes: Vec<String> = store
        .get_event("e1")
        .unwrap()
        .unwrap()
        .attempts
        .into_iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(outcomes, ["lease_expired", "success"]);
}

pub fn a_finished_event_keeps_its_payload_only_as_a_dead_letter(store: &dyn Store) {
    enqueue(store, &[("ok", T0), ("sent", T0 + 1), ("dead", T0 + 2)]);
    claim_and_settle(
        store,
        "ok",
        "o",
        T0,
        None,
        &Settle::Succeeded { response: None },
    );
    claim_and_settle(
        store,
        "sent",
        "o",
        T0 + 1,
        None,
        &Settle::Failed {
            dead_letter: false,
            response: None,
        },
    );
    dead_letter(store, "dead", T0 + 2);
    let payload = |id: &str| store.get_event(id).unwrap().unwrap().payload;
    assert!(
        payload("ok").is_empty(),
        "no one reads a finished event's payload"
    );
    assert!(payload("sent").is_empty());
    assert_eq!(payload("dead"), b"{\"id\":\"dead\"}", "a redrive needs it");
}
