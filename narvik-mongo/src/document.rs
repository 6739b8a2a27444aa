// Over 400 lines only with its unit tests (`mod tests`); the code above them is under 400.
//! The shape of a session document and the lossless JSON <-> BSON mapping of its data.
//!
//! ```text
//! { _id: <session id>, userId: <string>, expiresAt: <date>, createdAt: <date>, data: <any>,
//!   lifetimeMs: <Int64, only when the session has a lifetime of its own>, dataVersion: <Int64> }
//! ```
//!
//! `lifetimeMs` and `dataVersion` came with per-session lifetimes and data updates. Documents
//! written before have neither and read as "no lifetime of its own" and version 0; a data
//! update of such a document sets `dataVersion` (see `MongoStore::update_session_data`).
//!
//! The driver's own `serde_json::Value -> Bson` conversion is lossy for narvik's purpose: it
//! turns integers above `i64::MAX` into doubles, and small integers into `Int32`. This module
//! maps each JSON kind onto exactly one BSON type and back:
//!
//! | JSON | BSON |
//! | --- | --- |
//! | integer in `i64` range | `Int64` (`Int32` is also read back as an integer) |
//! | integer above `i64::MAX` | `Decimal128` with exponent 0 (BSON has no unsigned 64-bit type) |
//! | float (`1.0`, `-0.5`, `1e300`) | `Double` |
//! | string, bool, null, array, object | string, boolean, null, array, embedded document |
//!
//! Every number comes back bit-exact: integers never pass through `f64`, and a float goes from
//! serde_json's `f64` into the BSON double and back without text in between. Strings (ids and
//! data alike) are length-prefixed in BSON, so a NUL inside one is stored like any other
//! character; only object keys, which BSON writes as C strings, cannot hold one.
//!
//! Reading a BSON type outside this table (a date or an ObjectId put there by another
//! program) is a [`Error::CorruptRecord`], never a guess.

use mongodb::bson::{doc, Bson, DateTime, Decimal128, Document};
use narvik_core::{Error, Result, SessionRecord};
use serde_json::{Map, Number, Value};
use time::{Duration, OffsetDateTime};

/// Field names of the session document.
pub(crate) mod field {
    pub(crate) const ID: &str = "_id";
    pub(crate) const USER_ID: &str = "userId";
    pub(crate) const EXPIRES_AT: &str = "expiresAt";
    pub(crate) const CREATED_AT: &str = "createdAt";
    pub(crate) const DATA: &str = "data";
    /// The session's own lifetime in whole milliseconds; absent when it has none.
    pub(crate) const LIFETIME_MS: &str = "lifetimeMs";
    /// How many times the data was replaced; absent (= 0) in documents written before.
    pub(crate) const DATA_VERSION: &str = "dataVersion";
}

/// The document stored for `record`.
pub(crate) fn to_document(record: &SessionRecord) -> Result<Document> {
    let data = record.data.to_value()?;
    let mut document = fixed_fields(record)?;
    document.insert(field::DATA, json_to_bson(&data)?);
    document.insert(field::DATA_VERSION, version_to_bson(record.data_version)?);
    Ok(document)
}

/// The fields of `record`'s document that a data update leaves as they are: all but `data`
/// and `dataVersion`.
pub(crate) fn fixed_fields(record: &SessionRecord) -> Result<Document> {
    let mut document = doc! {
        field::ID: &record.id,
        field::USER_ID: &record.user_id,
        field::EXPIRES_AT: to_bson_date(record.expires_at),
        field::CREATED_AT: to_bson_date(record.created_at),
    };
    if let Some(lifetime) = record.lifetime {
        document.insert(field::LIFETIME_MS, lifetime_to_bson(lifetime)?);
    }
    Ok(document)
}

/// The largest document MongoDB stores: its `maxBsonObjectSize`, 16 MiB on every version, and
/// the limit the driver checks a save against.
pub(crate) const MAX_DOCUMENT_SIZE: usize = 16 * 1024 * 1024;

