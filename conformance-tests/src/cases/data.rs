//! Additional data of any shape round-trips as equal JSON, and a shape the application cannot
//! decode is a typed error.

use std::sync::Arc;

use narvik_core::{Error, ManualClock, Narvik, SessionRecord, SessionStore, SessionToken};
use serde_json::{json, Value};

use crate::harness::{
    assert_absent, assert_same_record, assert_stored, engine_with, live_record, must,
    random_user_id,
};
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

/// Where `actual` differs from `expected` with numbers compared exactly: the same kind
/// (unsigned, negative or float integer), the same integer, the same float bit for bit (so
/// `-0.0` and a float one ULP off differ). `None` when they agree everywhere.
fn exact_difference(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    match (expected, actual) {
        (Value::Number(want), Value::Number(got)) => {
            let kind = |n: &serde_json::Number| (n.is_u64(), n.is_i64(), n.is_f64());
            if kind(want) != kind(got) {
                return Some(format!(
                    "{path}: {want} came back as {got}, a number of another kind"
                ));
            }
            let same = if let Some(want) = want.as_u64() {
                got.as_u64() == Some(want)
            } else if let Some(want) = want.as_i64() {
                got.as_i64() == Some(want)
            } else {
                match (want.as_f64(), got.as_f64()) {
                    (Some(want), Some(got)) => want.to_bits() == got.to_bits(),
                    _ => false,
                }
            };
            (!same).then(|| {
                format!(
                    "{path}: {want} came back as {got} (bits {:#018x} vs {:#018x} as f64)",
                    want.as_f64().unwrap_or(f64::NAN).to_bits(),
                    got.as_f64().unwrap_or(f64::NAN).to_bits()
                )
            })
        }
        (Value::Array(want), Value::Array(got)) => {
            if want.len() != got.len() {
                return Some(format!(
                    "{path}: an array of {} came back with {}",
                    want.len(),
                    got.len()
                ));
            }
            want.iter()
                .zip(got)
                .enumerate()
                .find_map(|(n, (want, got))| exact_difference(want, got, &format!("{path}[{n}]")))
        }
        (Value::Object(want), Value::Object(got)) => {
            if want.len() != got.len() {
                return Some(format!("{path}: the object's keys changed: {actual}"));
            }
            want.iter().find_map(|(key, want)| match got.get(key) {
                Some(got) => exact_difference(want, got, &format!("{path}.{key}")),
                None => Some(format!("{path}: key {key:?} is missing")),
            })
        }
        (want, got) => (want != got).then(|| format!("{path}: {want} came back as {got}")),
    }
}

/// Saves each number in an object field, in an array and as the whole data, and asserts each
/// comes back exactly (see [`exact_difference`]), not merely equal as JSON.
async fn assert_numbers_round_trip_exactly(
    store: &dyn SessionStore,
    numbers: Vec<(&str, Value)>,
    label: &str,
) {
    let user_id = random_user_id(label);
    let object: serde_json::Map<String, Value> = numbers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.clone()))
        .collect();
    let mut values = vec![
        Value::Object(object),
        Value::Array(numbers.iter().map(|(_, value)| value.clone()).collect()),
        json!({ "nested": { "deeper": [numbers.iter().map(|(_, v)| v.clone()).collect::<Vec<_>>()] } }),
    ];
    values.extend(numbers.iter().map(|(_, value)| value.clone()));
    let records: Vec<SessionRecord> = values
        .into_iter()
        .map(|data| live_record(&user_id, data))
        .collect();
    for record in &records {
        must(store.save_session(record).await, "save_session");
    }
    for record in &records {
        let fetched = must(store.fetch_session(&record.id).await, "fetch_session");
        let Some(fetched) = fetched else {
            panic!("{label}: the record holding {} is missing", record.data);
        };
        let want = must(record.data.to_value(), "the saved data as JSON");
        let got = must(fetched.data.to_value(), "the fetched data as JSON");
        if let Some(difference) = exact_difference(&want, &got, "data") {
            panic!("{label}: a number did not round-trip exactly: {difference}");
        }
        assert_same_record(Some(&fetched), record, label);
    }
}

/// 2^53 + 1 and its neighbours up to 2^63 − 2, positive and negative, come back as the same
/// integers (compared as `i64`, not through `f64`).
///
/// Catches a store that keeps numbers as doubles (JavaScript-style JSON, a BSON double, a
/// float column): 2^53 + 1 comes back as 2^53.
pub async fn data_integers_past_2_pow_53_round_trip_exactly(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    const TWO_53: i64 = 1 << 53;
    let numbers = vec![
        ("two_53_plus_1", json!(TWO_53 + 1)),
        ("minus_two_53_plus_1", json!(-(TWO_53 + 1))),
        ("two_53_plus_3", json!(TWO_53 + 3)),
        ("two_54_plus_1", json!((1_i64 << 54) + 1)),
        ("two_62_plus_1", json!((1_i64 << 62) + 1)),
        ("eighteen_digits", json!(123_456_789_012_345_679_i64)),
        ("minus_eighteen_digits", json!(-987_654_321_098_765_431_i64)),
        ("two_63_minus_2", json!(i64::MAX - 1)),
    ];
    assert_numbers_round_trip_exactly(store.as_ref(), numbers, "integers past 2^53").await;
}

