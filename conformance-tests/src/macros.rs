//! The one list of cases, and the macros that turn it into tests.

/// Calls `$crate::$callback!` with `{ $args }` followed by every case, grouped by module:
/// `module: case, case, ...;`. The only place the catalogue is listed: [`store_tests!`] and
/// [`CASES`](crate::CASES) are both generated from it, so they cannot drift apart.
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_case {
    ($callback:ident { $($args:tt)* }) => {
        $crate::$callback! {
            { $($args)* }
            crud:
                save_then_fetch_round_trips_every_field,
                fetch_unknown_id_is_none,
                save_duplicate_id_is_typed_error_and_keeps_original,
                update_expiry_changes_only_expiry,
                update_expiry_keeps_record_fetchable,
                update_expiry_on_unknown_id_creates_nothing,
                update_expiry_after_delete_creates_nothing,
                delete_removes_record,
                delete_is_idempotent,
                delete_leaves_other_records,
                save_then_fetch_round_trips_lifetime_and_data_version;
            data:
                data_nested_objects_and_arrays_round_trip,
                data_numbers_keep_their_kind,
                data_integers_past_2_pow_53_round_trip_exactly,
                data_i64_near_extremes_round_trip,
                data_u64_max_round_trips,
                data_floats_needing_17_digits_round_trip_bit_exactly,
                data_large_integral_floats_stay_floats,
                data_unicode_and_escapes_round_trip,
                data_nul_and_control_characters_round_trip_or_are_invalid_data,
                data_64_kib_value_round_trips,
                data_empty_and_null_round_trip,
                data_type_mismatch_is_corrupt_record_error;
            users:
                fetch_for_user_returns_exactly_that_users_live_sessions,
                fetch_for_user_records_equal_saved_ones,
                fetch_for_user_excludes_expired,
                fetch_for_user_unknown_user_is_empty,
                fetch_for_user_1000_sessions,
                delete_for_user_removes_all_of_them,
                delete_for_user_leaves_other_users,
                delete_for_user_unknown_user_is_ok;
            scale:
                fetch_for_user_2500_sessions,
                delete_for_user_1500_sessions,
                delete_expired_5000_among_live_counts_exactly;
            identities:
                user_ids_differing_by_case_stay_distinct,
                user_ids_differing_by_surrounding_whitespace_stay_distinct,
                user_ids_differing_by_trailing_control_character_stay_distinct,
                user_ids_differing_by_normalisation_stay_distinct,
                session_ids_differing_by_case_stay_distinct,
                session_ids_differing_by_whitespace_or_control_stay_distinct,
                session_ids_differing_by_normalisation_stay_distinct,
                nul_in_ids_round_trips_or_is_invalid_data;
            expiry:
                delete_expired_removes_exactly_the_expired,
                delete_expired_returns_the_count,
                delete_expired_never_counts_live_records,
                delete_expired_on_empty_store_is_zero,
                fetch_of_expired_record,
                save_already_expired_record,
                update_expiry_on_expired_record_does_nothing,
                update_record_expiry_follows_the_same_rules,
                extension_moves_the_stores_own_expiry,
                fetch_for_user_filters_on_the_given_now,
                delete_expired_cuts_off_at_the_given_now;
            data_updates:
                update_data_replaces_data_and_bumps_version,
                update_data_on_stale_version_changes_nothing,
                update_data_on_missing_or_deleted_record_creates_nothing,
                update_data_on_record_expired_at_now_does_nothing,
                update_data_leaves_other_records,
                concurrent_data_updates_never_lose_one,
                data_update_racing_delete_never_resurrects,
                data_update_racing_extension_keeps_both,
                engine_data_updates_are_never_lost,
                engine_data_update_after_invalidate_is_none,
                own_lifetime_session_slides_by_its_own_lifetime;
            capabilities:
                declared_capabilities_match_the_calls,
                the_store_names_itself;
            concurrency:
                concurrent_saves_of_distinct_ids_all_land,
                concurrent_saves_of_same_id_exactly_one_wins,
                delete_racing_update_never_resurrects,
                update_record_expiry_racing_delete_never_resurrects,
                concurrent_updates_keep_a_valid_expiry,
                mixed_stress_10000_ops_exact_state,
                delete_for_user_racing_saves_of_others_leaves_them,
                concurrent_save_and_delete_for_user_never_leaves_orphans,
                concurrent_purges_count_each_record_once;
            hostile_input:
                user_ids_are_data_not_syntax,
                session_ids_are_data_not_syntax,
                data_keys_are_data_not_syntax;
            engine:
                create_returns_32_char_base32_token_and_sha256_hex_id,
                create_then_validate_returns_same_session_not_extended,
                validate_in_first_half_does_not_write,
                validate_in_last_half_extends_to_now_plus_lifetime_and_sets_extended,
                validate_after_expiry_is_none_and_deletes,
                validate_unknown_token_is_none,
                invalidate_then_validate_is_none,
                rotate_gives_new_token_and_kills_old,
                invalidate_other_sessions_keeps_only_current,
                absolute_cap_stops_extension_and_expires,
                per_user_cap_evicts_oldest,
                per_user_cap_needs_declared_listing,
                rotate_at_user_cap_keeps_other_devices,
                absolute_cap_ends_sessions_created_before_it,
                duplicate_id_on_create_retries_with_fresh_token,
                typed_data_round_trips_through_engine,
                manual_clock_agrees_across_validation_listing_and_purge;
        }
    };
}

