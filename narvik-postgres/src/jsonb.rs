//! Session data as a `jsonb` parameter, written so that what Postgres keeps reads back as the
//! same JSON value: numbers of the same kind with the same bits, strings byte for byte; and
//! read back from a `jsonb` column as the server's JSON text, unparsed ([`JsonbText`]).
//!
//! `jsonb` keeps every number as `numeric`, which keeps the decimal value and its count of
//! fractional digits (its display scale) but not its spelling. Two spellings serde_json
//! writes would not survive that:
//!
//! - **A float written with a positive exponent** (`1e16`, `1.7976931348623157e308`) has no
//!   fractional digits, so `numeric` prints it back as an integer (`10000000000000000`), which
//!   serde_json reads as a `u64`/`i64` when it fits: the float became an integer. Every such
//!   float is written out in full with a `.0` (`10000000000000000.0`), which `numeric` keeps
//!   and prints back unchanged, and serde_json reads as the same float (the digits are the
//!   shortest ones that round-trip, followed by zeros; the workspace enables
//!   `float_roundtrip`, so parsing rounds correctly).
//! - **`-0.0`**: `numeric` has no negative zero and prints `0.0`. It cannot be kept, so it is
//!   [`Error::InvalidData`] at save rather than silently becoming `0.0`.
//!
//! Floats with a negative exponent (`5e-324`) keep fractional digits and come back with a
//! decimal point, so they stay floats; integers (all of `i64` and `u64`) are `numeric`
//! integers and come back as written.
//!
//! `jsonb` refuses the escape `\u0000` (it cannot be converted to `text`), so a NUL anywhere in
//! the data (a string or a key) is [`Error::InvalidData`], found while writing the parameter,
//! before anything is sent.

use std::io;

use narvik_core::{Error, Result, SessionData};
use serde::Serialize as _;
use serde_json::ser::{CharEscape, CompactFormatter, Formatter};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueFormat, PgValueRef};
use sqlx::{Decode, Encode, Postgres, Type};

/// The version byte that opens `jsonb`'s binary format; the JSON text follows it.
const JSONB_FORMAT_VERSION: u8 = 1;

/// Session data ready to bind as a `jsonb` parameter: the version byte and the JSON text.
pub(crate) struct JsonbParam(Vec<u8>);

impl JsonbParam {
    /// Writes `data` for `jsonb`; see the module documentation for what is written differently
    /// from serde_json's default and what is refused.
    pub(crate) fn new(data: &SessionData) -> Result<Self> {
        let value = data.to_value()?;
        let mut out = Vec::with_capacity(128);
        out.push(JSONB_FORMAT_VERSION);
        let mut serializer = serde_json::Serializer::with_formatter(&mut out, JsonbFormatter);
        value.serialize(&mut serializer).map_err(|error| {
            Error::InvalidData(format!(
                "the session data cannot be stored in a PostgreSQL jsonb column: {error}"
            ))
        })?;
        Ok(Self(out))
    }

    /// The JSON text written (without the version byte).
    #[cfg(test)]
    fn text(&self) -> &str {
        std::str::from_utf8(&self.0[1..]).expect("serde_json writes UTF-8")
    }
}

impl Type<Postgres> for JsonbParam {
    fn type_info() -> PgTypeInfo {
        // The built-in jsonb type (by OID, no catalog lookup), as sqlx binds a JSON value.
        <serde_json::Value as Type<Postgres>>::type_info()
    }
}

impl Encode<'_, Postgres> for JsonbParam {
    fn encode_by_ref(
        &self,
        buf: &mut PgArgumentBuffer,
    ) -> std::result::Result<IsNull, BoxDynError> {
        buf.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }

    fn size_hint(&self) -> usize {
        self.0.len()
    }
}

/// Session data read from a `jsonb` column: the JSON text its binary format carries after the
/// version byte, handed on unparsed ([`SessionData::from_json_text`]), so that the engine
/// parses it once, straight into the application's type, with no `serde_json::Value` built
/// in between. A column of any other type does not decode (a corrupt record).
pub(crate) struct JsonbText(pub(crate) SessionData);

impl Type<Postgres> for JsonbText {
    fn type_info() -> PgTypeInfo {
        <serde_json::Value as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        *ty == Self::type_info()
    }
}

impl Decode<'_, Postgres> for JsonbText {
    fn decode(value: PgValueRef<'_>) -> std::result::Result<Self, BoxDynError> {
        let bytes = value.as_bytes()?;
        let text = match value.format() {
            PgValueFormat::Binary => match bytes.split_first() {
                Some((&JSONB_FORMAT_VERSION, text)) => text,
                _ => return Err("unsupported jsonb binary format version".into()),
            },
            PgValueFormat::Text => bytes,
        };
        let text = std::str::from_utf8(text)?;
        Ok(Self(SessionData::from_json_text(text)))
    }
}

/// serde_json's compact output, except for floats with a positive exponent (written in full),
/// `-0.0` and NUL (refused).
struct JsonbFormatter;

