//! Numbers round-trip exactly: integers past 2^53, the i64 and u64 extremes, floats that need
//! 17 digits, and large integral floats, which stay floats.

use std::sync::Arc;

use narvik_core::{SessionRecord, SessionStore};
use serde_json::{json, Value};

use crate::harness::{assert_same_record, live_record, must, random_user_id};
use crate::Capabilities;

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