/// `i64::MAX − 1`, `i64::MIN + 1`, `i64::MAX` and `i64::MIN` come back exactly (`as_i64`).
///
/// `i64::MAX` and `i64::MIN` survive a trip through `f64` (they round to ±2^63 and saturate
/// back); their neighbours do not, so a store that stores doubles fails here.
pub async fn data_i64_near_extremes_round_trip(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let numbers = vec![
        ("max_minus_1", json!(i64::MAX - 1)),
        ("min_plus_1", json!(i64::MIN + 1)),
        ("max", json!(i64::MAX)),
        ("min", json!(i64::MIN)),
        ("max_minus_1023", json!(i64::MAX - 1_023)),
        ("min_plus_1025", json!(i64::MIN + 1_025)),
    ];
    assert_numbers_round_trip_exactly(store.as_ref(), numbers, "i64 near its extremes").await;
}

/// `u64::MAX`, `u64::MAX − 1`, 2^63 and 2^63 + 1 come back as the same unsigned integers
/// (`as_u64`).
///
/// Catches a store that narrows integers to `i64` (a BSON int64, a `bigint` column: the value
/// is refused, wrapped negative or turned into a double).
pub async fn data_u64_max_round_trips(store: Arc<dyn SessionStore>, _capabilities: Capabilities) {
    let numbers = vec![
        ("max", json!(u64::MAX)),
        ("max_minus_1", json!(u64::MAX - 1)),
        ("two_63", json!(1_u64 << 63)),
        ("two_63_plus_1", json!((1_u64 << 63) + 1)),
    ];
    assert_numbers_round_trip_exactly(store.as_ref(), numbers, "u64 past i64::MAX").await;
}

/// Floats whose shortest exact form needs 17 significant digits, the extremes and the
/// subnormals come back bit for bit (`to_bits`).
///
/// Catches a float written with 15 or 16 digits (`%.15g`, a `real` column, a lossy text
/// format) or parsed without correct rounding (serde_json without `float_roundtrip`): each is
/// 1 or 2 ULP off.
pub async fn data_floats_needing_17_digits_round_trip_bit_exactly(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let numbers = vec![
        ("point_one_plus_point_two", json!(0.1_f64 + 0.2)),
        ("one_third", json!(1.0_f64 / 3.0)),
        ("two_thirds", json!(2.0_f64 / 3.0)),
        ("max", json!(f64::MAX)),
        ("lowest", json!(f64::MIN)),
        ("min_positive", json!(f64::MIN_POSITIVE)),
        ("smallest_subnormal", json!(f64::from_bits(1))),
        (
            "largest_subnormal",
            json!(f64::from_bits(0x000f_ffff_ffff_ffff)),
        ),
        ("two_53_plus_2", json!(9_007_199_254_740_994.0_f64)),
        ("one_plus_epsilon", json!(1.0_f64 + f64::EPSILON)),
        (
            "one_minus_half_epsilon",
            json!(1.0_f64 - f64::EPSILON / 2.0),
        ),
        ("minus_one_plus_epsilon", json!(-(1.0_f64 + f64::EPSILON))),
        ("pi", json!(std::f64::consts::PI)),
        ("e", json!(std::f64::consts::E)),
        ("ten_23", json!(1e23_f64)),
        ("one_point_one_squared", json!(1.1_f64 * 1.1)),
        ("hundred_thirds", json!(100.0_f64 / 3.0)),
    ];
    assert_numbers_round_trip_exactly(store.as_ref(), numbers, "17-digit floats").await;
}

/// Floats whose shortest form is an integer beyond 2^53 (1e16, 1e18, 2^63 as a float, 1.8e19)
/// stay floats, bit for bit, as do floats with a zero fraction below it.
///
/// Catches a store whose number type drops the float-ness of the text `1e16` (a SQL `numeric`,
/// as PostgreSQL `jsonb` keeps numbers, prints it back as `10000000000000000`, an integer).
pub async fn data_large_integral_floats_stay_floats(
    store: Arc<dyn SessionStore>,
    _capabilities: Capabilities,
) {
    let numbers = vec![
        ("ten_15", json!(1e15_f64)),
        ("ten_16", json!(1e16_f64)),
        ("ten_18", json!(1e18_f64)),
        ("two_63_as_float", json!(9_223_372_036_854_775_808.0_f64)),
        ("one_point_eight_ten_19", json!(1.8e19_f64)),
        ("minus_ten_17", json!(-1e17_f64)),
    ];
    assert_numbers_round_trip_exactly(store.as_ref(), numbers, "large integral floats").await;
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
