//! Structured inputs the fuzzer builds from its bytes (`arbitrary`).

use arbitrary::Arbitrary;
use narvik_core::{CookieConfig, CookiePrefix, SameSite};
use serde_json::{Map, Number, Value};
use time::Duration;

/// A JSON document, as a tree the fuzzer can grow.
#[derive(Debug, Arbitrary)]
pub enum Json {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A negative or positive integer.
    Signed(i64),
    /// An integer up to `u64::MAX`.
    Unsigned(u64),
    /// A float from its bits (non-finite ones become `null`: JSON has none).
    Float(u64),
    /// A string.
    Text(String),
    /// An array.
    Array(Vec<Json>),
    /// An object.
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The tree as a JSON value, nesting capped at `depth` (serde_json reads 128 levels).
    pub fn to_value(&self, depth: usize) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Signed(n) => Value::from(*n),
            Self::Unsigned(n) => Value::from(*n),
            Self::Float(bits) => Number::from_f64(f64::from_bits(*bits))
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Self::Text(text) => Value::String(text.clone()),
            Self::Array(items) if depth > 0 => {
                Value::Array(items.iter().map(|item| item.to_value(depth - 1)).collect())
            }
            Self::Object(fields) if depth > 0 => Value::Object(
                fields
                    .iter()
                    .map(|(key, value)| (key.clone(), value.to_value(depth - 1)))
                    .collect::<Map<String, Value>>(),
            ),
            Self::Array(_) | Self::Object(_) => Value::Null,
        }
    }
}

/// Names worth trying more often than chance would: the prefixes in several cases.
const NAMES: [&str; 10] = [
    "narvik_session",
    "__Host-sid",
    "__host-sid",
    "__HOST-sid",
    "__Secure-sid",
    "__secure-sid",
    "__Host-",
    "__Secure-__Host-x",
    "sid",
    "",
];

/// A cookie configuration, mostly near the rules' edges.
#[derive(Debug, Arbitrary)]
pub struct ConfigInput {
    name: Result<u8, String>,
    max_age_ms: Option<i64>,
    secure: bool,
    http_only: bool,
    domain: Option<Result<u8, String>>,
    path: Result<u8, String>,
    same_site: u8,
    prefix: u8,
}

impl ConfigInput {
    /// The configuration.
    pub fn to_config(&self) -> CookieConfig {
        let pick = |choice: &Result<u8, String>, from: &[&str]| match choice {
            Ok(index) => from[usize::from(*index) % from.len()].to_owned(),
            Err(text) => text.clone(),
        };
        CookieConfig {
            name: pick(&self.name, &NAMES),
            max_age: self.max_age_ms.map(Duration::milliseconds),
            secure: self.secure,
            http_only: self.http_only,
            domain: self.domain.as_ref().map(|domain| {
                pick(
                    domain,
                    &["example.com", ".example.com", "Example.COM", "a..b", "."],
                )
            }),
            path: pick(&self.path, &["/", "/app", "/app/", "x", ""]),
            same_site: [SameSite::Strict, SameSite::Lax, SameSite::None]
                [usize::from(self.same_site) % 3],
            prefix: [CookiePrefix::None, CookiePrefix::Secure, CookiePrefix::Host]
                [usize::from(self.prefix) % 3],
        }
    }
}

/// Replaces every `{0}` and `{1}` in `bytes` with the two live tokens, so that the fuzzer can
/// reach a real session without guessing 160 bits.
pub fn with_tokens(bytes: &[u8], tokens: [&str; 2]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut rest = bytes;
    while let Some(&first) = rest.first() {
        match rest {
            [b'{', digit @ (b'0' | b'1'), b'}', tail @ ..] => {
                out.extend_from_slice(tokens[usize::from(*digit - b'0')].as_bytes());
                rest = tail;
            }
            [_, tail @ ..] => {
                out.push(first);
                rest = tail;
            }
            [] => break,
        }
    }
    out
}
