//! Data of every other shape round-trips as equal JSON (nesting, number kinds, Unicode and
//! escapes, 64 KiB, empty and null, NUL and controls), and data the application cannot decode
//! is a typed error.

use std::sync::Arc;

use narvik_core::{Error, ManualClock, Narvik, SessionStore, SessionToken};
use serde_json::{json, Value};

use super::assert_round_trips;
use crate::harness::{
    assert_absent, assert_stored, engine_with, live_record, must, random_user_id,
};
use crate::Capabilities;

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
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Profile {
    theme: String,
    visits: u32,
}

/// A stored shape the application's data type cannot decode is kept by the store as it is,
/// and makes `validate_session` fail with [`Error::CorruptRecord`], not panic and not return a
/// session (nor `None`, as it would if the store had lost or dropped the record).
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
    // The store keeps the shape as it is: deciding what fits is the application's business.
    assert_stored(
        store.as_ref(),
        &record,
        "data of a shape the application rejects",
    )
    .await;
    let narvik: Narvik<Profile> = engine_with(
        Arc::clone(&store),
        &Arc::new(ManualClock::starting_now()),
        |builder| builder,
    );
    match narvik.validate_session(token.as_str()).await {
        Err(Error::CorruptRecord { .. }) => {}
        other => {
            panic!("data that does not fit the type must be Error::CorruptRecord, got {other:?}")
        }
    }
}

/// Strings holding a NUL, C0 and C1 controls, DEL, the Unicode line and paragraph separators
/// and a lone carriage return (as values, as keys, nested): each record's save is either `Ok`
/// and the data round-trips exactly, or `Err(InvalidData)` and nothing was stored.
///
/// Catches a store that strips or cuts at a NUL (a C string, a text column that drops it)
/// instead of refusing it, normalises line endings, or stores a partial record after a
/// refusal. Each value is its own record, so a refused NUL does not hide the others.
pub async fn data_nul_and_control_characters_round_trip_or_are_invalid_data(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let user_id = random_user_id("controls");
    let values = vec![
        json!({ "nul": "\0" }),
        json!({ "inner_nul": "a\0b" }),
        json!("trailing nul\0"),
        json!({ "k\0ey": "a NUL in a key" }),
        json!({ "nested": ["\0", { "deep": "x\0y" }] }),
        json!({ "soh": "\u{1}" }),
        json!({ "unit_separator": "\u{1f}" }),
        json!({ "del": "\u{7f}" }),
        json!({ "next_line": "\u{85}" }),
        json!({ "c1": "\u{80}\u{9f}" }),
        json!({ "line_separator": "\u{2028}", "paragraph_separator": "\u{2029}" }),
        json!({ "lone_cr": "\r" }),
        json!({ "cr_inside": "a\rb\r\nc\n" }),
        json!({ "escape": "\u{1b}[31mred\u{1b}[0m" }),
        json!({ "\u{1}\u{1f}": "control characters in a key" }),
        json!("\u{2028}"),
    ];
    for data in values {
        let record = live_record(&user_id, data);
        match store.save_session(&record).await {
            Ok(()) => {
                assert_stored(
                    store.as_ref(),
                    &record,
                    &format!("data {} with control characters", record.data),
                )
                .await;
            }
            Err(Error::InvalidData(_)) => {
                assert_absent(
                    store.as_ref(),
                    &record.id,
                    &format!("data {} refused with InvalidData", record.data),
                )
                .await;
            }
            Err(other) => panic!(
                "saving data {} must be Ok (and round-trip) or Err(Error::InvalidData), got \
                 {other:?}",
                record.data
            ),
        }
    }
}
