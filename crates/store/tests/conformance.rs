//! The store conformance suite: every check runs against each backend of the `Store`
//! trait, so SQLite and PostgreSQL keep one contract (the trait's doc comments).
//!
//! A check is a plain function of a store, written against `&dyn Store`; the
//! `conformance!` list below turns each into one test per backend, named
//! `<backend>::<group>::<check>`. Every test gets a database of its own: a temporary
//! SQLite file, or a PostgreSQL database created on the server at `TERN_TEST_POSTGRES`
//! (default `postgres://postgres@127.0.0.1:5432/test`) and dropped afterwards. The
//! PostgreSQL tests fail, rather than skip, when that server is unreachable.

// The checks are test bodies outside `#[test]` functions, which `allow-unwrap-in-tests`
// does not see: an `unwrap` there is an assertion, as in any test.
#![allow(clippy::unwrap_used)]

#[path = "conformance/concurrency.rs"]
mod concurrency;
#[path = "conformance/dead_letters.rs"]
mod dead_letters;
#[path = "conformance/destinations.rs"]
mod destinations;
#[path = "conformance/durability.rs"]
mod durability;
#[path = "conformance/functions.rs"]
mod functions;
#[path = "conformance/layers.rs"]
mod layers;
#[path = "conformance/networks.rs"]
mod networks;
#[path = "conformance/queue.rs"]
mod queue;
#[path = "conformance/schedules.rs"]
mod schedules;
#[path = "conformance/settings.rs"]
mod settings;
#[path = "conformance/support.rs"]
mod support;
#[path = "conformance/urls.rs"]
mod urls;
#[path = "conformance/versions.rs"]
mod versions;

/// `runner: group [check, ...]` — each check `crate::group::check` becomes a test in
/// `sqlite::group` and `postgres::group`, run by `support::runner`: `with_store` for a
/// `fn(&dyn Store)`, `with_reopen` for a check that opens the database again.
macro_rules! conformance {
    ($($runner:ident: $group:ident [$($check:ident),* $(,)?]),* $(,)?) => {
        conformance!(@backend sqlite, Sqlite; $($runner: $group [$($check),*]),*);
        conformance!(@backend postgres, Postgres; $($runner: $group [$($check),*]),*);
    };
    (@backend $backend:ident, $db:ident; $($runner:ident: $group:ident [$($check:ident),*]),*) => {
        mod $backend {
            $(
                mod $group {
                    $(
                        #[test]
                        fn $check() {
                            crate::support::$runner::<crate::support::$db>(crate::$group::$check);
                        }
                    )*
                }
            )*
        }
    };
}

