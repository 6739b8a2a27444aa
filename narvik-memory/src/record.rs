//! A session record as a shard keeps it: one allocation holding everything a lookup reads, so
//! that a lookup at 10^6 sessions costs one cache miss past the index, not one per field.
//!
//! Layout (little endian):
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..8 | `expires_ms`, Unix milliseconds (the only field that changes) |
//! | 8..16 | `created_ms` |
//! | 16..20 | id length; the top bit set for a canonical id (kept as its 32 raw bytes), the next one for `null` data (kept as nothing) |
//! | 20..24 | user id length inline; or the top bit set and 8 bytes of user-index handle |
//! | 24..28 | the record's slot number in its shard |
//! | 28..36 | the session's own lifetime in milliseconds, 0 for none (the engine's) |
//! | 36..44 | `data_version` |
//! | 44.. | the id, the user id (or handle), then the data's compact JSON text |
//!
//! The lifetime and the version take 16 bytes together (60 bytes of header and hex id): a
//! lifetime is a positive number of milliseconds, so 0 is free to mean "none" without a flag,
//! and full-width fields keep every read a plain load.

use std::hash::BuildHasher;
use std::num::NonZeroU64;

use crate::id::{encode_hex, Id};

/// Flags the id field of a canonical (hex) id, and the user field of a handle.
const FLAG: u32 = 1 << 31;
/// Flags the id field of a record whose data is `null`.
const NULL: u32 = 1 << 30;
const HEADER: usize = 44;

/// The longest user id a record holds inline; a longer one is kept once, in the user index,
/// and the record holds an 8-byte handle to it.
pub(crate) const INLINE_USER: usize = 64;

/// The user of a record: its id, or a handle to the user index's copy of a long one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum User<'a> {
    Inline(&'a str),
    Handle(u64),
}

/// One record, in one allocation.
#[derive(Debug)]
pub(crate) struct Record(Box<[u8]>);