/// [`Error::InvalidData`] unless the document that `$set` of the fields `set` leaves on a
/// document of the fields `fixed` is within [`MAX_DOCUMENT_SIZE`]. The bytes are counted,
/// never buffered.
pub(crate) fn check_updated_size(fixed: &Document, set: &Document) -> Result<()> {
    // A BSON document is a 4-byte length, its elements and a closing NUL; the two sets of
    // fields are disjoint, so the updated document has the elements of both and one frame.
    let size = serialized_size(fixed)?
        .saturating_add(serialized_size(set)?)
        .saturating_sub(5);
    if size > MAX_DOCUMENT_SIZE {
        return Err(Error::InvalidData(format!(
            "the session document after this data update would be {size} bytes, beyond \
             MongoDB's document limit of {MAX_DOCUMENT_SIZE} bytes"
        )));
    }
    Ok(())
}

/// How many bytes `document` serialises to.
fn serialized_size(document: &Document) -> Result<usize> {
    let mut counter = ByteCounter(0);
    document
        .to_writer(&mut counter)
        .map_err(|error| Error::InvalidData(format!("the document does not serialise: {error}")))?;
    Ok(counter.0)
}

/// An `io::Write` that only counts what it is given.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(bytes.len());
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `lifetime` as the whole, positive number of milliseconds the document keeps; anything
/// else (zero, negative, a fraction of a millisecond) could not come back exactly and is
/// [`Error::InvalidData`].
fn lifetime_to_bson(lifetime: Duration) -> Result<Bson> {
    let millis = lifetime.whole_milliseconds();
    match i64::try_from(millis) {
        Ok(millis) if millis > 0 && Duration::milliseconds(millis) == lifetime => {
            Ok(Bson::Int64(millis))
        }
        _ => Err(Error::InvalidData(format!(
            "the session lifetime {lifetime} is not a positive whole number of milliseconds \
             within i64"
        ))),
    }
}

/// `version` as the `Int64` the document keeps; above `i64::MAX` it cannot be stored.
pub(crate) fn version_to_bson(version: u64) -> Result<Bson> {
    i64::try_from(version).map(Bson::Int64).map_err(|_| {
        Error::InvalidData(format!(
            "the data version {version} is beyond i64::MAX, which BSON cannot hold"
        ))
    })
}

/// The record a stored document holds, or [`Error::CorruptRecord`] naming what did not decode.
pub(crate) fn from_document(mut document: Document) -> Result<SessionRecord> {
    let id = match document.remove(field::ID) {
        Some(Bson::String(id)) => id,
        other => return Err(corrupt_field("?", field::ID, "a string", other.as_ref())),
    };
    let short = narvik_core::session::short_id(&id);
    let user_id = match document.remove(field::USER_ID) {
        Some(Bson::String(user_id)) => user_id,
        other => {
            return Err(corrupt_field(
                short,
                field::USER_ID,
                "a string",
                other.as_ref(),
            ))
        }
    };
    let expires_at = date_field(&mut document, short, field::EXPIRES_AT)?;
    let created_at = date_field(&mut document, short, field::CREATED_AT)?;
    let data = match document.remove(field::DATA) {
        Some(data) => bson_to_json(data, field::DATA).map_err(|reason| Error::CorruptRecord {
            reason: format!("session {short}: {reason}"),
            source: None,
        })?,
        None => return Err(corrupt_field(short, field::DATA, "present", None)),
    };
    // Absent in documents written before these fields existed: no lifetime of its own.
    let lifetime = match non_negative_integer(&mut document, short, field::LIFETIME_MS)? {
        None => None,
        Some(0) => {
            return Err(Error::CorruptRecord {
                reason: format!("session {short}: `{}` is 0", field::LIFETIME_MS),
                source: None,
            })
        }
        Some(millis) => Some(Duration::milliseconds(millis)),
    };
    // Absent likewise: version 0.
    let data_version = non_negative_integer(&mut document, short, field::DATA_VERSION)?
        .map_or(0, i64::unsigned_abs);
    Ok(SessionRecord {
        id,
        user_id,
        expires_at,
        created_at,
        data: data.into(),
        lifetime,
        data_version,
    })
}

