//! Schedules: create, get, list, pause and resume, delete (also with their function),
//! and the fire step: a compare-and-set that moves the schedule on and enqueues the
//! slot's event in one transaction, never twice for one slot.

use tern_core::schedule::ScheduleRecord;
use tern_store::{ScheduleAdvance, Store, StoreError, StoredSchedule};

use crate::support::{event, function, keyed, T0};

const SECOND: i64 = 1_000;

fn record(ns: &str, name: &str, function: &str) -> ScheduleRecord {
    ScheduleRecord {
        namespace: ns.into(),
        name: name.into(),
        function: function.into(),
        qualifier: None,
        expression: "rate(1 second)".into(),
        timezone: None,
        payload: Some("{\"k\":1}".into()),
        enabled: true,
        created_ms: T0,
        last_modified_ms: T0,
    }
}

fn stored(ns: &str, name: &str, next_slot_ms: i64) -> StoredSchedule {
    StoredSchedule {
        record: record(ns, name, "f"),
        next_slot_ms: Some(next_slot_ms),
        last_slot_ms: None,
    }
}

/// A fire step of `default/name` from `from` to `from + 1 s`, with the slot's event.
fn fire(name: &str, from: i64, request_id: &str) -> ScheduleAdvance {
    ScheduleAdvance {
        namespace: "default".into(),
        name: name.into(),
        from_slot_ms: from,
        last_slot_ms: from,
        next_slot_ms: Some(from + SECOND),
        event: Some(keyed(
            event(request_id, "default", "f", from),
            &format!("schedule:{name}:{from}"),
        )),
    }
}

pub fn schedules_are_created_listed_and_deleted(store: &dyn Store) {
    store.create_schedule(&stored("default", "b", T0)).unwrap();
    store.create_schedule(&stored("default", "a", T0)).unwrap();
    store.create_schedule(&stored("team", "c", T0)).unwrap();
    assert_eq!(
        store.get_schedule("default", "a").unwrap(),
        Some(stored("default", "a", T0))
    );
    assert_eq!(
        store.get_schedule("team", "a").unwrap(),
        None,
        "per namespace"
    );
    let names: Vec<String> = store
        .list_schedules("default")
        .unwrap()
        .into_iter()
        .map(|s| s.record.name)
        .collect();
    assert_eq!(names, ["a", "b"], "by name, of the namespace only");
    assert!(store.delete_schedule("default", "a").unwrap());
    assert!(
        !store.delete_schedule("default", "a").unwrap(),
        "already gone"
    );
    assert_eq!(store.get_schedule("default", "a").unwrap(), None);
    assert_eq!(store.list_schedules("default").unwrap().len(), 1);
}

pub fn creating_a_schedule_twice_conflicts(store: &dyn Store) {
    store.create_schedule(&stored("default", "s", T0)).unwrap();
    let again = store.create_schedule(&stored("default", "s", T0 + 5));
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(
        store
            .get_schedule("default", "s")
            .unwrap()
            .unwrap()
            .next_slot_ms,
        Some(T0),
        "the first is kept"
    );
}