/// Generates the conformance tests for a store: one `#[tokio::test]` per case, named after
/// the case, each on a fresh store.
///
/// ```
/// # use narvik_core::{async_trait, Result, SessionRecord, SessionStore};
/// # use time::OffsetDateTime;
/// # struct MyStore;
/// # #[async_trait]
/// # impl SessionStore for MyStore {
/// #     async fn save_session(&self, _: &SessionRecord) -> Result<()> { Ok(()) }
/// #     async fn fetch_session(&self, _: &str) -> Result<Option<SessionRecord>> { Ok(None) }
/// #     async fn update_session_expiry(&self, _: &str, _: OffsetDateTime) -> Result<()> { Ok(()) }
/// #     async fn delete_session(&self, _: &str) -> Result<()> { Ok(()) }
/// # }
/// # impl MyStore { async fn connect_fresh_namespace() -> Self { MyStore } }
/// // tests/conformance.rs of a store crate
/// narvik_conformance::store_tests!(async { MyStore::connect_fresh_namespace().await });
/// # fn main() {
/// #     // Only `cargo test` compiles the generated tests: check the factory as they use it.
/// #     use narvik_conformance::__private::into_store;
/// #     let _ = async { into_store(async { MyStore::connect_fresh_namespace().await }.await) };
/// # }
/// ```
///
/// The first argument is an expression of a future (usually an `async` block) evaluated and
/// awaited once per case. It must yield a [`SessionStore`](narvik_core::SessionStore) (or an
/// `Arc` of one) in a fresh, isolated namespace: its own table, schema, key prefix or
/// collection, empty at the start, since the cases run in parallel and some count what the
/// namespace holds. It may panic when its server is unreachable; that fails the case.
///
/// Every case checks the store against its own declaration,
/// [`SessionStore::capabilities`](narvik_core::SessionStore::capabilities). To test the suite
/// itself against a declaration the store does not make, pass `capabilities = ...` as a second
/// argument; a store crate has no reason to.
///
/// The generated tests run on the tokio runtime this crate re-exports, so the calling crate
/// needs only `narvik-conformance` as a dev-dependency.
#[macro_export]
macro_rules! store_tests {
    ($factory:expr $(,)?) => {
        $crate::__for_each_case!(__store_test_fns {
            $factory,
            |store: &::std::sync::Arc<dyn $crate::__private::SessionStore>| {
                $crate::__private::SessionStore::capabilities(&**store)
            }
        });
    };
    ($factory:expr, capabilities = $capabilities:expr $(,)?) => {
        $crate::__for_each_case!(__store_test_fns {
            $factory,
            |_: &::std::sync::Arc<dyn $crate::__private::SessionStore>| $capabilities
        });
    };
}