/// The integer field `name`: `None` when absent, an `Int64` (or `Int32`, as other tools may
/// write small numbers) that is not negative otherwise. Any other type (`null`, a double, a
/// string) or a negative value is [`Error::CorruptRecord`].
fn non_negative_integer(document: &mut Document, short: &str, name: &str) -> Result<Option<i64>> {
    let value = match document.remove(name) {
        None => return Ok(None),
        Some(Bson::Int64(value)) => value,
        Some(Bson::Int32(value)) => i64::from(value),
        Some(other) => return Err(corrupt_field(short, name, "an integer", Some(&other))),
    };
    if value < 0 {
        return Err(Error::CorruptRecord {
            reason: format!("session {short}: `{name}` is negative ({value})"),
            source: None,
        });
    }
    Ok(Some(value))
}

/// A BSON date for `at`, truncated to the millisecond (BSON's precision).
pub(crate) fn to_bson_date(at: OffsetDateTime) -> DateTime {
    let millis = at.unix_timestamp_nanos().div_euclid(1_000_000);
    // `OffsetDateTime` spans ±9999 years, far inside the i64 milliseconds of a BSON date.
    DateTime::from_millis(i64::try_from(millis).unwrap_or(if millis < 0 {
        i64::MIN
    } else {
        i64::MAX
    }))
}

fn date_field(document: &mut Document, short: &str, name: &str) -> Result<OffsetDateTime> {
    match document.remove(name) {
        Some(Bson::DateTime(date)) => {
            let nanos = i128::from(date.timestamp_millis()) * 1_000_000;
            OffsetDateTime::from_unix_timestamp_nanos(nanos).map_err(|source| {
                Error::corrupt(format!("session {short}: `{name}` is out of range"), source)
            })
        }
        other => Err(corrupt_field(short, name, "a date", other.as_ref())),
    }
}

fn corrupt_field(short: &str, name: &str, expected: &str, found: Option<&Bson>) -> Error {
    let found = match found {
        Some(value) => format!("{:?}", value.element_type()),
        None => "missing".to_owned(),
    };
    Error::CorruptRecord {
        reason: format!("session {short}: `{name}` should be {expected}, found {found}"),
        source: None,
    }
}

/// The BSON form of JSON `value` (see the module table).
///
/// Fails with [`Error::InvalidData`] only for what BSON cannot hold: an object key containing
/// a NUL character.
pub(crate) fn json_to_bson(value: &Value) -> Result<Bson> {
    Ok(match value {
        Value::Null => Bson::Null,
        Value::Bool(flag) => Bson::Boolean(*flag),
        Value::String(text) => Bson::String(text.clone()),
        Value::Number(number) => number_to_bson(number)?,
        Value::Array(items) => Bson::Array(items.iter().map(json_to_bson).collect::<Result<_>>()?),
        Value::Object(map) => {
            let mut document = Document::new();
            for (key, item) in map {
                if key.contains('\0') {
                    return Err(Error::InvalidData(
                        "an object key contains a NUL character, which BSON cannot store"
                            .to_owned(),
                    ));
                }
                document.insert(key.clone(), json_to_bson(item)?);
            }
            Bson::Document(document)
        }
    })
}

fn number_to_bson(number: &Number) -> Result<Bson> {
    if let Some(integer) = number.as_i64() {
        return Ok(Bson::Int64(integer));
    }
    if let Some(unsigned) = number.as_u64() {
        return unsigned
            .to_string()
            .parse::<Decimal128>()
            .map(Bson::Decimal128)
            .map_err(|error| Error::InvalidData(format!("integer {unsigned}: {error}")));
    }
    match number.as_f64() {
        Some(float) if float.is_finite() => Ok(Bson::Double(float)),
        _ => Err(Error::InvalidData(format!(
            "number {number} fits neither i64, u64 nor f64"
        ))),
    }
}

/// The JSON form of BSON `value`; the error names the path of the first value outside the
/// module table.
pub(crate) fn bson_to_json(value: Bson, path: &str) -> std::result::Result<Value, String> {
    Ok(match value {
        Bson::Null => Value::Null,
        Bson::Boolean(flag) => Value::Bool(flag),
        Bson::String(text) => Value::String(text),
        Bson::Int32(integer) => Value::from(integer),
        Bson::Int64(integer) => Value::from(integer),
        Bson::Double(float) => Number::from_f64(float)
            .map(Value::Number)
            .ok_or_else(|| format!("`{path}` holds the non-finite double {float}"))?,
        Bson::Decimal128(decimal) => decimal_to_json(decimal)
            .ok_or_else(|| format!("`{path}` holds the decimal {decimal}, not a u64 integer"))?,
        Bson::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(index, item)| bson_to_json(item, &format!("{path}.{index}")))
                .collect::<std::result::Result<_, _>>()?,
        ),
        Bson::Document(document) => {
            let mut map = Map::new();
            for (key, item) in document {
                let item = bson_to_json(item, &format!("{path}.{key}"))?;
                map.insert(key, item);
            }
            Value::Object(map)
        }
        other => {
            return Err(format!(
                "`{path}` holds BSON type {:?}, which narvik never writes",
                other.element_type()
            ))
        }
    })
}

