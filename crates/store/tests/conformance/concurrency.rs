//! Several threads on one store at once, as the dispatchers and API handlers of a
//! server (or of several servers on one PostgreSQL database) are.

use std::collections::HashMap;

use tern_store::{Enqueued, EventState, NewEvent, Settle, Store, StoreError};

use crate::support::{event, function, keyed, layer, release, LONG_LEASE, T0};

const THREADS: usize = 4;

pub fn concurrent_claimers_take_each_event_exactly_once(store: &dyn Store) {
    const EVENTS: usize = 400;
    let events: Vec<NewEvent> = (0..EVENTS)
        .map(|i| event(&format!("e{i:03}"), "default", "f", T0 + i as i64))
        .collect();
    for batch in events.chunks(100) {
        store.enqueue_events(batch, 0).unwrap();
    }
    let now = T0 + EVENTS as i64;
    let claimed: Vec<Vec<String>> = std::thread::scope(|s| {
        let claimers: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    let owner = format!("claimer-{t}");
                    let mut mine = Vec::new();
                    loop {
                        let batch = store.claim_events(&owner, now, LONG_LEASE, 7, &[]).unwrap();
                        if batch.is_empty() {
                            return mine;
                        }
                        for c in batch {
                            let done = Settle::Succeeded { response: None };
                            assert!(store
                                .settle_event(&c.request_id, &owner, &[], &done, now)
                                .unwrap());
                            mine.push(c.request_id);
                        }
                    }
                })
            })
            .collect();
        claimers
            .into_iter()
            .map(|c| c.join().expect("claimer thread"))
            .collect()
    });

    let mut times: HashMap<&str, usize> = HashMap::new();
    for id in claimed.iter().flatten() {
        *times.entry(id).or_default() += 1;
    }
    let twice: Vec<_> = times.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "claimed more than once: {twice:?}");
    assert_eq!(times.len(), EVENTS, "every event claimed");
    for e in &events {
        let state = store.get_event(&e.request_id).unwrap().unwrap().state;
        assert_eq!(state, EventState::Succeeded, "{}", e.request_id);
    }
    assert!(store
        .claim_events("late", now, LONG_LEASE, 10, &[])
        .unwrap()
        .is_empty());
}

