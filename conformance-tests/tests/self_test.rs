//! The suite catches broken stores: each deliberately broken variant of the reference store
//! fails the cases that guard the promise it breaks, and the correct store passes them.

mod support;

use std::future::Future;
use std::sync::Arc;

use narvik_conformance::cases::{concurrency, crud, data, engine, expiry, hostile_input, users};
use narvik_conformance::{Capabilities, CASES};
use narvik_core::SessionStore;
use support::{Bug, ReferenceStore, RequiredOnlyStore, TtlStore};

/// Runs a case on its own task and reports whether it passed (a panic is a failure).
async fn passes<F, Fut>(case: F, store: Arc<dyn SessionStore>, capabilities: Capabilities) -> bool
where
    F: FnOnce(Arc<dyn SessionStore>, Capabilities) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(case(store, capabilities)).await.is_ok()
}

/// Asserts that `case` passes on the correct store and fails on one with `bug`.
macro_rules! catches {
    ($bug:expr, $($case:path),+ $(,)?) => {{
        $(
            assert!(
                passes($case, Arc::new(ReferenceStore::new()), Capabilities::ALL).await,
                "{} fails on the correct reference store",
                stringify!($case)
            );
            assert!(
                !passes($case, Arc::new(ReferenceStore::broken($bug)), Capabilities::ALL).await,
                "{} did not catch {:?}",
                stringify!($case),
                $bug
            );
        )+
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upserting_save_is_caught() {
    catches!(
        Bug::SaveUpserts,
        crud::save_duplicate_id_is_typed_error_and_keeps_original
    );
    catches!(
        Bug::SaveOverwritesThenReportsDuplicate,
        crud::save_duplicate_id_is_typed_error_and_keeps_original
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_recreates_is_caught() {
    catches!(
        Bug::UpdateRecreates,
        crud::update_expiry_on_unknown_id_creates_nothing,
        crud::update_expiry_after_delete_creates_nothing,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_touches_other_fields_is_caught() {
    catches!(
        Bug::UpdateTouchesCreatedAt,
        crud::update_expiry_changes_only_expiry,
        users::fetch_for_user_records_equal_saved_ones,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lossy_round_trips_are_caught() {
    catches!(
        Bug::TruncatesToSeconds,
        crud::save_then_fetch_round_trips_every_field
    );
    catches!(
        Bug::FloatsBecomeIntegers,
        data::data_numbers_keep_their_kind
    );
    catches!(
        Bug::NullBecomesEmptyObject,
        data::data_empty_and_null_round_trip
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaking_user_listing_is_caught() {
    catches!(
        Bug::ListingLeaksEveryone,
        users::fetch_for_user_returns_exactly_that_users_live_sessions,
        users::fetch_for_user_unknown_user_is_empty,
    );
    catches!(
        Bug::ListingMatchesPrefix,
        users::fetch_for_user_returns_exactly_that_users_live_sessions
    );
    catches!(
        Bug::ListingIncludesExpired,
        users::fetch_for_user_excludes_expired,
        expiry::save_already_expired_record,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_deletion_that_hits_others_is_caught() {
    catches!(
        Bug::DeleteForUserMatchesPrefix,
        users::delete_for_user_leaves_other_users
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_expired_deletion_is_caught() {
    catches!(
        Bug::DeleteExpiredTakesLive,
        expiry::delete_expired_removes_exactly_the_expired,
        expiry::delete_expired_never_counts_live_records,
    );
    catches!(
        Bug::DeleteExpiredMiscounts,
        expiry::delete_expired_removes_exactly_the_expired,
        expiry::delete_expired_returns_the_count,
        expiry::delete_expired_on_empty_store_is_zero,
    );
    catches!(
        Bug::DeleteExpiredDeletesNothing,
        expiry::delete_expired_removes_exactly_the_expired
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_claiming_all_but_answering_unsupported_is_caught() {
    catches!(
        Bug::OptionalUnsupported,
        users::fetch_for_user_returns_exactly_that_users_live_sessions,
        users::delete_for_user_removes_all_of_them,
        expiry::delete_expired_on_empty_store_is_zero,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_declaring_required_only_but_not_answering_unsupported_is_caught() {
    // The full store answers the optional calls: declared absent, that is a failure, not a
    // silent pass.
    let full = || -> Arc<dyn SessionStore> { Arc::new(ReferenceStore::new()) };
    let required_only = || -> Arc<dyn SessionStore> { Arc::new(RequiredOnlyStore::default()) };
    let caps = Capabilities::REQUIRED_ONLY;
    assert!(!passes(users::fetch_for_user_unknown_user_is_empty, full(), caps).await);
    assert!(!passes(users::delete_for_user_unknown_user_is_ok, full(), caps).await);
    assert!(!passes(expiry::delete_expired_on_empty_store_is_zero, full(), caps).await);
    assert!(
        passes(
            users::fetch_for_user_unknown_user_is_empty,
            required_only(),
            caps
        )
        .await
    );
    assert!(
        passes(
            users::delete_for_user_unknown_user_is_ok,
            required_only(),
            caps
        )
        .await
    );
    assert!(
        passes(
            expiry::delete_expired_on_empty_store_is_zero,
            required_only(),
            caps
        )
        .await
    );
    // And a store with only the required calls cannot pass as ALL.
    let all = Capabilities::ALL;
    assert!(
        !passes(
            users::fetch_for_user_unknown_user_is_empty,
            required_only(),
            all
        )
        .await
    );
    assert!(
        !passes(
            expiry::delete_expired_on_empty_store_is_zero,
            required_only(),
            all
        )
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_or_doubled_writes_under_concurrency_are_caught() {
    catches!(
        Bug::DropsSomeSaves,
        concurrency::concurrent_saves_of_distinct_ids_all_land,
        concurrency::mixed_stress_10000_ops_exact_state,
    );
    catches!(
        Bug::SaveUpserts,
        concurrency::concurrent_saves_of_same_id_exactly_one_wins,
        concurrency::mixed_stress_10000_ops_exact_state,
        engine::duplicate_id_on_create_retries_with_fresh_token,
    );
    catches!(
        Bug::UpdateRecreates,
        concurrency::delete_racing_update_never_resurrects
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_mistakes_are_caught() {
    catches!(
        Bug::DeleteWildcard,
        hostile_input::session_ids_are_data_not_syntax
    );
    catches!(
        Bug::UserIdsMatchedWithLike,
        hostile_input::user_ids_are_data_not_syntax
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_cases_catch_stores_that_ignore_writes() {
    catches!(
        Bug::UpdateIgnored,
        crud::update_expiry_changes_only_expiry,
        engine::validate_in_last_half_extends_to_now_plus_lifetime_and_sets_extended,
        engine::absolute_cap_stops_extension_and_expires,
        concurrency::concurrent_updates_keep_a_valid_expiry,
    );
    catches!(
        Bug::DeleteIgnored,
        crud::delete_removes_record,
        engine::validate_after_expiry_is_none_and_deletes,
        engine::invalidate_then_validate_is_none,
        engine::rotate_gives_new_token_and_kills_old,
        engine::invalidate_other_sessions_keeps_only_current,
        engine::per_user_cap_evicts_oldest,
        expiry::fetch_of_expired_record,
    );
    catches!(
        Bug::OptionalUnsupported,
        engine::per_user_cap_evicts_oldest,
        engine::invalidate_other_sessions_keeps_only_current,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_expired_fetch_declaration_is_caught() {
    let case = expiry::fetch_of_expired_record;
    // Keeps and returns expired records, but declares the TTL behaviour.
    assert!(
        !passes(
            case,
            Arc::new(ReferenceStore::new()),
            Capabilities::TTL_NATIVE
        )
        .await
    );
    // Hides expired records, but declares that it returns them.
    assert!(!passes(case, Arc::new(TtlStore::default()), Capabilities::ALL).await);
    assert!(
        passes(
            case,
            Arc::new(TtlStore::default()),
            Capabilities::TTL_NATIVE
        )
        .await
    );
    assert!(passes(case, Arc::new(ReferenceStore::new()), Capabilities::ALL).await);
}

#[test]
fn the_catalogue_is_complete() {
    // Every case name of CONFORMANCE.md, as the catalogue spells it.
    const CATALOGUE: &[&str] = &[
        "save_then_fetch_round_trips_every_field",
        "fetch_unknown_id_is_none",
        "save_duplicate_id_is_typed_error_and_keeps_original",
        "update_expiry_changes_only_expiry",
        "update_expiry_on_unknown_id_creates_nothing",
        "update_expiry_after_delete_creates_nothing",
        "delete_removes_record",
        "delete_is_idempotent",
        "delete_leaves_other_records",
        "data_nested_objects_and_arrays_round_trip",
        "data_numbers_keep_their_kind",
        "data_unicode_and_escapes_round_trip",
        "data_64_kib_value_round_trips",
        "data_empty_and_null_round_trip",
        "data_type_mismatch_is_corrupt_record_error",
        "fetch_for_user_returns_exactly_that_users_live_sessions",
        "fetch_for_user_excludes_expired",
        "fetch_for_user_unknown_user_is_empty",
        "fetch_for_user_1000_sessions",
        "delete_for_user_removes_all_of_them",
        "delete_for_user_leaves_other_users",
        "delete_for_user_unknown_user_is_ok",
        "delete_expired_removes_exactly_the_expired",
        "delete_expired_returns_the_count",
        "delete_expired_on_empty_store_is_zero",
        "fetch_of_expired_record",
        "save_already_expired_record",
        "concurrent_saves_of_distinct_ids_all_land",
        "concurrent_saves_of_same_id_exactly_one_wins",
        "delete_racing_update_never_resurrects",
        "concurrent_updates_keep_a_valid_expiry",
        "mixed_stress_10000_ops_exact_state",
        "user_ids_are_data_not_syntax",
        "create_returns_32_char_base32_token_and_sha256_hex_id",
        "create_then_validate_returns_same_session_not_extended",
        "validate_in_first_half_does_not_write",
        "validate_in_last_half_extends_to_now_plus_lifetime_and_sets_extended",
        "validate_after_expiry_is_none_and_deletes",
        "validate_unknown_token_is_none",
        "validate_malformed_token_is_none_without_store_call",
        "invalidate_then_validate_is_none",
        "rotate_gives_new_token_and_kills_old",
        "invalidate_other_sessions_keeps_only_current",
        "absolute_cap_stops_extension_and_expires",
        "per_user_cap_evicts_oldest",
        "duplicate_id_on_create_retries_with_fresh_token",
        "typed_data_round_trips_through_engine",
        "tokens_never_in_debug_output",
    ];
    let names: Vec<&str> = CASES.iter().map(|(_, name)| *name).collect();
    for case in CATALOGUE {
        assert!(names.contains(case), "the catalogue case {case} is missing");
    }
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "a case name is listed twice");
}

#[test]
fn the_readme_lists_every_case() {
    let readme = include_str!("../README.md");
    for (module, name) in CASES {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README.md does not list {module}::{name}"
        );
    }
}