pub fn pause_and_resume_set_the_next_slot_and_keep_the_last(store: &dyn Store) {
    store.create_schedule(&stored("default", "s", T0)).unwrap();
    assert!(store.advance_schedule(&fire("s", T0, "r1"), 0).unwrap());

    let mut paused = record("default", "s", "f");
    paused.enabled = false;
    assert!(store.update_schedule(&paused, None).unwrap());
    let s = store.get_schedule("default", "s").unwrap().unwrap();
    assert_eq!(
        (s.record.enabled, s.next_slot_ms, s.last_slot_ms),
        (false, None, Some(T0))
    );
    assert!(
        store
            .due_schedules(T0 + 60 * SECOND, 10)
            .unwrap()
            .is_empty(),
        "paused is never due"
    );
    assert_eq!(store.earliest_schedule_slot().unwrap(), None);

    let resumed = record("default", "s", "f");
    assert!(store
        .update_schedule(&resumed, Some(T0 + 10 * SECOND))
        .unwrap());
    let s = store.get_schedule("default", "s").unwrap().unwrap();
    assert_eq!(
        (s.record.enabled, s.next_slot_ms, s.last_slot_ms),
        (true, Some(T0 + 10 * SECOND), Some(T0))
    );
    assert_eq!(
        store.earliest_schedule_slot().unwrap(),
        Some(T0 + 10 * SECOND)
    );

    // A next slot at or before the last one fired is not stored: it would fire twice.
    assert!(store.update_schedule(&resumed, Some(T0)).unwrap());
    assert_eq!(
        store
            .get_schedule("default", "s")
            .unwrap()
            .unwrap()
            .next_slot_ms,
        None
    );
    assert!(!store
        .update_schedule(&record("default", "nope", "f"), None)
        .unwrap());

    // A pause read before the schedule was deleted and made again under its name
    // must not turn the new one back into the old.
    assert!(store.delete_schedule("default", "s").unwrap());
    let mut again = stored("default", "s", T0 + 5 * SECOND);
    again.record.created_ms = T0 + SECOND;
    again.record.expression = "rate(5 minutes)".into();
    store.create_schedule(&again).unwrap();
    assert!(!store.update_schedule(&paused, None).unwrap());
    let s = store.get_schedule("default", "s").unwrap().unwrap();
    assert_eq!(
        (s.record.expression.as_str(), s.record.enabled),
        ("rate(5 minutes)", true)
    );
}

pub fn due_schedules_are_the_enabled_ones_at_or_before_now_earliest_first(store: &dyn Store) {
    store
        .create_schedule(&stored("default", "late", T0 + 5 * SECOND))
        .unwrap();
    store.create_schedule(&stored("team", "early", T0)).unwrap();
    store
        .create_schedule(&stored("default", "future", T0 + 60 * SECOND))
        .unwrap();
    let mut off = stored("default", "off", T0);
    off.record.enabled = false;
    off.next_slot_ms = None;
    store.create_schedule(&off).unwrap();

    let due: Vec<String> = store
        .due_schedules(T0 + 5 * SECOND, 10)
        .unwrap()
        .into_iter()
        .map(|s| s.record.name)
        .collect();
    assert_eq!(due, ["early", "late"]);
    assert_eq!(
        store.due_schedules(T0 + 5 * SECOND, 1).unwrap().len(),
        1,
        "limited"
    );
    assert_eq!(store.earliest_schedule_slot().unwrap(), Some(T0));
}

pub fn a_fire_step_moves_the_schedule_and_enqueues_its_event(store: &dyn Store) {
    store.create_schedule(&stored("default", "s", T0)).unwrap();
    assert!(store.advance_schedule(&fire("s", T0, "r1"), 0).unwrap());
    let s = store.get_schedule("default", "s").unwrap().unwrap();
    assert_eq!(
        (s.last_slot_ms, s.next_slot_ms),
        (Some(T0), Some(T0 + SECOND))
    );
    let ev = store
        .get_event("r1")
        .unwrap()
        .expect("the slot's event is queued");
    assert_eq!((ev.function.as_str(), ev.enqueued_ms), ("f", T0));

    // Skipping slots moves the schedule without an event.
    let skip = ScheduleAdvance {
        event: None,
        last_slot_ms: T0 + 9 * SECOND,
        next_slot_ms: Some(T0 + 10 * SECOND),
        ..fire("s", T0 + SECOND, "unused")
    };
    assert!(store.advance_schedule(&skip, 0).unwrap());
    let s = store.get_schedule("default", "s").unwrap().unwrap();
    assert_eq!(
        (s.last_slot_ms, s.next_slot_ms),
        (Some(T0 + 9 * SECOND), Some(T0 + 10 * SECOND))
    );
    assert_eq!(store.get_event("unused").unwrap(), None);
}

