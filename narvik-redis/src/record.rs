//! The value stored under a session key.
//!
//! A fixed-width ASCII header followed by the user id and the data JSON. Every save writes
//! version "n2":
//!
//! ```text
//! "n2" | expires_at ms (16 hex) | created_at ms (16 hex) | user id length (8 hex)
//!      | lifetime ms (16 hex, 0 = none) | data_version (16 hex) | user id | data JSON
//! ```
//!
//! Records written before (version "n1") have no lifetime and version fields; they still
//! decode, as `lifetime: None, data_version: 0`:
//!
//! ```text
//! "n1" | expires_at ms (16 hex) | created_at ms (16 hex) | user id length (8 hex) | user id | data JSON
//! ```
//!
//! The expiry and the user id length sit at the same offsets in both, so only where the user
//! id starts depends on the version. One `GET` returns a whole record. The Lua scripts read
//! the user id with `GETRANGE` and move the expiry with `SETRANGE` at a fixed offset, without
//! touching (or parsing) the data.

use narvik_core::{Error, Result, SessionData, SessionRecord};
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

use crate::keys::decode_lower_hex;

/// Bytes before the user id in an "n1" record; the scripts (`scripts/lib.lua`) use the same
/// constant.
pub(crate) const HEADER_LEN_N1: usize = 42;
/// Bytes before the user id in an "n2" record (the one every save writes); the scripts use
/// the same constant.
pub(crate) const HEADER_LEN: usize = 74;
const VERSION_N1: &[u8; 2] = b"n1";
const VERSION: &[u8; 2] = b"n2";
const EXPIRES: std::ops::Range<usize> = 2..18;
const CREATED: std::ops::Range<usize> = 18..34;
const USER_LEN: std::ops::Range<usize> = 34..42;
const LIFETIME: std::ops::Range<usize> = 42..58;
const DATA_VERSION: std::ops::Range<usize> = 58..74;

/// The wall clock in milliseconds since the Unix epoch, read without calendar arithmetic. Only
/// the required calls use it, for the decisions they make themselves (a record expired by the
/// wall clock is hidden, not extended, not kept when saved); listing and purge take the
/// engine's `now` instead.
pub(crate) fn now_ms() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        // Milliseconds since 1970 fit an i64 for the next 292 million years.
        Ok(since) => since.as_millis() as i64,
        Err(before) => -(before.duration().as_millis() as i64),
    }
}

