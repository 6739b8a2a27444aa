//! The suite catches broken stores: each deliberately broken variant of the reference store
//! (see [`support::Bug`]) is rejected by every case its row of [`REJECTED`] names, and the
//! correct store of the same flavour passes those cases.
//!
//! The table is the one list: the README's section "The suite tests itself" is checked
//! against it, and every [`Bug`] variant must appear in it (or, honestly, in [`NOT_CAUGHT`]).

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use narvik_conformance::cases;
use narvik_core::SessionStore;
use support::{Bug, Flavour};

/// A case, as the table holds it.
type CaseFn = fn(
    Arc<dyn SessionStore>,
    narvik_conformance::Capabilities,
) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// A named case of the suite.
#[derive(Clone, Copy)]
struct Case {
    /// `module::name`.
    name: &'static str,
    run: CaseFn,
}

impl Case {
    /// The case name without its module, as the README spells it.
    fn short_name(&self) -> &'static str {
        self.name.rsplit("::").next().unwrap_or(self.name)
    }
}

macro_rules! case {
    ($module:ident :: $name:ident) => {
        Case {
            name: concat!(stringify!($module), "::", stringify!($name)),
            run: |store, capabilities| Box::pin(cases::$module::$name(store, capabilities)),
        }
    };
}

/// Every broken store the suite rejects, with the cases that guard the promise it breaks.
/// Each named case must fail on the broken store and pass on the correct one. The cheapest
/// catching cases come first; a row names more than one where several guard the promise.
const REJECTED: &[(Bug, &[Case])] = &[
    (
        Bug::SaveUpserts,
        &[
            case!(crud::save_duplicate_id_is_typed_error_and_keeps_original),
            case!(concurrency::concurrent_saves_of_same_id_exactly_one_wins),
            case!(engine::duplicate_id_on_create_retries_with_fresh_token),
        ],
    ),
    (
        Bug::SaveOverwritesThenReportsDuplicate,
        &[
            case!(crud::save_duplicate_id_is_typed_error_and_keeps_original),
            case!(engine::duplicate_id_on_create_retries_with_fresh_token),
        ],
    ),
    (
        Bug::DuplicateIgnored,
        &[
            case!(crud::save_duplicate_id_is_typed_error_and_keeps_original),
            case!(concurrency::concurrent_saves_of_same_id_exactly_one_wins),
            case!(engine::duplicate_id_on_create_retries_with_fresh_token),
        ],
    ),
    (
        Bug::DuplicateNotTyped,
        &[
            case!(crud::save_duplicate_id_is_typed_error_and_keeps_original),
            case!(engine::duplicate_id_on_create_retries_with_fresh_token),
        ],
    ),
    (
        Bug::SaveCheckThenInsert,
        &[case!(
            concurrency::concurrent_saves_of_same_id_exactly_one_wins
        )],
    ),
    (
        Bug::DropsSomeSaves,
        &[
            case!(concurrency::concurrent_saves_of_distinct_ids_all_land),
            case!(concurrency::mixed_stress_10000_ops_exact_state),
        ],
    ),
    (
        Bug::TruncatesToSeconds,
        &[case!(crud::save_then_fetch_round_trips_every_field)],
    ),
    (
        Bug::FloatsBecomeIntegers,
        &[case!(data::data_numbers_keep_their_kind)],
    ),
    (
        Bug::NullBecomesEmptyObject,
        &[case!(data::data_empty_and_null_round_trip)],
    ),
    (
        Bug::IntegersThroughF64,
        &[
            case!(data::data_integers_past_2_pow_53_round_trip_exactly),
            case!(data::data_i64_near_extremes_round_trip),
        ],
    ),
    (
        Bug::U64ClampedToI64,
        &[case!(data::data_u64_max_round_trips)],
    ),
    (
        Bug::U64WrappedToI64,
        &[case!(data::data_u64_max_round_trips)],
    ),
    (
        Bug::Floats15Digits,
        &[case!(
            data::data_floats_needing_17_digits_round_trip_bit_exactly
        )],
    ),
    (
        Bug::Floats16Digits,
        &[case!(
            data::data_floats_needing_17_digits_round_trip_bit_exactly
        )],
    ),
    (
        Bug::FloatsThroughF32,
        &[
            case!(data::data_numbers_keep_their_kind),
            case!(data::data_floats_needing_17_digits_round_trip_bit_exactly),
        ],
    ),
    (
        Bug::DataControlCharsStripped,
        &[
            case!(data::data_unicode_and_escapes_round_trip),
            case!(data::data_nul_and_control_characters_round_trip_or_are_invalid_data),
        ],
    ),
    (
        Bug::DataNulReplaced,
        &[case!(
            data::data_nul_and_control_characters_round_trip_or_are_invalid_data
        )],
    ),
    (
        Bug::DataCappedAt64KiB,
        &[case!(data::data_64_kib_value_round_trips)],
    ),
    (
        Bug::UserIdsAsciiCaseInsensitive,
        &[case!(identities::user_ids_differing_by_case_stay_distinct)],
    ),
    (
        Bug::UserIdsUnicodeCaseInsensitive,
        &[case!(identities::user_ids_differing_by_case_stay_distinct)],
    ),
    (
        Bug::UserIdsTrimmed,
        &[case!(
            identities::user_ids_differing_by_surrounding_whitespace_stay_distinct
        )],
    ),
    (
        Bug::UserIdsAsciiTrimmedOnSave,
        &[case!(
            identities::user_ids_differing_by_surrounding_whitespace_stay_distinct
        )],
    ),
    (
        Bug::UserIdsTrailingControlStripped,
        &[case!(
            identities::user_ids_differing_by_trailing_control_character_stay_distinct
        )],
    ),
    (
        Bug::UserIdsNfcNormalised,
        &[case!(
            identities::user_ids_differing_by_normalisation_stay_distinct
        )],
    ),
    (
        Bug::UserIdsTruncatedTo255Bytes,
        &[case!(hostile_input::user_ids_are_data_not_syntax)],
    ),
    (
        Bug::SessionIdsCaseInsensitive,
        &[
            case!(identities::session_ids_differing_by_case_stay_distinct),
            case!(hostile_input::session_ids_are_data_not_syntax),
        ],
    ),
    (
        Bug::SessionIdsTrailingSpaceIgnored,
        &[
            case!(identities::session_ids_differing_by_whitespace_or_control_stay_distinct),
            case!(hostile_input::session_ids_are_data_not_syntax),
        ],
    ),
    (
        Bug::SessionIdsNfdNormalised,
        &[case!(
            identities::session_ids_differing_by_normalisation_stay_distinct
        )],
    ),
    (
        Bug::IdsCutAtNul,
        &[case!(identities::nul_in_ids_round_trips_or_is_invalid_data)],
    ),
    (
        Bug::IdsDropNul,
        &[case!(identities::nul_in_ids_round_trips_or_is_invalid_data)],
    ),
    (
        Bug::UpdateRecreates,
        &[
            case!(crud::update_expiry_on_unknown_id_creates_nothing),
            case!(crud::update_expiry_after_delete_creates_nothing),
            case!(concurrency::delete_racing_update_never_resurrects),
        ],
    ),
    (
        Bug::UpdateTouchesCreatedAt,
        &[
            case!(crud::update_expiry_changes_only_expiry),
            case!(users::fetch_for_user_records_equal_saved_ones),
        ],
    ),
    (
        Bug::UpdateIgnored,
        &[
            case!(crud::update_expiry_changes_only_expiry),
            case!(engine::validate_in_last_half_extends_to_now_plus_lifetime_and_sets_extended),
            case!(engine::absolute_cap_stops_extension_and_expires),
            case!(concurrency::concurrent_updates_keep_a_valid_expiry),
        ],
    ),
    (
        Bug::UpdateRevivesExpired,
        &[case!(expiry::update_expiry_on_expired_record_does_nothing)],
    ),
    (
        Bug::UpdateReadModifyWrite,
        &[case!(concurrency::delete_racing_update_never_resurrects)],
    ),
    (
        Bug::UpdateRecordExpiryIgnored,
        &[
            case!(expiry::update_record_expiry_follows_the_same_rules),
            case!(engine::validate_in_last_half_extends_to_now_plus_lifetime_and_sets_extended),
            case!(engine::absolute_cap_stops_extension_and_expires),
        ],
    ),
    (
        Bug::UpdateRecordExpiryKeyedByUserId,
        &[
            case!(expiry::update_record_expiry_follows_the_same_rules),
            case!(engine::validate_in_last_half_extends_to_now_plus_lifetime_and_sets_extended),
            case!(engine::absolute_cap_stops_extension_and_expires),
        ],
    ),
    (
        Bug::UpdateRecordExpiryRecreates,
        &[
            case!(expiry::update_record_expiry_follows_the_same_rules),
            case!(concurrency::update_record_expiry_racing_delete_never_resurrects),
        ],
    ),
    (
        Bug::UpdateRecordExpiryRevivesExpired,
        &[case!(expiry::update_record_expiry_follows_the_same_rules)],
    ),
    (
        Bug::UpdateRecordReadModifyWrite,
        &[case!(
            concurrency::update_record_expiry_racing_delete_never_resurrects
        )],
    ),
    (
        Bug::DeleteWildcard,
        &[case!(hostile_input::session_ids_are_data_not_syntax)],
    ),
    (
        Bug::DeleteIgnored,
        &[
            case!(crud::delete_removes_record),
            case!(engine::invalidate_then_validate_is_none),
            case!(engine::rotate_gives_new_token_and_kills_old),
            case!(expiry::fetch_of_expired_record),
        ],
    ),
    (
        Bug::DeleteMissingIsError,
        &[case!(crud::delete_is_idempotent)],
    ),
    (
        Bug::FetchMissingIsError,
        &[
            case!(crud::fetch_unknown_id_is_none),
            case!(engine::validate_unknown_token_is_none),
        ],
    ),
    (
        Bug::ListingMatchesPrefix,
        &[case!(
            users::fetch_for_user_returns_exactly_that_users_live_sessions
        )],
    ),
    (
        Bug::ListingIncludesExpired,
        &[
            case!(users::fetch_for_user_excludes_expired),
            case!(expiry::save_already_expired_record),
        ],
    ),
    (
        Bug::ListingLeaksEveryone,
        &[
            case!(users::fetch_for_user_returns_exactly_that_users_live_sessions),
            case!(users::fetch_for_user_unknown_user_is_empty),
        ],
    ),
    (
        Bug::UserIdsMatchedWithLike,
        &[case!(hostile_input::user_ids_are_data_not_syntax)],
    ),
    (
        Bug::ListingCappedAt1000,
        &[case!(scale::fetch_for_user_2500_sessions)],
    ),
    (
        Bug::ListingCappedAt2000,
        &[case!(scale::fetch_for_user_2500_sessions)],
    ),
    (
        Bug::ListingStaleExpiry,
        &[
            case!(users::fetch_for_user_records_equal_saved_ones),
            case!(expiry::update_record_expiry_follows_the_same_rules),
        ],
    ),
    (
        Bug::ListingDuplicatesUpdated,
        &[
            case!(users::fetch_for_user_records_equal_saved_ones),
            case!(expiry::update_record_expiry_follows_the_same_rules),
        ],
    ),
    (
        Bug::ListingUsesWallClock,
        &[
            case!(expiry::fetch_for_user_filters_on_the_given_now),
            case!(engine::manual_clock_agrees_across_validation_listing_and_purge),
        ],
    ),
    (
        Bug::ListingIncludesExpiresAtNow,
        &[case!(expiry::fetch_for_user_filters_on_the_given_now)],
    ),
    (
        Bug::DeleteForUserMatchesPrefix,
        &[case!(users::delete_for_user_leaves_other_users)],
    ),
    (
        Bug::DeleteForUserOneBatchOf1000,
        &[case!(scale::delete_for_user_1500_sessions)],
    ),
    (
        Bug::DeleteForUserLeavesRecords,
        &[case!(users::delete_for_user_removes_all_of_them)],
    ),
    (
        Bug::DeleteForUnknownUserIsError,
        &[
            case!(users::delete_for_user_unknown_user_is_ok),
            case!(capabilities::declared_capabilities_match_the_calls),
        ],
    ),
    (
        Bug::DeleteForUserRewritesSnapshot,
        &[case!(
            concurrency::delete_for_user_racing_saves_of_others_leaves_them
        )],
    ),
    (
        Bug::UpdateRecordExpiryMovesAllOfUser,
        &[case!(expiry::update_record_expiry_follows_the_same_rules)],
    ),
    (
        Bug::PurgeCountThenDelete,
        &[case!(concurrency::concurrent_purges_count_each_record_once)],
    ),
    (
        Bug::DeleteForUserDropsIndexRace,
        &[case!(
            concurrency::concurrent_save_and_delete_for_user_never_leaves_orphans
        )],
    ),
    (
        Bug::DeleteExpiredTakesLive,
        &[
            case!(expiry::delete_expired_removes_exactly_the_expired),
            case!(expiry::delete_expired_never_counts_live_records),
        ],
    ),
    (
        Bug::DeleteExpiredMiscounts,
        &[
            case!(expiry::delete_expired_removes_exactly_the_expired),
            case!(expiry::delete_expired_returns_the_count),
            case!(expiry::delete_expired_on_empty_store_is_zero),
        ],
    ),
    (
        Bug::DeleteExpiredDeletesNothing,
        &[case!(expiry::delete_expired_removes_exactly_the_expired)],
    ),
    (
        Bug::PurgeCappedAt1000,
        &[case!(scale::delete_expired_5000_among_live_counts_exactly)],
    ),
    (
        Bug::PurgeCappedAt4096CountsAll,
        &[case!(scale::delete_expired_5000_among_live_counts_exactly)],
    ),
    (
        Bug::PurgeUsesWallClock,
        &[
            case!(expiry::delete_expired_cuts_off_at_the_given_now),
            case!(engine::manual_clock_agrees_across_validation_listing_and_purge),
        ],
    ),
    (
        Bug::PurgeSparesExpiresAtNow,
        &[case!(expiry::delete_expired_cuts_off_at_the_given_now)],
    ),
    (
        Bug::TtlExtensionKeepsServerDeadline,
        &[case!(expiry::extension_moves_the_stores_own_expiry)],
    ),
    (
        Bug::TtlSaveOfExpiredFails,
        &[case!(expiry::save_already_expired_record)],
    ),
    (
        Bug::TtlPastExpiryPersists,
        &[case!(expiry::save_already_expired_record)],
    ),
    (
        Bug::LifetimeDroppedAtSave,
        &[case!(
            crud::save_then_fetch_round_trips_lifetime_and_data_version
        )],
    ),
    (
        Bug::DataVersionResetAtSave,
        &[case!(
            crud::save_then_fetch_round_trips_lifetime_and_data_version
        )],
    ),
    (
        Bug::DataUpdateIgnoresVersion,
        &[case!(
            data_updates::update_data_on_stale_version_changes_nothing
        )],
    ),
    (
        Bug::DataUpdateKeepsVersion,
        &[
            case!(data_updates::update_data_replaces_data_and_bumps_version),
            case!(data_updates::concurrent_data_updates_never_lose_one),
        ],
    ),
    (
        Bug::DataUpdateRecreates,
        &[
            case!(data_updates::update_data_on_missing_or_deleted_record_creates_nothing),
            case!(capabilities::declared_capabilities_match_the_calls),
        ],
    ),
    (
        Bug::DataUpdateUsesWallClock,
        &[case!(
            data_updates::update_data_on_record_expired_at_now_does_nothing
        )],
    ),
    (
        Bug::DataUpdateWritesHandedRecord,
        &[case!(
            data_updates::update_data_replaces_data_and_bumps_version
        )],
    ),
    (
        Bug::DataUpdateCheckThenWrite,
        &[case!(data_updates::concurrent_data_updates_never_lose_one)],
    ),
    (
        Bug::DataUpdateReadModifyWrite,
        &[
            case!(data_updates::data_update_racing_delete_never_resurrects),
            case!(data_updates::data_update_racing_extension_keeps_both),
        ],
    ),
    (
        Bug::DataUpdateTouchesWholeUser,
        &[case!(data_updates::update_data_leaves_other_records)],
    ),
    (
        Bug::DataUpdateDeclaredButUnsupported,
        &[
            case!(capabilities::declared_capabilities_match_the_calls),
            case!(data_updates::update_data_replaces_data_and_bumps_version),
        ],
    ),
    (
        Bug::OptionalUnsupported,
        &[
            case!(capabilities::declared_capabilities_match_the_calls),
            case!(users::fetch_for_user_unknown_user_is_empty),
            case!(users::delete_for_user_unknown_user_is_ok),
            case!(expiry::delete_expired_on_empty_store_is_zero),
            case!(engine::invalidate_other_sessions_keeps_only_current),
            case!(engine::per_user_cap_evicts_oldest),
        ],
    ),
    (
        Bug::DeclaresAllImplementsListingOnly,
        &[
            case!(capabilities::declared_capabilities_match_the_calls),
            case!(users::delete_for_user_unknown_user_is_ok),
            case!(expiry::delete_expired_on_empty_store_is_zero),
        ],
    ),
    (
        Bug::DeclaresRequiredOnlyButServes,
        &[
            case!(capabilities::declared_capabilities_match_the_calls),
            case!(users::fetch_for_user_unknown_user_is_empty),
            case!(users::delete_for_user_unknown_user_is_ok),
            case!(expiry::delete_expired_on_empty_store_is_zero),
            case!(engine::per_user_cap_needs_declared_listing),
        ],
    ),
    (
        Bug::DeclaresReturnedButHides,
        &[
            case!(expiry::fetch_of_expired_record),
            case!(expiry::save_already_expired_record),
        ],
    ),
    (
        Bug::DeclaresHiddenButReturns,
        &[case!(expiry::fetch_of_expired_record)],
    ),
    (
        Bug::DeclaresKeepsExpiredButDrops,
        &[
            case!(expiry::save_already_expired_record),
            case!(expiry::fetch_of_expired_record),
            case!(expiry::delete_expired_returns_the_count),
        ],
    ),
    (
        Bug::DeclaresExactButServerExpires,
        &[
            case!(expiry::delete_expired_removes_exactly_the_expired),
            case!(expiry::delete_expired_returns_the_count),
            case!(scale::delete_expired_5000_among_live_counts_exactly),
        ],
    ),
    (
        Bug::NameBreaksLogLines,
        &[case!(capabilities::the_store_names_itself)],
    ),
];

