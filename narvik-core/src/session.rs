//! Sessions as the application sees them ([`Session`]) and as a store keeps them
//! ([`SessionRecord`]).

use serde::{de::DeserializeOwned, Serialize};
use time::{Duration, OffsetDateTime};

use crate::data::SessionData;
use crate::error::{Error, Result};

/// A session as a store keeps it: the additional data is plain JSON, so a store never needs to
/// know the application's data type.
///
/// Times carry millisecond precision: the engine truncates them before saving, and every store
/// must return them exactly as saved.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    /// Lowercase hex SHA-256 of the token; the primary key in every store.
    pub id: String,
    /// The user the session belongs to.
    pub user_id: String,
    /// When the session stops being valid.
    pub expires_at: OffsetDateTime,
    /// When the session was created (the base of the absolute lifetime cap).
    pub created_at: OffsetDateTime,
    /// The application's additional data, as JSON (`null` when the application has none):
    /// a shared value or the text the store read (see [`SessionData`]).
    pub data: SessionData,
    /// The session's own sliding lifetime ("remember me"), or `None` for the engine's
    /// configured one. Stores keep it to the millisecond; records written before stores kept
    /// it read as `None`.
    pub lifetime: Option<Duration>,
    /// How many times the data has been replaced through
    /// [`SessionStore::update_session_data`](crate::SessionStore::update_session_data): 0 when
    /// saved, one more on every replacement. A data update succeeds only on the version it read,
    /// so two concurrent updates can never both win. Records written before stores kept it
    /// read as 0.
    pub data_version: u64,
}

impl SessionRecord {
    /// Whether the record has expired at `now` (expiry is exclusive: at `expires_at` it is dead).
    ///
    /// ```
    /// # use narvik_core::SessionRecord;
    /// # use time::macros::datetime;
    /// let record = SessionRecord {
    ///     id: "id".into(),
    ///     user_id: "alice".into(),
    ///     expires_at: datetime!(2030-01-01 0:00 UTC),
    ///     created_at: datetime!(2029-12-01 0:00 UTC),
    ///     data: Default::default(),
    ///     lifetime: None,
    ///     data_version: 0,
    /// };
    /// assert!(!record.is_expired(datetime!(2029-12-31 23:59 UTC)));
    /// assert!(record.is_expired(datetime!(2030-01-01 0:00 UTC)));
    /// ```
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        now >= self.expires_at
    }
}

/// A session as the engine hands it to the application, with typed additional data `D`.
///
/// `new` and `extended` are state flags of this value only; they are never stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Session<D = ()> {
    /// Lowercase hex SHA-256 of the token. Safe to show and log: it cannot be turned back into
    /// a token.
    pub id: String,
    /// The user the session belongs to.
    pub user_id: String,
    /// When the session stops being valid.
    pub expires_at: OffsetDateTime,
    /// When the session was created.
    pub created_at: OffsetDateTime,
    /// The application's additional data.
    pub data: D,
    /// The session's own sliding lifetime, or `None` for the engine's configured one (see
    /// [`Narvik::create_session_with_lifetime`](crate::Narvik::create_session_with_lifetime)).
    pub lifetime: Option<Duration>,
    /// The version of `data` this value was read at (see [`SessionRecord::data_version`]).
    pub data_version: u64,
    /// True on the session returned by `create_session` (and `rotate_session`).
    pub new: bool,
    /// True when `validate_session` moved the expiry forward: the cookie should be set again.
    pub extended: bool,
}

impl<D: DeserializeOwned> Session<D> {
    /// Decodes a stored record into a session of data type `D`.
    ///
    /// A record whose data does not fit `D` is an [`Error::CorruptRecord`], never a panic.
    pub fn from_record(record: SessionRecord) -> Result<Self> {
        let data = decode_data(&record)?;
        Ok(Self::with_data(record, data))
    }
}

impl<D> Session<D> {
    /// The session of `record`, carrying `data` already decoded from it.
    pub(crate) fn with_data(record: SessionRecord, data: D) -> Self {
        Self {
            id: record.id,
            user_id: record.user_id,
            expires_at: record.expires_at,
            created_at: record.created_at,
            data,
            lifetime: record.lifetime,
            data_version: record.data_version,
            new: false,
            extended: false,
        }
    }
}

/// The additional data of `record` as `D`; data that does not fit is [`Error::CorruptRecord`].
pub(crate) fn decode_data<D: DeserializeOwned>(record: &SessionRecord) -> Result<D> {
    record.data.decode::<D>().map_err(|source| {
        Error::corrupt(
            format!(
                "additional data of session {} does not fit `{}`",
                short_id(&record.id),
                std::any::type_name::<D>()
            ),
            source,
        )
    })
}

impl<D: Serialize> Session<D> {
    /// The record a store keeps for this session.
    pub fn to_record(&self) -> Result<SessionRecord> {
        let data = serde_json::to_value(&self.data)
            .map_err(|source| Error::InvalidData(source.to_string()))?;
        Ok(SessionRecord {
            id: self.id.clone(),
            user_id: self.user_id.clone(),
            expires_at: self.expires_at,
            created_at: self.created_at,
            data: data.into(),
            lifetime: self.lifetime,
            data_version: self.data_version,
        })
    }
}

/// The first characters of a session id, enough to tell sessions apart in logs.
pub fn short_id(session_id: &str) -> &str {
    session_id.get(..8).unwrap_or(session_id)
}