pub fn concurrent_enqueues_of_one_key_store_one_event(store: &dyn Store) {
    const TRIES: usize = 25;
    let answers: Vec<(String, Enqueued)> = std::thread::scope(|s| {
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    (0..TRIES)
                        .map(|i| {
                            let id = format!("t{t}-{i:02}");
                            let e = keyed(event(&id, "default", "f", T0 + i as i64), "k");
                            let mut answer = store.enqueue_events(&[e], 0).unwrap();
                            (id, answer.remove(0))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        writers
            .into_iter()
            .flat_map(|w| w.join().expect("writer thread"))
            .collect()
    });
    let new: Vec<&String> = answers
        .iter()
        .filter(|(_, a)| *a == Enqueued::New)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(new.len(), 1, "exactly one event stored: {new:?}");
    let first = new[0].clone();
    for (id, answer) in &answers {
        if *id != first {
            assert_eq!(
                *answer,
                Enqueued::Duplicate {
                    request_id: first.clone()
                },
                "{id}"
            );
            assert_eq!(store.get_event(id).unwrap(), None);
        }
    }
}

pub fn concurrent_publishes_number_layer_versions_uniquely(store: &dyn Store) {
    const TRIES: usize = 10;
    let mut versions: Vec<u64> = std::thread::scope(|s| {
        let publishers: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(move || {
                    (0..TRIES)
                        .map(|_| {
                            store
                                .publish_layer_version(
                                    &layer("default", "123456789012", "deps"),
                                    "r",
                                )
                                .unwrap()
                                .version
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        publishers
            .into_iter()
            .flat_map(|p| p.join().expect("publisher thread"))
            .collect()
    });
    versions.sort_unstable();
    let expected: Vec<u64> = (1..=(THREADS * TRIES) as u64).collect();
    assert_eq!(versions, expected);
}

pub fn concurrent_publishes_number_function_versions_uniquely(store: &dyn Store) {
    const TRIES: usize = 10;
    let f = function("default", "f", 10);
    store.create_function(&f).unwrap();
    let mut versions: Vec<u64> = std::thread::scope(|s| {
        let publishers: Vec<_> = (0..THREADS)
            .map(|_| {
                let f = &f;
                s.spawn(move || {
                    (0..TRIES)
                        .map(|_| store.publish_version(&release(f), "r1").unwrap().version)
                        .map(|v| v.parse::<u64>().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        publishers
            .into_iter()
            .flat_map(|p| p.join().expect("publisher thread"))
            .collect()
    });
    versions.sort_unstable();
    let expected: Vec<u64> = (1..=(THREADS * TRIES) as u64).collect();
    assert_eq!(versions, expected);
}

/// A publish made against `$LATEST`'s revision either lands before an update of
/// `$LATEST` or fails its precondition: a version never holds the old configuration
/// published after the update committed.
pub fn a_publish_racing_an_update_never_publishes_the_replaced_revision(store: &dyn Store) {
    const ROUNDS: usize = 20;
    let f = function("default", "f", 10);
    store.create_function(&f).unwrap();
    let mut current = f.clone();
    for round in 0..ROUNDS {
        let mut next = current.clone();
        next.revision_id = format!("r{}", round + 2);
        next.memory_mb = 128 + round as u32 + 1;
        let (published, updated) = std::thread::scope(|s| {
            let publish = s.spawn(|| store.publish_version(&current, &current.revision_id));
            let update = s.spawn(|| store.update_function(&next, &current.revision_id));
            (publish.join().unwrap(), update.join().unwrap())
        });
        updated.unwrap();
        match published {
            Ok(v) => assert_eq!(v.memory_mb, current.memory_mb),
            Err(StoreError::Precondition(_)) => {}
            Err(e) => panic!("publish failed with {e}"),
        }
        current = next;
    }
    // Whatever won each round, every version holds a configuration $LATEST had.
    for v in store.list_versions("default", "f", 0, 100).unwrap() {
        assert!((128..=128 + ROUNDS as u32).contains(&v.memory_mb));
    }
}

/// DeleteFunction(Qualifier=N) racing CreateAlias to N: never both; an alias never
/// routes to a version that is gone.
pub fn deleting_a_version_racing_an_alias_to_it_leaves_no_dangling_alias(store: &dyn Store) {
    const ROUNDS: usize = 20;
    let f = function("default", "f", 10);
    store.create_function(&f).unwrap();
    for round in 0..ROUNDS {
        let version = store.publish_version(&release(&f), "r1").unwrap();
        let n: u64 = version.version.parse().unwrap();
        let mut alias = crate::versions::alias(&format!("a{round}"), &version.version, &[]);
        alias.function = "f".into();
        let (deleted, created) = std::thread::scope(|s| {
            let delete = s.spawn(|| store.delete_version("default", "f", n));
            let create = s.spawn(|| store.create_alias(&alias));
            (delete.join().unwrap(), create.join().unwrap())
        });
        match (deleted, created) {
            (Ok(true), Err(StoreError::NotFound(_))) => {
                assert!(store
                    .get_alias("default", "f", &alias.name)
                    .unwrap()
                    .is_none());
            }
            (Err(StoreError::Conflict(_)), Ok(())) => {
                assert!(store.get_version("default", "f", n).unwrap().is_some());
            }
            other => panic!("round {round}: delete and alias both {other:?}"),
        }
    }
}

/// Concurrent PublishVersion calls with nothing changed (two CI jobs releasing one
/// commit) make one version, as Lambda does, not one identical version each.
pub fn concurrent_publishes_of_one_configuration_make_one_version(store: &dyn Store) {
    let f = function("default", "f", 10);
    store.create_function(&f).unwrap();
    for round in 0..10 {
        let next = release(&f);
        let versions: Vec<String> = std::thread::scope(|s| {
            let publishers: Vec<_> = (0..THREADS)
                .map(|_| s.spawn(|| store.publish_version(&next, "r1").unwrap().version))
                .collect();
            publishers
                .into_iter()
                .map(|p| p.join().expect("publisher thread"))
                .collect()
        });
        assert_eq!(
            versions,
            vec![(round + 1).to_string(); THREADS],
            "round {round}"
        );
    }
}