/// Generates the engine and data-update cases again, each engine fronted by a near cache of
/// `config` (a [`NearCacheConfig`](narvik_core::NearCacheConfig)): the cached setup keeps every
/// promise the plain one makes. Call it in a test file of its own (the test names are the
/// cases' names), with the same factory as [`store_tests!`](crate::store_tests!).
///
/// ```
/// # use narvik_core::{async_trait, Result, SessionRecord, SessionStore};
/// # use time::OffsetDateTime;
/// # struct MyStore;
/// # #[async_trait]
/// # impl SessionStore for MyStore {
/// #     async fn save_session(&self, _: &SessionRecord) -> Result<()> { Ok(()) }
/// #     async fn fetch_session(&self, _: &str) -> Result<Option<SessionRecord>> { Ok(None) }
/// #     async fn update_session_expiry(&self, _: &str, _: OffsetDateTime) -> Result<()> { Ok(()) }
/// #     async fn delete_session(&self, _: &str) -> Result<()> { Ok(()) }
/// # }
/// # impl MyStore { async fn connect_fresh_namespace() -> Self { MyStore } }
/// // tests/conformance_near_cache.rs of a store that pushes invalidations
/// narvik_conformance::near_cache_tests!(
///     async { MyStore::connect_fresh_namespace().await },
///     narvik_core::NearCacheConfig::pushed()
/// );
/// # fn main() {
/// #     // Only `cargo test` compiles the generated tests: check both arguments as they use them.
/// #     use narvik_conformance::__private::into_store;
/// #     let _ = async { into_store(async { MyStore::connect_fresh_namespace().await }.await) };
/// #     let _: narvik_core::NearCacheConfig = narvik_core::NearCacheConfig::pushed();
/// # }
/// ```
#[macro_export]
macro_rules! near_cache_tests {
    ($factory:expr, $config:expr $(,)?) => {
        $crate::__for_each_case!(__near_cache_test_fns { $factory, $config });
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __near_cache_test_fns {
    ({ $factory:expr, $config:expr } $($module:ident : $($case:ident),* ;)*) => {
        $($crate::__near_cache_module! { $factory, $config, $module: $($case),* })*
    };
}

/// The modules whose cases build engines; the others test the store alone and would only
/// repeat the plain run.
#[doc(hidden)]
#[macro_export]
macro_rules! __near_cache_module {
    ($factory:expr, $config:expr, engine: $($case:ident),*) => {
        $crate::__near_cache_case_fns! { $factory, $config, engine: $($case),* }
    };
    ($factory:expr, $config:expr, data_updates: $($case:ident),*) => {
        $crate::__near_cache_case_fns! { $factory, $config, data_updates: $($case),* }
    };
    ($factory:expr, $config:expr, $module:ident: $($case:ident),*) => {};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __near_cache_case_fns {
    ($factory:expr, $config:expr, $module:ident: $($case:ident),*) => {
        $(
            #[$crate::__private::tokio::test(
                crate = "narvik_conformance::__private::tokio",
                flavor = "multi_thread",
                worker_threads = 2
            )]
            async fn $case() {
                let store = $crate::__private::into_store($factory.await);
                let capabilities = $crate::__private::SessionStore::capabilities(&*store);
                $crate::harness::with_near_cache(
                    $config,
                    $crate::cases::$module::$case(store, capabilities),
                )
                .await;
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_test_fns {
    ({ $factory:expr, $capabilities:expr } $($module:ident : $($case:ident),* ;)*) => {
        $($(
            #[$crate::__private::tokio::test(
                crate = "narvik_conformance::__private::tokio",
                flavor = "multi_thread",
                worker_threads = 2
            )]
            async fn $case() {
                let store = $crate::__private::into_store($factory.await);
                let capabilities: $crate::Capabilities = ($capabilities)(&store);
                $crate::cases::$module::$case(store, capabilities).await;
            }
        )*)*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __case_names {
    ({} $($module:ident : $($case:ident),* ;)*) => {
        /// Every case of the suite as `(module, name)`, in catalogue order.
        pub const CASES: &[(&str, &str)] = &[
            $($((stringify!($module), stringify!($case)),)*)*
        ];
    };
}