/// Milliseconds since the Unix epoch (times are kept to the millisecond).
pub(crate) fn unix_ms(at: OffsetDateTime) -> i64 {
    // An OffsetDateTime spans ±10,000 years: its milliseconds always fit in an i64.
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The header field for a time: the i64's bits as 16 lowercase hex digits.
pub(crate) fn time_field(ms: i64) -> String {
    format!("{:016x}", ms as u64)
}

/// Encodes a record for `SET`.
pub(crate) fn encode(record: &SessionRecord) -> Result<Vec<u8>> {
    let user = record.user_id.as_bytes();
    let user_len = u32::try_from(user.len())
        .map_err(|_| Error::InvalidData("user id longer than 4 GiB".to_owned()))?;
    let mut value = Vec::with_capacity(HEADER_LEN + user.len() + 64);
    value.extend_from_slice(VERSION);
    value.extend_from_slice(time_field(unix_ms(record.expires_at)).as_bytes());
    value.extend_from_slice(time_field(unix_ms(record.created_at)).as_bytes());
    value.extend_from_slice(format!("{user_len:08x}").as_bytes());
    let lifetime_ms = match record.lifetime {
        None => 0,
        Some(lifetime) => u64::try_from(lifetime.whole_milliseconds())
            .ok()
            .filter(|ms| *ms > 0 && *ms <= i64::MAX as u64)
            .ok_or_else(|| {
                Error::InvalidData("session lifetime is not a positive millisecond count".into())
            })?,
    };
    value.extend_from_slice(format!("{lifetime_ms:016x}").as_bytes());
    value.extend_from_slice(format!("{:016x}", record.data_version).as_bytes());
    value.extend_from_slice(user);
    record.data.write_json(&mut value)?;
    Ok(value)
}

/// A decoded value: the record, and its expiry as stored (Unix ms), which the read path
/// compares without going through `OffsetDateTime`.
pub(crate) struct Decoded {
    pub(crate) record: SessionRecord,
    pub(crate) expires_ms: i64,
}

impl Decoded {
    /// Whether the record has expired at `now_ms` (exclusive, as `SessionRecord::is_expired`).
    pub(crate) fn is_expired(&self, now_ms: i64) -> bool {
        now_ms >= self.expires_ms
    }
}

/// Decodes a stored value; a header that is not a narvik record's is [`Error::CorruptRecord`].
///
/// The data is handed on as the text it is, unparsed: the engine parses it once, into the
/// application's type (text that is not JSON is a corrupt record then).
pub(crate) fn decode(session_id: &str, value: &[u8]) -> Result<Decoded> {
    let corrupt = |reason: &str| Error::CorruptRecord {
        reason: format!(
            "redis value of session {}: {reason}",
            narvik_core::session::short_id(session_id)
        ),
        source: None,
    };
    let header_len = match value.get(..2) {
        Some(version) if version == VERSION => HEADER_LEN,
        Some(version) if version == VERSION_N1 => HEADER_LEN_N1,
        _ => return Err(corrupt("not a narvik record")),
    };
    if value.len() < header_len {
        return Err(corrupt("not a narvik record"));
    }
    let (lifetime, data_version) = if header_len == HEADER_LEN {
        let lifetime_ms = hex_field(&value[LIFETIME]).ok_or_else(|| corrupt("bad lifetime"))?;
        let lifetime = match lifetime_ms {
            0 => None,
            ms => Some(
                i64::try_from(ms)
                    .map(time::Duration::milliseconds)
                    .map_err(|_| corrupt("lifetime out of range"))?,
            ),
        };
        let data_version =
            hex_field(&value[DATA_VERSION]).ok_or_else(|| corrupt("bad data version"))?;
        if data_version > i64::MAX as u64 {
            return Err(corrupt("data version out of range"));
        }
        (lifetime, data_version)
    } else {
        (None, 0)
    };
    let expires_ms = hex_field(&value[EXPIRES]).ok_or_else(|| corrupt("bad expiry"))? as i64;
    let created_ms = hex_field(&value[CREATED]).ok_or_else(|| corrupt("bad creation time"))? as i64;
    let user_len = hex_field(&value[USER_LEN]).ok_or_else(|| corrupt("bad user id length"))?;
    let user_end = usize::try_from(user_len)
        .ok()
        .and_then(|len| header_len.checked_add(len))
        .filter(|end| *end <= value.len())
        .ok_or_else(|| corrupt("user id past the end"))?;
    let user_id = std::str::from_utf8(&value[header_len..user_end])
        .map_err(|error| Error::corrupt("user id is not UTF-8", error))?
        .to_owned();
    let data = std::str::from_utf8(&value[user_end..])
        .map_err(|error| Error::corrupt("data is not UTF-8", error))?;
    let record = SessionRecord {
        id: session_id.to_owned(),
        user_id,
        expires_at: from_unix_ms(expires_ms).ok_or_else(|| corrupt("expiry out of range"))?,
        created_at: from_unix_ms(created_ms)
            .ok_or_else(|| corrupt("creation time out of range"))?,
        data: SessionData::from_json_text(data),
        lifetime,
        data_version,
    };
    Ok(Decoded { record, expires_ms })
}

/// A fixed-width field of lowercase hex digits (as written by [`time_field`]), at most 16.
fn hex_field(field: &[u8]) -> Option<u64> {
    // From the bytes: this runs three times per fetch, and `from_str_radix` needs a UTF-8 check
    // first.
    let mut number = [0_u8; 8];
    let start = number.len().checked_sub(field.len() / 2)?;
    decode_lower_hex(field, &mut number[start..])?;
    Some(u64::from_be_bytes(number))
}

fn from_unix_ms(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn record(user_id: &str, data: serde_json::Value) -> SessionRecord {
        SessionRecord {
            id: "abc".into(),
            user_id: user_id.into(),
            expires_at: datetime!(2030-01-01 0:00:00.123 UTC),
            created_at: datetime!(1969-12-31 23:59:59.999 UTC),
            data: data.into(),
            lifetime: Some(time::Duration::days(30)),
            data_version: 7,
        }
    }

    /// The layout before lifetime and data version were stored.
    fn encode_n1(record: &SessionRecord) -> Vec<u8> {
        let mut value = b"n1".to_vec();
        value.extend_from_slice(time_field(unix_ms(record.expires_at)).as_bytes());
        value.extend_from_slice(time_field(unix_ms(record.created_at)).as_bytes());
        value.extend_from_slice(format!("{:08x}", record.user_id.len()).as_bytes());
        value.extend_from_slice(record.user_id.as_bytes());
        record.data.write_json(&mut value).expect("writes");
        value
    }

    #[test]
    fn n1_records_decode_with_no_lifetime_and_version_zero() {
        let original = record("alice", serde_json::json!({"a": 1}));
        let decoded = decode("abc", &encode_n1(&original))
            .expect("decodes")
            .record;
        assert_eq!(
            decoded,
            SessionRecord {
                lifetime: None,
                data_version: 0,
                ..original
            }
        );
        assert!(include_str!("../scripts/lib.lua").contains("local HEADER_LEN_N1 = 42"));
    }

    #[test]
    fn lifetime_none_and_big_versions_round_trip() {
        let mut original = record("bob", serde_json::Value::Null);
        original.lifetime = None;
        original.data_version = i64::MAX as u64;
        let value = encode(&original).expect("encodes");
        assert_eq!(&value[LIFETIME], b"0000000000000000");
        assert_eq!(decode("abc", &value).expect("decodes").record, original);
        original.lifetime = Some(time::Duration::ZERO);
        assert!(matches!(encode(&original), Err(Error::InvalidData(_))));
    }

    #[test]
    fn round_trips_negative_times_and_odd_user_ids() {
        for user in ["", "{x}", "ünï\u{0}code", &"u".repeat(1024)] {
            let original = record(user, serde_json::json!({"a": [1, -2.5, null], "b": "\"\\"}));
            let value = encode(&original).expect("encodes");
            let decoded = decode("abc", &value).expect("decodes");
            assert_eq!(decoded.record, original);
            assert_eq!(decoded.expires_ms, unix_ms(original.expires_at));
            assert_eq!(
                &value[CREATED],
                time_field(unix_ms(original.created_at)).as_bytes()
            );
        }
    }

    #[test]
    fn header_offsets_match_the_scripts() {
        let value = encode(&record("alice", serde_json::Value::Null)).expect("encodes");
        assert_eq!(&value[..2], b"n2");
        assert_eq!(&value[USER_LEN], b"00000005");
        assert_eq!(&value[DATA_VERSION], b"0000000000000007");
        assert_eq!(&value[HEADER_LEN..HEADER_LEN + 5], b"alice");
        assert!(include_str!("../scripts/lib.lua").contains("local HEADER_LEN = 74"));
    }

    #[test]
    fn garbage_is_a_corrupt_record_not_a_panic() {
        let valid = encode(&record("alice", serde_json::json!({}))).expect("encodes");
        let mut long_user = valid.clone();
        long_user[USER_LEN].copy_from_slice(b"ffffffff");
        let mut bad_digit = valid.clone();
        bad_digit[EXPIRES.start] = b'g';
        let mut not_utf8 = valid.clone();
        not_utf8.push(0xff);
        let mut bad_version = valid.clone();
        bad_version[DATA_VERSION.start] = b'8';
        let mut bad_lifetime = valid.clone();
        bad_lifetime[LIFETIME.start] = b'X';
        for value in [
            b"".to_vec(),
            b"n1zzzz".to_vec(),
            b"hello world, this is not a record at all!!!!".to_vec(),
            long_user,
            bad_digit,
            not_utf8,
            bad_version,
            bad_lifetime,
            valid[..HEADER_LEN - 1].to_vec(),
        ] {
            assert!(matches!(
                decode("abc", &value).map(|decoded| decoded.record),
                Err(Error::CorruptRecord { .. })
            ));
        }
    }

    #[test]
    fn data_that_is_not_json_fails_when_decoded() {
        let valid = encode(&record("alice", serde_json::json!({"a": 1}))).expect("encodes");
        let truncated = decode("abc", &valid[..valid.len() - 1])
            .expect("the header is intact")
            .record;
        assert!(truncated.data.decode::<serde_json::Value>().is_err());
        let engine_view = narvik_core::Session::<serde_json::Value>::from_record(truncated);
        assert!(matches!(engine_view, Err(Error::CorruptRecord { .. })));
    }
}