impl Record {
    /// A record. For a user id longer than [`INLINE_USER`] the handle is written later, with
    /// [`set_handle`](Self::set_handle), once the user index has given one: building the record
    /// needs no lock.
    pub(crate) fn new(
        id: Id<'_>,
        user: &str,
        expires_ms: i64,
        created_ms: i64,
        lifetime_ms: u64,
        data_version: u64,
        json: Option<&str>,
    ) -> Option<Self> {
        let id_bytes: &[u8] = match &id {
            Id::Hex(digest) => digest,
            Id::Text(text) => text.as_bytes(),
        };
        let id_field = u32::try_from(id_bytes.len())
            .ok()
            .filter(|len| len & (FLAG | NULL) == 0)?
            | if matches!(id, Id::Hex(_)) { FLAG } else { 0 }
            | if json.is_none() { NULL } else { 0 };
        let json = json.unwrap_or_default();
        let inline = user.len() <= INLINE_USER;
        let user_field = if inline { user.len() as u32 } else { FLAG };
        let user_len = if inline { user.len() } else { 8 };
        let mut bytes = Vec::with_capacity(HEADER + id_bytes.len() + user_len + json.len());
        bytes.extend_from_slice(&expires_ms.to_le_bytes());
        bytes.extend_from_slice(&created_ms.to_le_bytes());
        bytes.extend_from_slice(&id_field.to_le_bytes());
        bytes.extend_from_slice(&user_field.to_le_bytes());
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&lifetime_ms.to_le_bytes());
        bytes.extend_from_slice(&data_version.to_le_bytes());
        bytes.extend_from_slice(id_bytes);
        if inline {
            bytes.extend_from_slice(user.as_bytes());
        } else {
            bytes.extend_from_slice(&[0; 8]);
        }
        bytes.extend_from_slice(json.as_bytes());
        Some(Self(bytes.into_boxed_slice()))
    }

    fn field<const N: usize>(&self, at: usize) -> [u8; N] {
        // Every record is built by `new`, so the bytes are always there: the zeros are never
        // read.
        self.0
            .get(at..at + N)
            .and_then(|bytes| bytes.try_into().ok())
            .unwrap_or([0; N])
    }

    pub(crate) fn expires_ms(&self) -> i64 {
        i64::from_le_bytes(self.field(0))
    }

    pub(crate) fn set_expires_ms(&mut self, expires_ms: i64) {
        if let Some(field) = self.0.get_mut(0..8) {
            field.copy_from_slice(&expires_ms.to_le_bytes());
        }
    }

    pub(crate) fn created_ms(&self) -> i64 {
        i64::from_le_bytes(self.field(8))
    }

    /// The session's own lifetime in milliseconds, 0 when it has none.
    pub(crate) fn lifetime_ms(&self) -> u64 {
        u64::from_le_bytes(self.field(28))
    }

    /// How many times the data has been replaced.
    pub(crate) fn data_version(&self) -> u64 {
        u64::from_le_bytes(self.field(36))
    }

    /// This record with its data replaced by `json` (`None` for `null`) and its version set
    /// to `data_version`: everything else (id, user or handle, expiry, slot, lifetime) copied
    /// as it is. A new allocation, since the data is the record's tail.
    pub(crate) fn with_data(&self, json: Option<&str>, data_version: u64) -> Self {
        let (at, len, _) = self.user_span();
        let keep = self.0.get(..at + len).unwrap_or_default();
        let text = json.unwrap_or_default();
        let mut bytes = Vec::with_capacity(keep.len() + text.len());
        bytes.extend_from_slice(keep);
        bytes.extend_from_slice(text.as_bytes());
        let id_field = u32::from_le_bytes(self.field(16)) & !NULL;
        let id_field = id_field | if json.is_none() { NULL } else { 0 };
        if let Some(field) = bytes.get_mut(16..20) {
            field.copy_from_slice(&id_field.to_le_bytes());
        }
        if let Some(field) = bytes.get_mut(36..44) {
            field.copy_from_slice(&data_version.to_le_bytes());
        }
        Self(bytes.into_boxed_slice())
    }

    /// The record's slot in its shard, which names it in the expiry and per-user indexes.
    pub(crate) fn slot(&self) -> u32 {
        u32::from_le_bytes(self.field(24))
    }

    pub(crate) fn set_slot(&mut self, slot: u32) {
        if let Some(field) = self.0.get_mut(24..28) {
            field.copy_from_slice(&slot.to_le_bytes());
        }
    }

    fn id_field(&self) -> (bool, usize) {
        let field = u32::from_le_bytes(self.field(16));
        (field & FLAG != 0, (field & !(FLAG | NULL)) as usize)
    }

    /// Where the user field starts and how long it is, and whether it is a handle.
    fn user_span(&self) -> (usize, usize, bool) {
        let (_, id_len) = self.id_field();
        let field = u32::from_le_bytes(self.field(20));
        let handle = field & FLAG != 0;
        let len = if handle { 8 } else { field as usize };
        (HEADER + id_len, len, handle)
    }

    fn id_bytes(&self) -> &[u8] {
        let (_, len) = self.id_field();
        self.0.get(HEADER..HEADER + len).unwrap_or_default()
    }

    /// One byte of every 64, and the last.
    fn touch(&self) -> u8 {
        let last = self.0.last().copied().unwrap_or_default();
        self.0.iter().step_by(64).fold(last, |acc, byte| acc ^ byte)
    }

    /// The id in the form it was classified in when saved.
    pub(crate) fn id(&self) -> Id<'_> {
        let (hex, _) = self.id_field();
        let bytes = self.id_bytes();
        let digest: Result<[u8; 32], _> = bytes.try_into();
        match digest {
            Ok(digest) if hex => Id::Hex(digest),
            // Text ids were copied from a `&str`: the fallback is never taken.
            _ => Id::Text(std::str::from_utf8(bytes).unwrap_or_default()),
        }
    }

    /// Whether this is the record of `id`.
    ///
    /// It first reads one byte of each cache line of the record: those reads do not depend on
    /// each other, so the processor fetches every line at once, alongside the header, instead
    /// of one after another as a fetch reads the id, the user and the data. A record that is
    /// not in cache then costs one memory latency, not four or five.
    pub(crate) fn has_id(&self, id: &Id<'_>) -> bool {
        std::hint::black_box(self.touch());
        let (hex, _) = self.id_field();
        match id {
            Id::Hex(digest) => hex && self.id_bytes() == digest,
            Id::Text(text) => !hex && self.id_bytes() == text.as_bytes(),
        }
    }

    /// The id exactly as it was saved.
    pub(crate) fn id_string(&self) -> String {
        match self.id() {
            Id::Hex(digest) => encode_hex(&digest),
            Id::Text(text) => text.to_owned(),
        }
    }

    pub(crate) fn user(&self) -> User<'_> {
        let (at, len, handle) = self.user_span();
        if handle {
            User::Handle(u64::from_le_bytes(self.field(at)))
        } else {
            let bytes = self.0.get(at..at + len).unwrap_or_default();
            // Copied from a `&str`: the fallback is never taken.
            User::Inline(std::str::from_utf8(bytes).unwrap_or_default())
        }
    }

    /// Writes the user-index handle of a record whose user id is too long to keep inline.
    pub(crate) fn set_handle(&mut self, handle: u64) {
        let (at, _, is_handle) = self.user_span();
        if let (true, Some(field)) = (is_handle, self.0.get_mut(at..at + 8)) {
            field.copy_from_slice(&handle.to_le_bytes());
        }
    }

    /// The data's compact JSON text, or `None` for `null`.
    pub(crate) fn json(&self) -> Option<&str> {
        if u32::from_le_bytes(self.field(16)) & NULL != 0 {
            return None;
        }
        let (at, len, _) = self.user_span();
        // Copied from a `&str` at a character boundary: the fallback is never taken.
        Some(std::str::from_utf8(self.0.get(at + len..).unwrap_or_default()).unwrap_or_default())
    }
}

