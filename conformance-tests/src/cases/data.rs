//! Additional data of any shape round-trips as equal JSON, and a shape the application cannot
//! decode is a typed error.

use std::sync::Arc;

use narvik_core::{Error, ManualClock, Narvik, SessionRecord, SessionStore, SessionToken};
use serde_json::{json, Value};

use crate::harness::{assert_stored, live_record, must, random_user_id};
use crate::Capabilities;

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

/// Nested objects and arrays, several levels deep, keep their shape and order of arrays.
pub async fn data_nested_objects_and_arrays_round_trip(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let values = vec![
        json!({
            "profile": { "name": "Ada", "roles": ["admin", "dev"], "address": { "city": "Oslo" } },
            "matrix": [[1, 2], [3, [4, [5, { "deep": true }]]]],
            "flags": { "a": true, "b": false },
            "mixed": [1, "two", 3.5, null, { "k": [] }, [{}]]
        }),
        json!([{ "top": "level array" }, [1, [2, [3]]]]),
    ];
    assert_round_trips(store.as_ref(), values, "nested").await;
}

/// Integers stay integers (including the `i64` extremes) and floats stay floats.
pub async fn data_numbers_keep_their_kind(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let values = vec![
        json!({
            "min": i64::MIN, "max": i64::MAX, "zero": 0, "minus_one": -1,
            "in_array": [i64::MIN, 0, i64::MAX]
        }),
        json!({
            "one_point_zero": 1.0, "half": 0.5, "tenth": 0.1, "negative": -2.25,
            "tiny": 2.5e-300, "huge": 1e300, "avogadro": 6.022_140_76e23,
            "in_array": [1.0, -0.5]
        }),
        json!(i64::MIN),
        json!(1.5),
    ];
    assert_round_trips(store.as_ref(), values, "numbers").await;
}

/// Emoji, right-to-left scripts, combining marks, quotes, backslashes and control characters
/// are data, in values and in keys.
pub async fn data_unicode_and_escapes_round_trip(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let values = vec![
        json!({
            "emoji": "😀👩‍👩‍👧‍👦🏳️‍🌈",
            "rtl": "שלום עולם مرحبا بالعالم",
            "cjk": "東京都 서울",
            "combining": "e\u{301} a\u{308}",
            "zero_width": "a\u{200b}b\u{feff}c",
            "quotes": "it's \"quoted\" `backticked`",
            "backslashes": "C:\\path\\to\\file \\\\ \\u0041",
            "whitespace": "line1\nline2\r\n\ttabbed",
            "controls": "\u{1}\u{1f}\u{7f}",
            "ключ 🔑": "key with unicode",
        }),
        json!("a bare string with \"quotes\" and a \\ backslash"),
    ];
    assert_round_trips(store.as_ref(), values, "unicode").await;
}

/// A 64 KiB string value, and a large array, are stored whole.
pub async fn data_64_kib_value_round_trips(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let pattern = "narvik-64k-é😀-";
    let mut big = String::with_capacity(64 * 1024 + pattern.len());
    while big.len() < 64 * 1024 {
        big.push_str(pattern);
    }
    let values = vec![
        json!({ "big": big }),
        json!({ "items": (0..4_096).map(|i| json!({ "i": i })).collect::<Vec<_>>() }),
    ];
    assert_round_trips(store.as_ref(), values, "big").await;
}

/// Empty objects, `null` fields, empty strings and arrays, and top-level `null` or scalars
/// are kept as they are, not dropped or turned into one another.
pub async fn data_empty_and_null_round_trip(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let values = vec![
        json!({}),
        Value::Null,
        json!({ "null": null, "empty_string": "", "empty_array": [], "empty_object": {} }),
        json!([]),
        json!(""),
        json!(false),
        json!(0),
        json!([null, "", {}, []]),
    ];
    assert_round_trips(store.as_ref(), values, "empty").await;
}

/// The typed data the engine reads in [`data_type_mismatch_is_corrupt_record_error`].
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Profile {
    theme: String,
    visits: u32,
}

/// A stored shape the application's data type cannot decode makes `validate_session` fail
/// with [`Error::CorruptRecord`], not panic and not return a session.
pub async fn data_type_mismatch_is_corrupt_record_error(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let token = must(SessionToken::generate(), "SessionToken::generate");
    let mut record = live_record(
        &random_user_id("mismatch"),
        json!({ "theme": ["not", "a", "string"], "visits": -1 }),
    );
    record.id = token.session_id();
    must(store.save_session(&record).await, "save_session");
    let narvik: Narvik<Profile> = Narvik::builder(Arc::clone(&store))
        .clock(Arc::new(ManualClock::starting_now()))
        .build()
        .expect("the default configuration is valid");
    match narvik.validate_session(token.as_str()).await {
        Err(Error::CorruptRecord { .. }) => {}
        other => {
            panic!("data that does not fit the type must be Error::CorruptRecord, got {other:?}")
        }
    }
}