/// Broken stores that no case of the suite rejects, with the case that should. Kept out of
/// [`REJECTED`] so that its count stays honest.
const NOT_CAUGHT: &[(Bug, &str)] = &[];

/// How many case runs go at once: enough to keep both cores busy, few enough that a case
/// timing a 1.5 s expiry is never starved.
const PARALLEL_RUNS: usize = 6;

/// Runs `case` on `store` (with the store's own declaration) on its own task; true if it
/// passed (a panic is a failure).
async fn passes(case: Case, store: Arc<dyn SessionStore>) -> bool {
    let capabilities = store.capabilities();
    tokio::spawn((case.run)(store, capabilities)).await.is_ok()
}

/// Runs every `(label, case, store, expected pass)` on its own task, a few at a time, and
/// returns a line for each run whose outcome was not the expected one.
async fn run_all(runs: Vec<(String, Case, Arc<dyn SessionStore>, bool)>) -> Vec<String> {
    let permits = Arc::new(tokio::sync::Semaphore::new(PARALLEL_RUNS));
    let handles: Vec<_> = runs
        .into_iter()
        .map(|(label, case, store, should_pass)| {
            let permits = Arc::clone(&permits);
            tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.expect("never closed");
                let started = Instant::now();
                let passed = passes(case, store).await;
                let took = started.elapsed();
                if took > Duration::from_secs(5) {
                    eprintln!("slow: {label} took {took:?}");
                }
                (passed != should_pass).then_some(label)
            })
        })
        .collect();
    let mut wrong = Vec::new();
    for handle in handles {
        if let Some(label) = handle.await.expect("the runner does not panic") {
            wrong.push(label);
        }
    }
    wrong
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broken_store_is_rejected_by_its_cases() {
    let runs = REJECTED
        .iter()
        .flat_map(|(bug, cases)| {
            cases.iter().map(move |case| {
                (
                    format!("{} did not reject {bug:?}", case.name),
                    *case,
                    bug.store(),
                    false,
                )
            })
        })
        .collect();
    let missed = run_all(runs).await;
    assert!(
        missed.is_empty(),
        "broken stores got through:\n{}",
        missed.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_correct_stores_pass_the_cases_that_reject_the_broken_ones() {
    let mut distinct: BTreeMap<(String, &str), (Flavour, Case)> = BTreeMap::new();
    for (bug, cases) in REJECTED {
        for case in *cases {
            let flavour = bug.flavour();
            distinct.insert((format!("{flavour:?}"), case.name), (flavour, *case));
        }
    }
    let runs = distinct
        .into_values()
        .map(|(flavour, case)| {
            (
                format!("{} fails on the correct {flavour:?} store", case.name),
                case,
                flavour.correct_store(),
                true,
            )
        })
        .collect();
    let failed = run_all(runs).await;
    assert!(
        failed.is_empty(),
        "the correct reference store fails:\n{}",
        failed.join("\n")
    );
}

#[test]
fn every_bug_is_in_the_table_once() {
    let mut seen = BTreeMap::new();
    for bug in REJECTED
        .iter()
        .map(|(bug, _)| bug)
        .chain(NOT_CAUGHT.iter().map(|(bug, _)| bug))
    {
        *seen.entry(*bug).or_insert(0) += 1;
    }
    for bug in Bug::ALL {
        assert_eq!(
            seen.get(bug),
            Some(&1),
            "{bug:?} must be in exactly one of REJECTED and NOT_CAUGHT"
        );
    }
    assert_eq!(seen.len(), Bug::ALL.len());
    for (bug, cases) in REJECTED {
        assert!(
            !cases.is_empty(),
            "{bug:?} is listed as rejected by no case"
        );
        let mut names: Vec<&str> = cases.iter().map(|case| case.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), cases.len(), "{bug:?} names a case twice");
    }
}

/// The README section "The suite tests itself", as the table says it.
fn readme_section() -> String {
    let mut section = format!(
        "`tests/self_test.rs` builds **{} broken reference stores**, each breaking one rule\n\
         of the contract the way real adapters have, and checks that every case named for it\n\
         rejects it while the correct store of the same flavour passes that case:\n\n",
        REJECTED.len()
    );
    for (bug, cases) in REJECTED {
        let names: Vec<String> = cases
            .iter()
            .map(|case| format!("`{}`", case.short_name()))
            .collect();
        section.push_str(&format!(
            "- `{bug:?}`: {} Rejected by {}.\n",
            bug.describe(),
            names.join(", ")
        ));
    }
    if !NOT_CAUGHT.is_empty() {
        section.push_str(&format!(
            "\n{} more broken stores are built, but no case rejects them yet (they are not\n\
             counted above):\n\n",
            NOT_CAUGHT.len()
        ));
        for (bug, should) in NOT_CAUGHT {
            section.push_str(&format!(
                "- `{bug:?}`: {} Should be rejected by {should}.\n",
                bug.describe()
            ));
        }
    }
    section
}

#[test]
fn the_readme_describes_every_broken_store() {
    let readme = include_str!("../README.md");
    let Some((_, rest)) = readme.split_once("## The suite tests itself\n") else {
        panic!("README.md has no section \"## The suite tests itself\"");
    };
    let section = rest.split("\n## ").next().unwrap_or(rest);
    assert!(
        section.contains(&readme_section()),
        "README.md's section \"The suite tests itself\" is out of date; it must contain:\n\n{}",
        readme_section()
    );
}

/// Prints the README section: `cargo test --test self_test -- --ignored --nocapture`.
#[test]
#[ignore = "prints the README section"]
fn print_the_readme_section() {
    println!("{}", readme_section());
}