/// The store's hash of a session id, the same for an id being looked up and for the record
/// that holds it. Never zero (its lowest bit is set), so a slab of hashes needs no tag.
pub(crate) fn hash_id(hasher: &impl BuildHasher, id: &Id<'_>) -> NonZeroU64 {
    let hash = match id {
        Id::Hex(digest) => hasher.hash_one(digest),
        Id::Text(text) => hasher.hash_one(text),
    };
    NonZeroU64::new(hash | 1).unwrap_or(NonZeroU64::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_one_pointer() {
        assert_eq!(std::mem::size_of::<Record>(), 16);
    }

    #[test]
    fn every_field_reads_back_as_written() {
        let hex_id = narvik_core::token::session_id_from_token("abc");
        let long_user = "u".repeat(INLINE_USER + 1);
        let cases = [
            (hex_id.as_str(), "alice", Some(r#"{"a":[1,2.5,"ü"]}"#)),
            ("any text id ü", "", None),
            ("", &long_user, Some("")),
        ];
        for (id, user, json) in cases {
            let form = Id::of(id);
            let mut record =
                Record::new(form, user, -1_234, i64::MAX, u64::MAX, u64::MAX - 1, json)
                    .expect("fits");
            assert_eq!(record.lifetime_ms(), u64::MAX);
            assert_eq!(record.data_version(), u64::MAX - 1);
            assert_eq!(record.id_string(), id);
            assert!(record.has_id(&form));
            assert!(!record.has_id(&Id::of("other")));
            assert_eq!(record.expires_ms(), -1_234);
            assert_eq!(record.created_ms(), i64::MAX);
            assert_eq!(record.json(), json);
            if user.len() > INLINE_USER {
                assert_eq!(record.user(), User::Handle(0));
                record.set_handle(u64::MAX - 7);
                assert_eq!(record.user(), User::Handle(u64::MAX - 7));
            } else {
                assert_eq!(record.user(), User::Inline(user));
                record.set_handle(99);
                assert_eq!(record.user(), User::Inline(user), "no handle to write");
            }
            record.set_expires_ms(i64::MIN);
            assert_eq!(record.expires_ms(), i64::MIN);
            assert_eq!(record.slot(), 0);
            record.set_slot(u32::MAX);
            assert_eq!(record.slot(), u32::MAX);
            assert_eq!(record.json(), json, "the rest is untouched");
            assert_eq!(record.lifetime_ms(), u64::MAX);
            for new_json in [Some(r#"{"b":"longer than before, ü"}"#), None, Some("")] {
                let replaced = record.with_data(new_json, 7);
                assert_eq!(replaced.json(), new_json);
                assert_eq!(replaced.data_version(), 7);
                assert_eq!(replaced.id_string(), id);
                assert!(replaced.has_id(&form));
                assert_eq!(replaced.user(), record.user());
                assert_eq!(replaced.expires_ms(), i64::MIN);
                assert_eq!(replaced.created_ms(), i64::MAX);
                assert_eq!(replaced.slot(), u32::MAX);
                assert_eq!(replaced.lifetime_ms(), u64::MAX);
            }
        }
    }

    #[test]
    fn a_hex_id_and_its_text_twin_never_match() {
        let hex_id = narvik_core::token::session_id_from_token("abc");
        let upper = hex_id.to_uppercase();
        let hex = Record::new(Id::of(&hex_id), "u", 0, 0, 0, 0, None).expect("fits");
        let text = Record::new(Id::of(&upper), "u", 0, 0, 0, 0, Some("1")).expect("fits");
        assert!(!hex.has_id(&Id::of(&upper)));
        assert!(!text.has_id(&Id::of(&hex_id)));
        assert_eq!(text.id_string(), upper);
    }
}
