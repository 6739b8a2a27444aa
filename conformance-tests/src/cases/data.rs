//! Additional data of any shape round-trips as equal JSON, and a shape the application cannot
//! decode is a typed error.
//!
//! Two files: numbers, which must round-trip bit for bit (`numbers`), and every other shape
//! (`shapes`). Both are re-exported here, so a case is `cases::data::NAME` whichever file holds
//! it.

mod numbers;
mod shapes;

use narvik_core::{SessionRecord, SessionStore};
use serde_json::Value;

use crate::harness::{assert_stored, live_record, must, random_user_id};

pub use numbers::{
    data_floats_needing_17_digits_round_trip_bit_exactly, data_i64_near_extremes_round_trip,
    data_integers_past_2_pow_53_round_trip_exactly, data_large_integral_floats_stay_floats,
    data_u64_max_round_trips,
};
pub use shapes::{
    data_64_kib_value_round_trips, data_empty_and_null_round_trip,
    data_nested_objects_and_arrays_round_trip,
    data_nul_and_control_characters_round_trip_or_are_invalid_data, data_numbers_keep_their_kind,
    data_type_mismatch_is_corrupt_record_error, data_unicode_and_escapes_round_trip,
};

/// Saves one record per value and asserts each comes back equal.
async fn assert_round_trips(store: &dyn SessionStore, values: Vec<Value>, label: &str) {
    let user_id = random_user_id(label);
    let records: Vec<SessionRecord> = values
        .into_iter()
        .map(|data| live_record(&user_id, data))
        .collect();
    for record in &records {
        must(store.save_session(record).await, "save_session");
    }
    for record in &records {
        assert_stored(store, record, &format!("{label} data {}", record.data)).await;
    }
}
