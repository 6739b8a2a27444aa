//! The catalogue itself: every case CONFORMANCE.md and the v2 floor name is in the suite, the
//! README lists every case and states their number, and the suite has at least 75.

use narvik_conformance::CASES;

/// Every case name of CONFORMANCE.md that still belongs to the suite, and every case of the
/// v2 floor (notes/cases.md), as the catalogue spells them.
const CATALOGUE: &[&str] = &[
    // crud
    "save_then_fetch_round_trips_every_field",
    "fetch_unknown_id_is_none",
    "save_duplicate_id_is_typed_error_and_keeps_original",
    "update_expiry_changes_only_expiry",
    "update_expiry_on_unknown_id_creates_nothing",
    "update_expiry_after_delete_creates_nothing",
    "delete_removes_record",
    "delete_is_idempotent",
    "delete_leaves_other_records",
    // data
    "data_nested_objects_and_arrays_round_trip",
    "data_numbers_keep_their_kind",
    "data_unicode_and_escapes_round_trip",
    "data_64_kib_value_round_trips",
    "data_empty_and_null_round_trip",
    "data_type_mismatch_is_corrupt_record_error",
    "data_integers_past_2_pow_53_round_trip_exactly",
    "data_i64_near_extremes_round_trip",
    "data_u64_max_round_trips",
    "data_floats_needing_17_digits_round_trip_bit_exactly",
    "data_nul_and_control_characters_round_trip_or_are_invalid_data",
    // users
    "fetch_for_user_returns_exactly_that_users_live_sessions",
    "fetch_for_user_excludes_expired",
    "fetch_for_user_unknown_user_is_empty",
    "fetch_for_user_1000_sessions",
    "delete_for_user_removes_all_of_them",
    "delete_for_user_leaves_other_users",
    "delete_for_user_unknown_user_is_ok",
    "user_ids_are_data_not_syntax",
    // scale
    "fetch_for_user_2500_sessions",
    "delete_for_user_1500_sessions",
    "delete_expired_5000_among_live_counts_exactly",
    // identities
    "user_ids_differing_by_case_stay_distinct",
    "user_ids_differing_by_surrounding_whitespace_stay_distinct",
    "user_ids_differing_by_trailing_control_character_stay_distinct",
    "user_ids_differing_by_normalisation_stay_distinct",
    "session_ids_differing_by_case_stay_distinct",
    "session_ids_differing_by_whitespace_or_control_stay_distinct",
    "session_ids_differing_by_normalisation_stay_distinct",
    "nul_in_ids_round_trips_or_is_invalid_data",
    // expiry
    "delete_expired_removes_exactly_the_expired",
    "delete_expired_returns_the_count",
    "delete_expired_on_empty_store_is_zero",
    "fetch_of_expired_record",
    "save_already_expired_record",
    "update_expiry_on_expired_record_does_nothing",
    "update_record_expiry_follows_the_same_rules",
    "extension_moves_the_stores_own_expiry",
    "fetch_for_user_filters_on_the_given_now",
    "delete_expired_cuts_off_at_the_given_now",
    // capabilities
    "declared_capabilities_match_the_calls",
    // concurrency
    "concurrent_saves_of_distinct_ids_all_land",
    "concurrent_saves_of_same_id_exactly_one_wins",
    "delete_racing_update_never_resurrects",
    "concurrent_updates_keep_a_valid_expiry",
    "mixed_stress_10000_ops_exact_state",
    "update_record_expiry_racing_delete_never_resurrects",
    "delete_for_user_racing_saves_of_others_leaves_them",
    "concurrent_save_and_delete_for_user_never_leaves_orphans",
    "concurrent_purges_count_each_record_once",
    // engine
    "create_returns_32_char_base32_token_and_sha256_hex_id",
    "create_then_validate_returns_same_session_not_extended",
    "validate_in_first_half_does_not_write",
    "validate_in_last_half_extends_to_now_plus_lifetime_and_sets_extended",
    "validate_after_expiry_is_none_and_deletes",
    "validate_unknown_token_is_none",
    "invalidate_then_validate_is_none",
    "rotate_gives_new_token_and_kills_old",
    "invalidate_other_sessions_keeps_only_current",
    "absolute_cap_stops_extension_and_expires",
    "per_user_cap_evicts_oldest",
    "duplicate_id_on_create_retries_with_fresh_token",
    "typed_data_round_trips_through_engine",
    "manual_clock_agrees_across_validation_listing_and_purge",
    "per_user_cap_needs_declared_listing",
];

/// Checks of the catalogue that cannot fail against any store, and so live in narvik-core's
/// own tests (narvik-core/tests/engine_checks.rs), listed apart in the README.
const MOVED_TO_NARVIK_CORE: &[&str] = &[
    "tokens_never_in_debug_output",
    "validate_malformed_token_is_none_without_store_call",
];

const README: &str = include_str!("../README.md");

/// The README's section on the checks that live in narvik-core, up to the next section.
fn moved_out_section() -> &'static str {
    let heading = "## Engine checks that live in narvik-core";
    let start = README
        .find(heading)
        .unwrap_or_else(|| panic!("README.md has no section {heading:?}"));
    let rest = &README[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

#[test]
fn the_catalogue_is_complete() {
    let names: Vec<&str> = CASES.iter().map(|(_, name)| *name).collect();
    for case in CATALOGUE {
        assert!(names.contains(case), "the catalogue case {case} is missing");
    }
    for moved in MOVED_TO_NARVIK_CORE {
        assert!(
            !names.contains(moved),
            "{moved} cannot fail against any store; it lives in narvik-core's tests, not here"
        );
    }
    let mut unique = names.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), names.len(), "a case name is listed twice");
}

#[test]
fn the_suite_has_at_least_75_cases() {
    assert!(
        CASES.len() >= 75,
        "the suite has {} cases; issue 10 asks for at least 75",
        CASES.len()
    );
}

#[test]
fn the_readme_lists_every_case() {
    for (module, name) in CASES {
        assert!(
            README.contains(&format!("`{name}`")),
            "README.md does not list {module}::{name}"
        );
    }
    let count = format!("**{} cases**", CASES.len());
    assert!(
        README.contains(&count),
        "README.md must state the number of cases as {count}"
    );
    let section = moved_out_section();
    for moved in MOVED_TO_NARVIK_CORE {
        assert!(
            section.contains(&format!("`{moved}`")),
            "README.md's section on the checks in narvik-core does not list {moved}"
        );
    }
    for (_, name) in CASES {
        assert!(
            !section.contains(&format!("`{name}`")),
            "README.md lists the suite case {name} among the checks that live in narvik-core"
        );
    }
}
