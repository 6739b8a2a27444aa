//! [`SessionData`]: a session's additional data as a store keeps it.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{Error, Result};

/// What a store saving the data reports when it cannot be written out as JSON.
fn not_json(error: serde_json::Error) -> Error {
    Error::InvalidData(format!("session data is not JSON: {error}"))
}

/// The additional data of a stored session: JSON, in whichever form the store has at hand.
///
/// A store that keeps parsed values (a document database) hands out a shared
/// [`serde_json::Value`]; a store that keeps or reads text (memory, Redis, a SQL column read
/// as text: SQLite, MySQL, PostgreSQL's `jsonb`) hands out the JSON text, unparsed.
/// Either way the engine decodes the application's type straight from it: text is parsed
/// once, into the type the application asked for, with no [`serde_json::Value`] built in
/// between; a value is decoded from the store's own tree, borrowed. Cloning is cheap in both
/// forms (a shared pointer).
///
/// Text from a store is checked when it is decoded: text that is not JSON makes
/// [`SessionData::decode`] fail (the engine reports that as [`Error::CorruptRecord`]) and
/// [`SessionData::to_value`] fail with [`Error::InvalidData`].
///
/// ```
/// use narvik_core::SessionData;
/// use serde_json::json;
///
/// let from_value = SessionData::from(json!({ "theme": "dark" }));
/// let from_text = SessionData::from_json_text(r#"{ "theme" : "dark" }"#);
/// // Equality is by JSON value, not by spelling.
/// assert_eq!(from_value, from_text);
/// let theme: std::collections::HashMap<String, String> = from_text.decode().unwrap();
/// assert_eq!(theme["theme"], "dark");
/// ```
#[derive(Clone)]
pub struct SessionData(Repr);

#[derive(Clone)]
enum Repr {
    Value(Arc<Value>),
    Text(Arc<str>),
}

impl SessionData {
    /// Data from JSON text as a store read it. The text is not parsed here: a store's read
    /// path stays one copy of the bytes, and the engine parses it once, into `D`.
    pub fn from_json_text(text: impl Into<Arc<str>>) -> Self {
        Self(Repr::Text(text.into()))
    }

    /// Decodes the data as `D`. Fails when the data does not fit `D` (or, for text from a
    /// store, is not JSON).
    pub fn decode<D: DeserializeOwned>(&self) -> serde_json::Result<D> {
        match &self.0 {
            // From a borrowed value: copies only what `D` keeps.
            Repr::Value(value) => D::deserialize(&**value),
            Repr::Text(text) => serde_json::from_str(text),
        }
    }

    /// The data as a JSON value: borrowed when the store kept one, parsed from text otherwise.
    /// Text that is not JSON is [`Error::InvalidData`] (what a store saving it reports).
    pub fn to_value(&self) -> Result<Cow<'_, Value>> {
        match &self.0 {
            Repr::Value(value) => Ok(Cow::Borrowed(value)),
            Repr::Text(text) => serde_json::from_str(text).map(Cow::Owned).map_err(not_json),
        }
    }

    /// Appends the data as compact JSON text (text from a store is appended as it was read).
    pub fn write_json(&self, out: &mut Vec<u8>) -> Result<()> {
        match &self.0 {
            Repr::Value(value) => serde_json::to_writer(out, &**value).map_err(not_json),
            Repr::Text(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(())
            }
        }
    }

    /// The data as JSON text: borrowed when a store read it as text, written out otherwise.
    pub fn to_json_text(&self) -> Result<Cow<'_, str>> {
        match &self.0 {
            Repr::Value(value) => serde_json::to_string(&**value)
                .map(Cow::Owned)
                .map_err(not_json),
            Repr::Text(text) => Ok(Cow::Borrowed(text)),
        }
    }
}

impl Default for SessionData {
    /// JSON `null`: the data of a session whose application has none.
    fn default() -> Self {
        Self::from(Value::Null)
    }
}

impl From<Value> for SessionData {
    fn from(value: Value) -> Self {
        Self(Repr::Value(Arc::new(value)))
    }
}

impl From<Arc<Value>> for SessionData {
    fn from(value: Arc<Value>) -> Self {
        Self(Repr::Value(value))
    }
}

impl PartialEq for SessionData {
    /// Equal when both hold the same JSON value, however it is spelled (key order, spacing).
    /// Text that is not JSON equals only the identical text.
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (Repr::Value(left), Repr::Value(right)) => left == right,
            (Repr::Text(left), Repr::Text(right)) if left == right => true,
            _ => match (self.to_value(), other.to_value()) {
                (Ok(left), Ok(right)) => left == right,
                _ => false,
            },
        }
    }
}

impl PartialEq<Value> for SessionData {
    fn eq(&self, other: &Value) -> bool {
        self.to_value().is_ok_and(|value| *value == *other)
    }
}

impl fmt::Debug for SessionData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Value(value) => f.debug_tuple("SessionData").field(value).finish(),
            Repr::Text(text) => f.debug_tuple("SessionData::Text").field(text).finish(),
        }
    }
}

impl fmt::Display for SessionData {
    /// The data as JSON text.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Value(value) => fmt::Display::fmt(value, f),
            Repr::Text(text) => f.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_forms_decode_write_and_compare_alike() {
        let value = json!({ "b": [1, -2.5, null, "ü\"\\"], "a": { "n": u64::MAX } });
        let from_value = SessionData::from(value.clone());
        let text = from_value.to_json_text().expect("writes").into_owned();
        let from_text = SessionData::from_json_text(text.as_str());
        assert_eq!(from_value, from_text);
        assert_eq!(from_text, value);
        assert_eq!(from_text.to_value().expect("parses").into_owned(), value);
        assert_eq!(from_value.decode::<Value>().expect("decodes"), value);
        assert_eq!(from_text.decode::<Value>().expect("decodes"), value);
        let (mut written_value, mut written_text) = (Vec::new(), Vec::new());
        from_value.write_json(&mut written_value).expect("writes");
        from_text.write_json(&mut written_text).expect("writes");
        assert_eq!(written_value, written_text);
        assert_eq!(from_text.to_string(), text);
        assert_eq!(from_value.to_string(), text);
    }

    #[test]
    fn text_is_compared_by_value_not_spelling() {
        let compact = SessionData::from_json_text(r#"{"a":1,"b":2}"#);
        let spaced = SessionData::from_json_text(r#"{ "b": 2, "a": 1 }"#);
        assert_eq!(compact, spaced);
        assert_ne!(compact, SessionData::from_json_text(r#"{"a":1}"#));
        assert_eq!(SessionData::default(), SessionData::from_json_text("null"));
    }

    #[test]
    fn text_that_is_not_json_fails_to_decode_and_equals_only_itself() {
        for bad in ["", "{", "{\"a\":1", "nul", "[1,]", "{\"a\":1} trailing"] {
            let data = SessionData::from_json_text(bad);
            assert!(data.decode::<Value>().is_err(), "{bad:?}");
            assert!(
                matches!(data.to_value(), Err(Error::InvalidData(_))),
                "{bad:?}"
            );
            assert_eq!(data, SessionData::from_json_text(bad));
            assert_ne!(data, SessionData::default());
        }
    }
}