fn refuse(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

impl Formatter for JsonbFormatter {
    fn write_f64<W: ?Sized + io::Write>(&mut self, writer: &mut W, value: f64) -> io::Result<()> {
        if value == 0.0 && value.is_sign_negative() {
            return Err(refuse(
                "-0.0 has no jsonb form (numeric has no negative zero; it would read back as 0.0)",
            ));
        }
        let mut shortest = Vec::with_capacity(32);
        CompactFormatter.write_f64(&mut shortest, value)?;
        let shortest = std::str::from_utf8(&shortest)
            .map_err(|_| refuse("serde_json wrote a float that is not ASCII"))?;
        writer.write_all(float_for_numeric(shortest).as_bytes())
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        if matches!(char_escape, CharEscape::AsciiControl(0)) {
            return Err(refuse(
                "a NUL character (U+0000) has no jsonb form (jsonb refuses \\u0000)",
            ));
        }
        CompactFormatter.write_char_escape(writer, char_escape)
    }
}

/// Rewrites serde_json's text of a finite float so that `numeric` keeps at least one fractional
/// digit: a positive (or zero) exponent is multiplied out and `.0` appended where no fraction
/// is left. Text with a decimal point and no exponent, or with a negative exponent, already
/// keeps one and is returned unchanged.
fn float_for_numeric(text: &str) -> std::borrow::Cow<'_, str> {
    let (sign, unsigned) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let exponent: i64 = match exponent {
        None if mantissa.contains('.') => return text.into(),
        None => 0,
        Some(exponent) => match exponent.strip_prefix('+').unwrap_or(exponent).parse() {
            Ok(exponent) if exponent < 0 => return text.into(),
            Ok(exponent) => exponent,
            // Not a shape serde_json writes; sending it as it is lets the server judge it.
            Err(_) => return text.into(),
        },
    };
    let (integer, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{integer}{fraction}");
    // Where the decimal point lands once the exponent is multiplied out. Exponents of finite
    // floats are at most 308, so this cannot overflow.
    let point = integer.len() + usize::try_from(exponent).unwrap_or(0);
    let (whole, rest) = if point >= digits.len() {
        (
            format!("{digits}{}", "0".repeat(point - digits.len())),
            String::new(),
        )
    } else {
        (digits[..point].to_owned(), digits[point..].to_owned())
    };
    // JSON allows no leading zeros ("05.0"); keep one digit.
    let whole = whole.trim_start_matches('0');
    let whole = if whole.is_empty() { "0" } else { whole };
    let rest = if rest.is_empty() { "0" } else { rest.as_str() };
    format!("{sign}{whole}.{rest}").into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn written(value: serde_json::Value) -> Result<String> {
        JsonbParam::new(&SessionData::from(value)).map(|param| param.text().to_owned())
    }

    #[test]
    fn floats_with_a_positive_exponent_are_written_in_full_with_a_fraction() {
        for (float, expected) in [
            (1e16, "10000000000000000.0"),
            (-1e16, "-10000000000000000.0"),
            (1.5e17, "150000000000000000.0"),
            (18446744073709551616.0, "18446744073709552000.0"),
            (1e300, &format!("1{}.0", "0".repeat(300))),
            (f64::MAX, &format!("17976931348623157{}.0", "0".repeat(292))),
        ] {
            let text = written(json!(float)).expect("writes");
            assert_eq!(text, expected, "{float:e}");
            // And the text itself reads back as the same float.
            let back: serde_json::Value = serde_json::from_str(&text).expect("JSON");
            assert_eq!(
                back.as_f64().map(f64::to_bits),
                Some(float.to_bits()),
                "{text}"
            );
            assert!(back.is_f64(), "{text} reads back as a float");
        }
    }

    #[test]
    fn other_numbers_are_written_as_serde_json_writes_them() {
        for value in [
            json!(0.1 + 0.2),
            json!(5e-324),
            json!(f64::MIN_POSITIVE),
            json!(1.0),
            json!(0.0),
            json!(-2.5),
            json!(1e-7),
            json!(123456789.125),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(9_007_199_254_740_993_u64),
        ] {
            assert_eq!(
                written(value.clone()).expect("writes"),
                serde_json::to_string(&value).expect("writes"),
                "{value}"
            );
        }
    }

    #[test]
    fn the_rewrite_handles_every_mantissa_shape() {
        assert_eq!(float_for_numeric("1e16"), "10000000000000000.0");
        assert_eq!(float_for_numeric("1e+16"), "10000000000000000.0");
        assert_eq!(float_for_numeric("1.25E2"), "125.0");
        assert_eq!(float_for_numeric("1.2345e2"), "123.45");
        assert_eq!(float_for_numeric("-0.5e1"), "-5.0");
        assert_eq!(float_for_numeric("7"), "7.0");
        assert_eq!(float_for_numeric("1.5"), "1.5");
        assert_eq!(float_for_numeric("5e-324"), "5e-324");
    }

    #[test]
    fn negative_zero_and_nul_are_invalid_data() {
        for value in [
            json!(-0.0),
            json!({"a": [1, {"b": -0.0}]}),
            json!("a\u{0}b"),
            json!({"k\u{0}": 1}),
            json!(["\u{0}"]),
        ] {
            assert!(
                matches!(written(value.clone()), Err(Error::InvalidData(_))),
                "{value} was accepted"
            );
        }
        // Other control characters are escaped as usual.
        assert_eq!(
            written(json!("\u{1}\u{1f}\r\u{7f}")).expect("writes"),
            "\"\\u0001\\u001f\\r\u{7f}\""
        );
    }
}