pub fn a_fire_step_that_lost_its_compare_and_set_enqueues_nothing(store: &dyn Store) {
    store.create_schedule(&stored("default", "s", T0)).unwrap();
    assert!(store.advance_schedule(&fire("s", T0, "first"), 0).unwrap());
    // The same slot again (another server that read the schedule before the first
    // step): its expected next slot is gone.
    assert!(!store.advance_schedule(&fire("s", T0, "second"), 0).unwrap());
    assert_eq!(
        store.get_event("second").unwrap(),
        None,
        "no event for a lost step"
    );
    let s = store.get_schedule("default", "s").unwrap().unwrap();
    assert_eq!(
        (s.last_slot_ms, s.next_slot_ms),
        (Some(T0), Some(T0 + SECOND))
    );

    // A paused schedule is not fired, whatever its slot.
    let mut paused = record("default", "s", "f");
    paused.enabled = false;
    store.update_schedule(&paused, Some(T0 + SECOND)).unwrap();
    assert!(!store
        .advance_schedule(&fire("s", T0 + SECOND, "third"), 0)
        .unwrap());
    assert_eq!(store.get_event("third").unwrap(), None);
    // Nor a step at or before the last slot, even when the next slot matches.
    assert!(!store
        .advance_schedule(&fire("nope", T0, "fourth"), 0)
        .unwrap());
}

pub fn a_slot_never_fires_at_or_before_the_last_one(store: &dyn Store) {
    store
        .create_schedule(&stored("default", "s", T0 + 5 * SECOND))
        .unwrap();
    assert!(store
        .advance_schedule(&fire("s", T0 + 5 * SECOND, "r5"), 0)
        .unwrap());
    // Someone moved the next slot back (a resume computed from a clock that is behind):
    // the store refuses to keep it, and a step for an old slot changes nothing.
    let resumed = record("default", "s", "f");
    store
        .update_schedule(&resumed, Some(T0 + 2 * SECOND))
        .unwrap();
    assert_eq!(
        store
            .get_schedule("default", "s")
            .unwrap()
            .unwrap()
            .next_slot_ms,
        None
    );
}

pub fn deleting_the_function_deletes_its_schedules(store: &dyn Store) {
    store.create_function(&function("default", "f", 1)).unwrap();
    store.create_schedule(&stored("default", "s", T0)).unwrap();
    let mut other = stored("default", "other", T0);
    other.record.function = "g".into();
    store.create_schedule(&other).unwrap();
    assert!(store.delete_function("default", "f").unwrap());
    assert_eq!(store.get_schedule("default", "s").unwrap(), None);
    assert!(
        store.get_schedule("default", "other").unwrap().is_some(),
        "another function's stays"
    );
}

pub fn concurrent_firers_of_one_slot_enqueue_it_once(store: &dyn Store) {
    const SLOTS: i64 = 25;
    const THREADS: usize = 4;
    store.create_schedule(&stored("default", "s", T0)).unwrap();
    // Every thread tries every slot in order, as servers that all see the schedule due.
    let won: Vec<Vec<i64>> = std::thread::scope(|s| {
        let firers: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for k in 0..SLOTS {
                        let slot = T0 + k * SECOND;
                        if store
                            .advance_schedule(&fire("s", slot, &format!("t{t}-{k}")), 0)
                            .unwrap()
                        {
                            mine.push(slot);
                        }
                    }
                    mine
                })
            })
            .collect();
        firers
            .into_iter()
            .map(|f| f.join().expect("firer thread"))
            .collect()
    });
    let mut slots: Vec<i64> = won.iter().flatten().copied().collect();
    slots.sort_unstable();
    let expected: Vec<i64> = (0..SLOTS).map(|k| T0 + k * SECOND).collect();
    assert_eq!(slots, expected, "each slot fired by exactly one firer");
    // And exactly one event per slot is stored: the winners' and nobody else's.
    for (t, mine) in won.iter().enumerate() {
        for k in 0..SLOTS {
            let slot = T0 + k * SECOND;
            let stored = store.get_event(&format!("t{t}-{k}")).unwrap().is_some();
            assert_eq!(stored, mine.contains(&slot), "event of thread {t} slot {k}");
        }
    }
}