/// Only integers beyond `i64` are written as decimals, so only those are read back.
fn decimal_to_json(decimal: Decimal128) -> Option<Value> {
    let text = decimal.to_string();
    if let Ok(integer) = text.parse::<i64>() {
        return Some(Value::from(integer));
    }
    text.parse::<u64>().ok().map(Value::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(value: &Value) -> Value {
        let bson = json_to_bson(value).expect("encodes");
        // Through bytes as well, so that what the server would store is what is read back.
        let bytes = mongodb::bson::to_vec(&doc! { "data": bson }).expect("serialises");
        let mut document = Document::from_reader(bytes.as_slice()).expect("parses");
        let data = document.remove("data").expect("data");
        bson_to_json(data, "data").expect("decodes")
    }

    #[test]
    fn numbers_keep_their_kind_at_the_extremes() {
        let value = json!({
            "i64_min": i64::MIN, "i64_max": i64::MAX, "u64_max": u64::MAX,
            "above_i64": (i64::MAX as u64) + 1, "zero": 0, "minus_one": -1,
            "one_float": 1.0, "minus_zero": -0.0, "tiny": 5e-324, "huge": 1.7976931348623157e308,
            "i32_edge": 2_147_483_648_i64,
        });
        let back = round_trip(&value);
        assert_eq!(back, value);
        assert!(back["one_float"].is_f64());
        assert!(back["zero"].is_i64());
        assert_eq!(back["u64_max"].as_u64(), Some(u64::MAX));
        assert_eq!(back.to_string(), value.to_string());
    }

    #[test]
    fn every_top_level_shape_round_trips() {
        for value in [
            json!(null),
            json!(true),
            json!("text"),
            json!(42),
            json!(4.5),
            json!([]),
            json!([1, "two", [3.0], {"four": null}]),
            json!({}),
            json!({"$op": 1, "a.b": {"": [null]}, "emoji 🦀": "\u{202e}rtl\n\"\\"}),
        ] {
            assert_eq!(round_trip(&value), value);
        }
    }

    #[test]
    fn types_narvik_never_writes_are_errors_with_their_path() {
        let error = bson_to_json(
            Bson::Document(doc! { "a": [1_i32, Bson::DateTime(DateTime::from_millis(0))] }),
            "data",
        )
        .expect_err("a date is not JSON");
        assert!(error.contains("data.a.1"), "{error}");
        let decimal: Decimal128 = "1.5".parse().expect("decimal");
        assert!(bson_to_json(Bson::Decimal128(decimal), "data").is_err());
        assert!(bson_to_json(Bson::Double(f64::NAN), "data").is_err());
    }

    #[test]
    fn edge_numbers_keep_their_bits() {
        let two_53_plus_1 = (1_i64 << 53) + 1;
        let integers = [two_53_plus_1, -two_53_plus_1, i64::MAX - 1, i64::MIN + 1];
        let floats = [
            0.1 + 0.2,
            1.0 / 3.0,
            f64::MIN_POSITIVE,
            2.225_073_858_507_201_4e-308,
            1.000_000_000_000_000_2,
        ];
        let value =
            json!({ "integers": integers, "u64": [u64::MAX, 1_u64 << 63], "floats": floats });
        let Bson::Document(encoded) = json_to_bson(&value).expect("encodes") else {
            panic!("an object encodes as a document");
        };
        let types = |name: &str| -> Vec<_> {
            encoded
                .get_array(name)
                .expect(name)
                .iter()
                .map(Bson::element_type)
                .collect()
        };
        use mongodb::bson::spec::ElementType;
        assert_eq!(types("integers"), vec![ElementType::Int64; 4]);
        assert_eq!(types("u64"), vec![ElementType::Decimal128; 2]);
        assert_eq!(types("floats"), vec![ElementType::Double; 5]);

        let back = round_trip(&value);
        for (index, integer) in integers.iter().enumerate() {
            assert_eq!(back["integers"][index].as_i64(), Some(*integer));
        }
        assert_eq!(back["u64"][0].as_u64(), Some(u64::MAX));
        assert_eq!(back["u64"][1].as_u64(), Some(1_u64 << 63));
        for (index, float) in floats.iter().enumerate() {
            let read = back["floats"][index].as_f64().expect("a float");
            assert_eq!(read.to_bits(), float.to_bits(), "{float:e}");
        }
    }

    #[test]
    fn nul_in_ids_and_data_strings_is_kept() {
        let record = SessionRecord {
            id: "x\0y".into(),
            user_id: "a\0b".into(),
            expires_at: time::macros::datetime!(2030-01-01 0:00 UTC),
            created_at: time::macros::datetime!(2029-01-01 0:00 UTC),
            data: json!({ "text": "p\0q\u{1}\r" }).into(),
            lifetime: Some(time::Duration::days(30)),
            data_version: 7,
        };
        let bytes = mongodb::bson::to_vec(&to_document(&record).expect("encodes")).expect("bytes");
        let document = Document::from_reader(bytes.as_slice()).expect("parses");
        assert_eq!(from_document(document).expect("decodes"), record);
    }

    #[test]
    fn nul_in_a_key_is_invalid_data() {
        assert!(matches!(
            json_to_bson(&json!({"a\u{0}b": 1})),
            Err(Error::InvalidData(_))
        ));
        assert!(matches!(
            json_to_bson(&json!([{ "ok": { "\u{0}": 1 } }])),
            Err(Error::InvalidData(_))
        ));
    }

    #[test]
    fn a_malformed_document_is_a_corrupt_record() {
        let good = SessionRecord {
            id: "abcdef0123".into(),
            user_id: "u".into(),
            expires_at: time::macros::datetime!(2030-01-01 0:00:00.123 UTC),
            created_at: time::macros::datetime!(1969-12-31 23:59:59.999 UTC),
            data: json!({"k": [1, 2.5]}).into(),
            lifetime: Some(time::Duration::milliseconds(1_000)),
            data_version: u64::try_from(i64::MAX).expect("fits"),
        };
        let document = to_document(&good).expect("encodes");
        assert_eq!(from_document(document.clone()).expect("decodes"), good);
        for (name, value) in [
            ("_id", Bson::Int32(1)),
            ("userId", Bson::Null),
            ("expiresAt", Bson::String("tomorrow".into())),
            ("createdAt", Bson::DateTime(DateTime::MAX)),
            ("data", Bson::ObjectId(mongodb::bson::oid::ObjectId::new())),
            ("lifetimeMs", Bson::Null),
            ("lifetimeMs", Bson::Double(1000.0)),
            ("lifetimeMs", Bson::String("1000".into())),
            ("lifetimeMs", Bson::Int64(-1)),
            ("lifetimeMs", Bson::Int32(-5)),
            ("lifetimeMs", Bson::Int64(0)),
            ("dataVersion", Bson::Null),
            ("dataVersion", Bson::Double(1.0)),
            ("dataVersion", Bson::Int64(-1)),
            ("dataVersion", Bson::Int32(i32::MIN)),
            ("dataVersion", Bson::Boolean(true)),
        ] {
            let mut broken = document.clone();
            broken.insert(name, value.clone());
            assert!(
                matches!(from_document(broken), Err(Error::CorruptRecord { .. })),
                "{name}: {value:?}"
            );
        }
        let mut missing = document;
        missing.remove("data");
        assert!(matches!(
            from_document(missing),
            Err(Error::CorruptRecord { .. })
        ));
    }

    fn record_with(lifetime: Option<time::Duration>, data_version: u64) -> SessionRecord {
        SessionRecord {
            id: "0123456789abcdef".into(),
            user_id: "u".into(),
            expires_at: time::macros::datetime!(2030-01-01 0:00 UTC),
            created_at: time::macros::datetime!(2029-01-01 0:00 UTC),
            data: json!({"a": 1}).into(),
            lifetime,
            data_version,
        }
    }

    #[test]
    fn lifetime_and_version_are_int64_and_an_absent_lifetime_is_no_field() {
        let with = to_document(&record_with(Some(time::Duration::days(400)), 3)).expect("encodes");
        assert_eq!(with.get("lifetimeMs"), Some(&Bson::Int64(400 * 86_400_000)));
        assert_eq!(with.get("dataVersion"), Some(&Bson::Int64(3)));
        let without = to_document(&record_with(None, 0)).expect("encodes");
        assert_eq!(without.get("lifetimeMs"), None);
        assert_eq!(without.get("dataVersion"), Some(&Bson::Int64(0)));
        for record in [
            record_with(Some(time::Duration::days(400)), 3),
            record_with(None, 0),
            record_with(Some(time::Duration::milliseconds(1)), 1),
        ] {
            let document = to_document(&record).expect("encodes");
            assert_eq!(from_document(document).expect("decodes"), record);
        }
    }

    #[test]
    fn the_updated_size_is_the_size_of_the_whole_document() {
        for record in [
            record_with(None, 0),
            record_with(Some(time::Duration::days(400)), 3),
        ] {
            for data in [
                json!(null),
                json!("x".repeat(1_000)),
                json!({"a": [1, 2.5, "b"]}),
            ] {
                let updated = SessionRecord {
                    data: data.clone().into(),
                    data_version: record.data_version + 1,
                    ..record.clone()
                };
                let whole = mongodb::bson::to_vec(&to_document(&updated).expect("encodes"))
                    .expect("bytes")
                    .len();
                let fixed = fixed_fields(&record).expect("encodes");
                let set = doc! {
                    field::DATA: json_to_bson(&data).expect("encodes"),
                    field::DATA_VERSION: version_to_bson(updated.data_version).expect("fits"),
                };
                assert_eq!(
                    serialized_size(&fixed).expect("size") + serialized_size(&set).expect("size")
                        - 5,
                    whole
                );
                check_updated_size(&fixed, &set).expect("small enough");
            }
        }
        let fixed = fixed_fields(&record_with(None, 0)).expect("encodes");
        let overhead = serialized_size(&fixed).expect("size")
            + serialized_size(&doc! { "data": "", "dataVersion": 1_i64 }).expect("size")
            - 5;
        // A string of `len` bytes adds exactly `len` bytes to the empty one.
        let with = |len: usize| doc! { "data": "x".repeat(len), "dataVersion": 1_i64 };
        check_updated_size(&fixed, &with(MAX_DOCUMENT_SIZE - overhead)).expect("at the limit");
        match check_updated_size(&fixed, &with(MAX_DOCUMENT_SIZE - overhead + 1)) {
            Err(Error::InvalidData(message)) => {
                assert!(message.contains("16777217 bytes"), "{message}");
                assert!(message.contains("16777216"), "{message}");
            }
            other => panic!("expected InvalidData, got {other:?}"),
        }
    }

    #[test]
    fn a_document_written_before_reads_as_no_lifetime_and_version_0() {
        let mut old =
            to_document(&record_with(Some(time::Duration::hours(2)), 5)).expect("encodes");
        old.remove("lifetimeMs");
        old.remove("dataVersion");
        assert_eq!(from_document(old).expect("decodes"), record_with(None, 0));
        // Int32 (what another tool may write for a small number) reads as the integer.
        let mut small = to_document(&record_with(None, 0)).expect("encodes");
        small.insert("lifetimeMs", Bson::Int32(1_500));
        small.insert("dataVersion", Bson::Int32(2));
        assert_eq!(
            from_document(small).expect("decodes"),
            record_with(Some(time::Duration::milliseconds(1_500)), 2)
        );
    }

    #[test]
    fn what_the_document_cannot_hold_exactly_is_invalid_data() {
        for lifetime in [
            time::Duration::ZERO,
            time::Duration::seconds(-1),
            time::Duration::microseconds(1_500),
        ] {
            assert!(
                matches!(
                    to_document(&record_with(Some(lifetime), 0)),
                    Err(Error::InvalidData(_))
                ),
                "{lifetime}"
            );
        }
        assert!(matches!(
            to_document(&record_with(None, u64::MAX)),
            Err(Error::InvalidData(_))
        ));
    }
}