conformance! {
    with_store: functions [
        create_conflicts_with_an_existing_name,
        update_with_a_stale_revision_conflicts,
        get_and_delete_say_whether_the_function_exists,
        list_pages_by_name_after_a_marker,
        list_orders_names_bytewise,
        list_all_orders_by_namespace_then_name,
        usage_counts_functions_and_zipped_code_of_a_namespace,
        delete_takes_the_settings_and_the_events,
    ],
    with_store: settings [
        access_keys_are_upserted,
        meta_values_are_upserted,
        recent_logs_are_the_newest_lines_oldest_first,
        prune_logs_deletes_lines_older_than_the_cutoff,
        reserved_concurrency_is_set_replaced_and_removed,
        provisioned_concurrency_is_upserted_per_qualifier,
    ],
    with_store: layers [
        publish_numbers_versions_without_reusing_deleted_ones,
        get_finds_a_version_by_its_account,
        list_gives_layers_by_name_newest_version_first,
        delete_removes_one_version,
        layer_policy_is_replaced_only_under_its_current_revision,
    ],
    with_store: versions [
        publish_numbers_versions_from_one_and_never_reuses_a_number,
        publish_against_a_stale_revision_or_a_missing_function_fails,
        an_alias_routes_only_to_versions_that_exist,
        an_alias_update_needs_its_current_revision,
        a_version_an_alias_routes_to_cannot_be_deleted,
        deleting_the_function_takes_its_versions_and_aliases,
        deleting_an_alias_takes_its_url_and_settings,
        a_function_holds_at_most_the_version_limit,
        publishing_what_the_newest_version_holds_returns_that_version,
        a_function_holds_at_most_the_alias_limit,
    ],
    with_store: networks [
        networks_are_created_listed_and_deleted,
        creating_a_network_twice_conflicts,
        an_update_replaces_an_existing_network_only,
    ],
    with_store: urls [
        urls_are_found_by_qualifier_and_by_id,
        a_second_url_for_one_qualifier_conflicts,
        an_update_keeps_the_id_and_replaces_the_rest,
        urls_are_listed_by_qualifier_and_deleted_one_or_all,
        deleting_the_function_deletes_its_urls,
    ],
    with_store: queue [
        enqueued_events_are_stored_queued_and_due,
        a_repeated_key_within_the_window_is_a_duplicate,
        a_key_older_than_the_window_is_replaced,
        a_key_repeated_within_one_batch_is_a_duplicate_of_the_first,
        claim_takes_due_events_oldest_first_up_to_the_limit,
        a_claimed_event_carries_the_event,
        a_leased_event_is_claimed_again_only_after_its_lease_expires,
        settle_by_another_owner_changes_nothing,
        settle_succeeded_stores_the_response,
        settle_retry_counts_function_and_system_failures_apart,
        settle_failed_or_expired_goes_to_the_dead_letter_queue_when_asked,
        get_event_returns_every_attempt_in_order,
        renew_extends_only_the_owners_leases,
        abandon_frees_other_owners_leases_at_once,
        claim_skips_the_namespaces_it_is_told_to,
        one_settle_records_several_attempts_in_order,
        a_finished_event_keeps_its_payload_only_as_a_dead_letter,
    ],
    with_store: dead_letters [
        dead_letters_are_listed_by_request_id_after_a_marker,
        redrive_of_one_dead_letter_requeues_it_now_with_its_history,
        redrive_of_all_requeues_every_dead_letter_of_the_function,
        purge_deletes_dead_letters_only,
        prune_keeps_dead_letters_and_pending_events,
        prune_forgets_old_idempotency_keys,
        prune_removes_dead_letters_only_past_their_own_age,
        queue_depths_count_pending_events_per_namespace,
    ],
    with_store: destinations [
        event_invoke_configs_are_upserted_per_qualifier,
        event_invoke_configs_are_listed_by_qualifier,
        queue_messages_are_read_and_deleted_by_id,
        queues_are_kept_apart_per_namespace_and_name,
    ],
    with_store: schedules [
        schedules_are_created_listed_and_deleted,
        creating_a_schedule_twice_conflicts,
        pause_and_resume_set_the_next_slot_and_keep_the_last,
        due_schedules_are_the_enabled_ones_at_or_before_now_earliest_first,
        a_fire_step_moves_the_schedule_and_enqueues_its_event,
        a_fire_step_that_lost_its_compare_and_set_enqueues_nothing,
        a_slot_never_fires_at_or_before_the_last_one,
        deleting_the_function_deletes_its_schedules,
        concurrent_firers_of_one_slot_enqueue_it_once,
    ],
    with_reopen: durability [
        settings_survive_reopen,
        the_queue_survives_reopen,
    ],
    with_store: concurrency [
        concurrent_claimers_take_each_event_exactly_once,
        concurrent_enqueues_of_one_key_store_one_event,
        concurrent_publishes_number_layer_versions_uniquely,
        concurrent_publishes_number_function_versions_uniquely,
        a_publish_racing_an_update_never_publishes_the_replaced_revision,
        deleting_a_version_racing_an_alias_to_it_leaves_no_dangling_alias,
        concurrent_publishes_of_one_configuration_make_one_version,
    ],
}
