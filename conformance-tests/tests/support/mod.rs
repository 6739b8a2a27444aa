//! A small, correct reference store for the suite's own tests, and deliberately broken
//! variants of it that the suite must catch.
//!
//! The store keeps records in a map keyed by session id and a per-user index (user id to
//! session ids), as most real stores do, so that the bugs real adapters ship (a collation that
//! folds case, an index that loses entries, a read-modify-write without a transaction) can be
//! built into it one at a time. Each [`Bug`] breaks exactly one rule of the contract and
//! declares its capabilities the way its author would: the same as the correct store, unless
//! the declaration itself is the bug.

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use narvik_core::{
    async_trait, Capabilities, Error, ExpiredCount, OptionalOperation, Result, SessionData,
    SessionRecord, SessionStore,
};
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use unicode_normalization::UnicodeNormalization;

/// Defines [`Bug`] and [`Bug::ALL`] from one list, so that the list of every variant (which
/// the self-test checks against its table) cannot miss one.
macro_rules! bugs {
    ($( $(#[doc = $doc:literal])+ $name:ident, )+) => {
        /// A defect to build into the reference store: each breaks exactly one rule.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Bug {
            $( $(#[doc = $doc])+ $name, )+
        }

        impl Bug {
            /// Every variant, in declaration order.
            pub const ALL: &'static [Bug] = &[$(Bug::$name,)+];

            /// What the broken store does (its doc comment, on one line).
            pub fn describe(self) -> String {
                let doc = match self {
                    $( Bug::$name => concat!($($doc, " ",)+), )+
                };
                doc.split_whitespace().collect::<Vec<_>>().join(" ")
            }
        }
    };
}

bugs! {
    // ---- insert only ----
    /// `save_session` overwrites an existing id (an upsert).
    SaveUpserts,
    /// `save_session` reports the duplicate but overwrites anyway.
    SaveOverwritesThenReportsDuplicate,
    /// `save_session` of an existing id answers `Ok` and keeps the original
    /// (`INSERT ... ON CONFLICT DO NOTHING`): the engine never learns of the collision.
    DuplicateIgnored,
    /// `save_session` of an existing id fails with an untyped error (the driver's
    /// unique-violation passed on as `Unavailable`) instead of `DuplicateId`.
    DuplicateNotTyped,
    /// Race: `save_session` checks that the id is free, yields, then writes (a read followed
    /// by a plain `SET`), so two concurrent saves of one id both succeed.
    SaveCheckThenInsert,
    /// A lost write: each save is acknowledged, then dropped every 97th time.
    DropsSomeSaves,
    // ---- exact round trip: times and data ----
    /// Times keep whole seconds only.
    TruncatesToSeconds,
    /// Integral floats come back as integers (as a JSON layer that drops `.0` would).
    FloatsBecomeIntegers,
    /// `null` data comes back as `{}`.
    NullBecomesEmptyObject,
    /// Integers pass through `f64` (a JavaScript-style JSON layer): past 2^53 they lose their
    /// low bits; `i64::MIN`, `i64::MAX` and `u64::MAX` happen to survive (saturating casts).
    IntegersThroughF64,
    /// Integers above `i64::MAX` are clamped to `i64::MAX` (a signed 64-bit column).
    U64ClampedToI64,
    /// Integers above `i64::MAX` wrap around to negative numbers (`u64 as i64`).
    U64WrappedToI64,
    /// Floats are written with 15 significant digits (`%.15g`), losing the last bits.
    Floats15Digits,
    /// Floats are written with 16 significant digits, not the 17 a round trip needs.
    Floats16Digits,
    /// Floats pass through `f32` (a single-precision column).
    FloatsThroughF32,
    /// Control characters are stripped from data strings (a "sanitiser"; tab and newlines
    /// kept).
    DataControlCharsStripped,
    /// NUL in data strings is replaced by U+FFFD (what a text column cannot hold is altered
    /// instead of refused with `InvalidData`).
    DataNulReplaced,
    /// Data whose JSON text exceeds 65,535 bytes is refused with `InvalidData` (a `TEXT`
    /// column), though 64 KiB values must be stored.
    DataCappedAt64KiB,
    // ---- exact round trip: identities ----
    /// User ids are compared ASCII case-insensitively (a `_ci` collation on the user column):
    /// `Alice` and `alice` share one per-user index.
    UserIdsAsciiCaseInsensitive,
    /// User ids are compared after Unicode lower-casing (`str::to_lowercase`): `Alice`/`alice`
    /// and `İ`/`i̇` merge.
    UserIdsUnicodeCaseInsensitive,
    /// The per-user index is keyed by the user id with leading and trailing Unicode
    /// whitespace trimmed (`str::trim`).
    UserIdsTrimmed,
    /// User ids are stored with ASCII whitespace trimmed (`trim_ascii`) at save: the record
    /// comes back with another user id, and `bob ` lands in `bob`'s index.
    UserIdsAsciiTrimmedOnSave,
    /// Trailing control characters are stripped from user ids at save.
    UserIdsTrailingControlStripped,
    /// The per-user index is keyed by the NFC form of the user id: NFD `e + U+0301` and
    /// NFC `é`, `U+212B` and `U+00C5`, merge.
    UserIdsNfcNormalised,
    /// User ids are cut to 255 bytes at save (a `VARCHAR(255)` column in non-strict mode).
    UserIdsTruncatedTo255Bytes,
    /// Session ids are compared ASCII case-insensitively (a `_ci` collation on the primary
    /// key): an id and its upper-case twin are one record.
    SessionIdsCaseInsensitive,
    /// Session ids are compared with trailing spaces ignored (SQL `PAD SPACE` collation).
    SessionIdsTrailingSpaceIgnored,
    /// Session ids are keyed by their NFD form (a file-per-session store on a file system
    /// that normalises names).
    SessionIdsNfdNormalised,
    /// C-string semantics: every id is cut at its first NUL, in saves and look-ups alike.
    IdsCutAtNul,
    /// NUL is silently dropped from every id, in saves and look-ups alike.
    IdsDropNul,
    // ---- updates: no resurrection, nothing but the expiry ----
    /// `update_session_expiry` inserts a record when the id is missing.
    UpdateRecreates,
    /// `update_session_expiry` also resets `created_at`.
    UpdateTouchesCreatedAt,
    /// `update_session_expiry` does nothing.
    UpdateIgnored,
    /// `update_session_expiry` extends a record that has expired but is not purged yet (the
    /// v1 memory and Postgres stores did).
    UpdateRevivesExpired,
    /// Race: `update_session_expiry` reads the record, yields, then writes it back whole (an
    /// upsert), so an update racing a delete brings the record back.
    UpdateReadModifyWrite,
    /// `update_record_expiry` ignores the record and does nothing (`update_session_expiry` is
    /// correct).
    UpdateRecordExpiryIgnored,
    /// `update_record_expiry` uses the record's user id as the key (arguments mixed up), so
    /// the session itself is never extended.
    UpdateRecordExpiryKeyedByUserId,
    /// `update_record_expiry` writes the handed record back with the new expiry whether or
    /// not it still exists (`SET key record PX ...`): a deleted session comes back.
    UpdateRecordExpiryRecreates,
    /// `update_record_expiry` skips the expiry check ("the engine just fetched it, so it is
    /// live") and revives an expired record.
    UpdateRecordExpiryRevivesExpired,
    /// `update_record_expiry` extends every live session of the record's user
    /// (`WHERE user_id = $2`), not just this one.
    UpdateRecordExpiryMovesAllOfUser,
    /// Race: `update_record_expiry` checks the record, yields, then writes the handed record
    /// back whole, so an extension racing a logout resurrects the session.
    UpdateRecordReadModifyWrite,
    // ---- deletes ----
    /// `delete_session` treats `*` as "everything" (a key-pattern bug).
    DeleteWildcard,
    /// `delete_session` does nothing.
    DeleteIgnored,
    /// `delete_session` of an unknown id fails (not idempotent).
    DeleteMissingIsError,
    /// `fetch_session` of an unknown id fails with an error instead of `Ok(None)`.
    FetchMissingIsError,
    // ---- per-user listing ----
    /// `fetch_sessions_for_user` matches by prefix, leaking near-twin users' sessions.
    ListingMatchesPrefix,
    /// `fetch_sessions_for_user` includes expired sessions.
    ListingIncludesExpired,
    /// `fetch_sessions_for_user` returns every session in the store.
    ListingLeaksEveryone,
    /// The per-user calls match user ids with SQL `LIKE` semantics (`%`, `_` are wildcards),
    /// as a query built with `LIKE` instead of `=` would.
    UserIdsMatchedWithLike,
    /// `fetch_sessions_for_user` returns at most 1,000 sessions (`LIMIT 1000`, one page).
    ListingCappedAt1000,
    /// `fetch_sessions_for_user` returns at most 2,000 sessions (two pages, then stops).
    ListingCappedAt2000,
    /// `fetch_sessions_for_user` shows the expiry a session was saved with, not the updated
    /// one (the index holds copies that updates do not touch).
    ListingStaleExpiry,
    /// `fetch_sessions_for_user` lists an updated session twice (the index appends on every
    /// write instead of keeping a set).
    ListingDuplicatesUpdated,
    /// `fetch_sessions_for_user` ignores the `now` it is handed and filters on the wall
    /// clock.
    ListingUsesWallClock,
    /// `fetch_sessions_for_user` lists a session whose `expires_at` equals `now`
    /// (`>=` instead of `>`).
    ListingIncludesExpiresAtNow,
    // ---- per-user deletion ----
    /// `delete_sessions_for_user` deletes by prefix.
    DeleteForUserMatchesPrefix,
    /// `delete_sessions_for_user` deletes at most 1,000 sessions (one batch) and stops.
    DeleteForUserOneBatchOf1000,
    /// `delete_sessions_for_user` drops the user's index but leaves the records fetchable.
    DeleteForUserLeavesRecords,
    /// `delete_sessions_for_user` of a user without sessions fails.
    DeleteForUnknownUserIsError,
    /// Race: `delete_sessions_for_user` copies the whole store, yields, then writes the copy
    /// minus the user back (a read-modify-write of one blob), losing sessions other users
    /// saved meanwhile.
    DeleteForUserRewritesSnapshot,
    /// Race: `delete_sessions_for_user` reads the user's index, yields, deletes those records
    /// and then the whole index, orphaning sessions of the user saved meanwhile (fetchable,
    /// never listed).
    DeleteForUserDropsIndexRace,
    // ---- expired deletion ----
    /// `delete_all_expired_sessions` deletes sessions expiring within the next hour too.
    DeleteExpiredTakesLive,
    /// `delete_all_expired_sessions` deletes the right ones but reports one more.
    DeleteExpiredMiscounts,
    /// `delete_all_expired_sessions` reports the count but deletes nothing.
    DeleteExpiredDeletesNothing,
    /// `delete_all_expired_sessions` deletes at most 1,000 per call and reports what it
    /// deleted.
    PurgeCappedAt1000,
    /// `delete_all_expired_sessions` deletes at most 4,096 per call but reports every expired
    /// one.
    PurgeCappedAt4096CountsAll,
    /// `delete_all_expired_sessions` ignores the `now` it is handed and cuts off on the wall
    /// clock.
    PurgeUsesWallClock,
    /// `delete_all_expired_sessions` spares a session whose `expires_at` equals `now`
    /// (`<` instead of `<=`).
    PurgeSparesExpiresAtNow,
    /// Race: `delete_all_expired_sessions` counts the expired records, yields, then deletes
    /// the expired ones and returns the earlier count (two purges at once count each record
    /// twice).
    PurgeCountThenDelete,
    // ---- data updates: a compare-and-set on the version, live at `now` ----
    /// `save_session` drops the record's own lifetime (a column the store forgot).
    LifetimeDroppedAtSave,
    /// `save_session` resets the data version to 0.
    DataVersionResetAtSave,
    /// `update_session_data` ignores the version (last write wins), setting it to the
    /// handed version + 1.
    DataUpdateIgnoresVersion,
    /// `update_session_data` replaces the data but does not bump the version.
    DataUpdateKeepsVersion,
    /// `update_session_data` of a missing record inserts it (an upsert).
    DataUpdateRecreates,
    /// `update_session_data` ignores the `now` it is handed and judges expiry by the wall
    /// clock.
    DataUpdateUsesWallClock,
    /// `update_session_data` checks the version, then writes the handed record back whole
    /// with the new data, so the stored expiry goes back to the handed one.
    DataUpdateWritesHandedRecord,
    /// Race: `update_session_data` checks the version, yields, then writes the data (no
    /// atomic compare-and-set), so two updates read at one version both succeed.
    DataUpdateCheckThenWrite,
    /// Race: `update_session_data` copies the live record, yields, then writes the copy back
    /// whole with the new data, resurrecting a deleted record and losing an extension.
    DataUpdateReadModifyWrite,
    /// `update_session_data` also writes the new data into the user's other sessions.
    DataUpdateTouchesWholeUser,
    /// Declared `ALL`, but `update_session_data` keeps the trait's default body.
    DataUpdateDeclaredButUnsupported,
    // ---- the TTL-native flavour ----
    /// TTL store: an extension changes the stored `expires_at` but not the server's own
    /// deadline, so the record vanishes at its old expiry.
    TtlExtensionKeepsServerDeadline,
    /// TTL store: saving an already-expired record fails (`SET ... PX` with a negative time)
    /// instead of answering `Ok`.
    TtlSaveOfExpiredFails,
    /// TTL store: a record saved already expired is written without any expiry, so it lives
    /// forever.
    TtlPastExpiryPersists,
    // ---- the declaration ----
    /// The optional calls answer `Unsupported` although the store is declared `ALL`.
    OptionalUnsupported,
    /// Declared `ALL`, but only the listing is implemented: the per-user delete and the
    /// purge keep the trait's default bodies.
    DeclaresAllImplementsListingOnly,
    /// Declares `REQUIRED_ONLY` (the trait's default) but serves the optional calls.
    DeclaresRequiredOnlyButServes,
    /// Declares `ExpiredFetch::Returned` but hides expired records from `fetch_session`.
    DeclaresReturnedButHides,
    /// TTL store declaring `ExpiredFetch::Hidden` whose fetch returns expired records (a
    /// TTL index whose monitor runs later, with no filter in the query).
    DeclaresHiddenButReturns,
    /// Declares `keeps_already_expired: true` but drops records saved already expired.
    DeclaresKeepsExpiredButDrops,
    /// TTL store declaring `ExpiredCount::Exact`: its server removes expired records by
    /// itself, so the purge counts fewer than expired.
    DeclaresExactButServerExpires,
    /// Names itself with a line break (a name built from a multi-line setting), which splits
    /// every log line that carries the engine's store span.
    NameBreaksLogLines,
}

/// The correct store a broken one is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavour {
    /// Keeps and returns expired records, every optional call: [`Capabilities::ALL`].
    Full,
    /// Expires records by its own server deadline: [`Capabilities::TTL_NATIVE`].
    TtlNative,
    /// The four required calls only: [`Capabilities::REQUIRED_ONLY`].
    RequiredOnly,
}

impl Flavour {
    /// The correct store of this flavour.
    pub fn correct_store(self) -> Arc<dyn SessionStore> {
        match self {
            Flavour::Full => Arc::new(ReferenceStore::new()),
            Flavour::TtlNative => Arc::new(ReferenceStore::ttl_native()),
            Flavour::RequiredOnly => Arc::new(RequiredOnlyStore::default()),
        }
    }
}

impl Bug {
    /// The flavour of correct store this bug is a defect of.
    pub fn flavour(self) -> Flavour {
        match self {
            Bug::TtlExtensionKeepsServerDeadline
            | Bug::TtlSaveOfExpiredFails
            | Bug::TtlPastExpiryPersists
            | Bug::DeclaresHiddenButReturns
            | Bug::DeclaresExactButServerExpires => Flavour::TtlNative,
            Bug::DeclaresRequiredOnlyButServes => Flavour::RequiredOnly,
            _ => Flavour::Full,
        }
    }

    /// The broken store.
    pub fn store(self) -> Arc<dyn SessionStore> {
        Arc::new(ReferenceStore::broken(self))
    }
}

/// One stored record, as the "server" holds it.
#[derive(Clone)]
struct Entry {
    record: SessionRecord,
    /// The key of the per-user index this record is listed under.
    user_key: String,
    /// TTL flavour: when the server drops the record by itself (`None`: never).
    deadline: Option<OffsetDateTime>,
    /// The expiry the record was saved with (what a stale index copy shows).
    saved_expires_at: OffsetDateTime,
    /// How many times the expiry was updated.
    updates: u32,
}

#[derive(Clone, Default)]
struct State {
    /// Records by session key.
    records: HashMap<String, Entry>,
    /// Session keys by user key.
    by_user: HashMap<String, BTreeSet<String>>,
}

impl State {
    fn insert(&mut self, key: String, entry: Entry) {
        self.remove(&key);
        self.by_user
            .entry(entry.user_key.clone())
            .or_default()
            .insert(key.clone());
        self.records.insert(key, entry);
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let entry = self.records.remove(key)?;
        if let Some(keys) = self.by_user.get_mut(&entry.user_key) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_user.remove(&entry.user_key);
            }
        }
        Some(entry)
    }
}

/// An in-memory store behind one mutex, with a per-user index: correct unless built with a
/// [`Bug`].
pub struct ReferenceStore {
    state: Mutex<State>,
    saves: AtomicU64,
    bug: Option<Bug>,
    /// Whether the "server" expires records by itself (the TTL-native flavour).
    ttl: bool,
    declared: Capabilities,
}

impl Default for ReferenceStore {
    fn default() -> Self {
        Self::new()
    }
}

impl ReferenceStore {
    /// A correct store that keeps and returns expired records ([`Capabilities::ALL`]).
    pub fn new() -> Self {
        Self {
            state: Mutex::default(),
            saves: AtomicU64::new(0),
            bug: None,
            ttl: false,
            declared: Capabilities::ALL,
        }
    }

    /// A correct store behaving like a server with native TTL: a record saved already expired
    /// is dropped, an expired record is hidden from fetch and listing, and expired deletion
    /// counts only what the "server" had not yet removed ([`Capabilities::TTL_NATIVE`]).
    pub fn ttl_native() -> Self {
        Self {
            ttl: true,
            declared: Capabilities::TTL_NATIVE,
            ..Self::new()
        }
    }

    /// A store with `bug`, of the bug's flavour, declaring what its author would.
    pub fn broken(bug: Bug) -> Self {
        let base = match bug.flavour() {
            Flavour::TtlNative => Self::ttl_native(),
            Flavour::Full | Flavour::RequiredOnly => Self::new(),
        };
        let declared = match bug {
            Bug::DeclaresRequiredOnlyButServes => Capabilities::REQUIRED_ONLY,
            Bug::DeclaresExactButServerExpires => Capabilities {
                expired_count: ExpiredCount::Exact,
                ..Capabilities::TTL_NATIVE
            },
            _ => base.declared,
        };
        Self {
            bug: Some(bug),
            declared,
            ..base
        }
    }

    fn has(&self, bug: Bug) -> bool {
        self.bug == Some(bug)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the "server" still holds `entry` at the wall-clock time `wall`.
    fn on_server(&self, entry: &Entry, wall: OffsetDateTime) -> bool {
        !self.ttl || entry.deadline.is_none_or(|deadline| deadline > wall)
    }

    /// The key a session id is stored and looked up under: the id itself, unless a collation
    /// or encoding bug folds it.
    fn session_key(&self, session_id: &str) -> String {
        match self.bug {
            Some(Bug::SessionIdsCaseInsensitive) => session_id.to_ascii_lowercase(),
            Some(Bug::SessionIdsTrailingSpaceIgnored) => session_id.trim_end_matches(' ').into(),
            Some(Bug::SessionIdsNfdNormalised) => session_id.nfd().collect(),
            Some(Bug::IdsCutAtNul | Bug::IdsDropNul) => self.stored_id(session_id),
            _ => session_id.to_owned(),
        }
    }

    /// The session id or user id as a buggy driver passes it on (NUL handling).
    fn stored_id(&self, id: &str) -> String {
        match self.bug {
            Some(Bug::IdsCutAtNul) => id.split('\0').next().unwrap_or_default().to_owned(),
            Some(Bug::IdsDropNul) => id.replace('\0', ""),
            _ => id.to_owned(),
        }
    }

    /// The key of the per-user index for `user_id`, in saves and look-ups alike.
    fn user_key(&self, user_id: &str) -> String {
        match self.bug {
            Some(Bug::UserIdsAsciiCaseInsensitive) => user_id.to_ascii_lowercase(),
            Some(Bug::UserIdsUnicodeCaseInsensitive) => user_id.to_lowercase(),
            Some(Bug::UserIdsTrimmed) => user_id.trim().to_owned(),
            Some(Bug::UserIdsNfcNormalised) => user_id.nfc().collect(),
            Some(Bug::IdsCutAtNul | Bug::IdsDropNul) => self.stored_id(user_id),
            _ => user_id.to_owned(),
        }
    }

    /// The user id a save stores.
    fn stored_user_id(&self, user_id: &str) -> String {
        match self.bug {
            Some(Bug::UserIdsAsciiTrimmedOnSave) => user_id.trim_ascii().to_owned(),
            Some(Bug::UserIdsTrailingControlStripped) => {
                user_id.trim_end_matches(char::is_control).to_owned()
            }
            Some(Bug::UserIdsTruncatedTo255Bytes) => {
                let mut end = user_id.len().min(255);
                while !user_id.is_char_boundary(end) {
                    end -= 1;
                }
                user_id[..end].to_owned()
            }
            _ => self.stored_id(user_id),
        }
    }

    /// The record as the store keeps it (and hands it back).
    fn stored_form(&self, record: &SessionRecord) -> Result<SessionRecord> {
        let mut record = record.clone();
        record.id = self.stored_id(&record.id);
        record.user_id = self.stored_user_id(&record.user_id);
        if self.has(Bug::LifetimeDroppedAtSave) {
            record.lifetime = None;
        }
        if self.has(Bug::DataVersionResetAtSave) {
            record.data_version = 0;
        }
        if self.has(Bug::TruncatesToSeconds) {
            record.expires_at = record.expires_at.replace_nanosecond(0).expect("valid");
            record.created_at = record.created_at.replace_nanosecond(0).expect("valid");
        }
        let data = record.data.to_value()?.into_owned();
        let data = self.stored_data(data);
        let text = data.to_string();
        if self.has(Bug::DataCappedAt64KiB) && text.len() > 65_535 {
            return Err(Error::InvalidData(format!(
                "{} bytes of data exceed the column's 65,535",
                text.len()
            )));
        }
        // Kept as text, as a store reading bytes hands it out: the suite must work with both
        // forms of `SessionData`.
        record.data = SessionData::from_json_text(text);
        Ok(record)
    }

    fn stored_data(&self, data: Value) -> Value {
        let Some(bug) = self.bug else {
            return data;
        };
        match bug {
            Bug::NullBecomesEmptyObject if data.is_null() => serde_json::json!({}),
            Bug::FloatsBecomeIntegers
            | Bug::IntegersThroughF64
            | Bug::U64ClampedToI64
            | Bug::U64WrappedToI64
            | Bug::Floats15Digits
            | Bug::Floats16Digits
            | Bug::FloatsThroughF32 => map_numbers(data, &|n| lossy_number(bug, n)),
            Bug::DataControlCharsStripped => map_strings(data, &|s| {
                s.chars()
                    .filter(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r'))
                    .collect()
            }),
            Bug::DataNulReplaced => map_strings(data, &|s| s.replace('\0', "\u{fffd}")),
            _ => data,
        }
    }

    fn entry(&self, record: SessionRecord, deadline: Option<OffsetDateTime>) -> Entry {
        Entry {
            user_key: self.user_key(&record.user_id),
            deadline,
            saved_expires_at: record.expires_at,
            updates: 0,
            record,
        }
    }

    fn unsupported(&self, operation: OptionalOperation) -> Result<()> {
        let missing = match self.bug {
            Some(Bug::OptionalUnsupported) => true,
            Some(Bug::DataUpdateDeclaredButUnsupported) => {
                operation == OptionalOperation::UpdateSessionData
            }
            Some(Bug::DeclaresAllImplementsListingOnly) => {
                operation != OptionalOperation::FetchSessionsForUser
            }
            _ => false,
        };
        if missing {
            return Err(Error::unsupported(operation));
        }
        Ok(())
    }

    /// Sets the expiry of the record under `key` if it is live, as every correct update does.
    /// `check_expired: false` skips the expiry check (a bug).
    fn extend(
        &self,
        state: &mut State,
        key: &str,
        expires_at: OffsetDateTime,
        check_expired: bool,
    ) {
        let wall = OffsetDateTime::now_utc();
        let Some(entry) = state.records.get_mut(key) else {
            return;
        };
        if !self.on_server(entry, wall) {
            state.remove(key);
            return;
        }
        // Expired is as good as missing: an extension never revives a record.
        if check_expired && entry.record.is_expired(wall) {
            return;
        }
        entry.record.expires_at = expires_at;
        entry.updates += 1;
        if self.ttl && !self.has(Bug::TtlExtensionKeepsServerDeadline) {
            entry.deadline = Some(expires_at);
        }
        if self.has(Bug::UpdateTouchesCreatedAt) {
            entry.record.created_at = expires_at - Duration::days(1);
        }
    }

    /// A copy of the live entry under `key`, for the read-modify-write bugs.
    fn live_copy(&self, key: &str) -> Option<Entry> {
        let wall = OffsetDateTime::now_utc();
        self.state()
            .records
            .get(key)
            .filter(|entry| self.on_server(entry, wall) && !entry.record.is_expired(wall))
            .cloned()
    }
}

/// The window a racy read-modify-write leaves open between its read and its write.
async fn race_window() {
    tokio::task::yield_now().await;
}

/// A wider window, for the bugs that do one racy read-modify-write per call.
async fn wide_race_window() {
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
}

/// Every call starts with a suspension, as a real store's round trip does: concurrent tasks
/// interleave between calls the way they would over a network, which gives the racy bugs
/// their chance (an in-memory call that never suspends would run a task's calls back to
/// back).
async fn round_trip() {
    tokio::task::yield_now().await;
}

/// SQL `LIKE`: `%` matches any run of characters, `_` any one character.
fn like(text: &str, pattern: &str) -> bool {
    let text: Vec<char> = text.chars().collect();
    let pattern: Vec<char> = pattern.chars().collect();
    fn matches(text: &[char], pattern: &[char]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('%', rest)) => (0..=text.len()).any(|skip| matches(&text[skip..], rest)),
            Some(('_', rest)) => !text.is_empty() && matches(&text[1..], rest),
            Some((c, rest)) => text.first() == Some(c) && matches(&text[1..], rest),
        }
    }
    matches(&text, &pattern)
}

/// Applies `f` to every number in `value`.
fn map_numbers(value: Value, f: &dyn Fn(serde_json::Number) -> Value) -> Value {
    match value {
        Value::Number(n) => f(n),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| map_numbers(v, f)).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, map_numbers(v, f)))
                .collect(),
        ),
        other => other,
    }
}

/// Applies `f` to every string value in `value` (keys stay).
fn map_strings(value: Value, f: &dyn Fn(&str) -> String) -> Value {
    match value {
        Value::String(s) => Value::String(f(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| map_strings(v, f)).collect()),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, map_strings(v, f)))
                .collect(),
        ),
        other => other,
    }
}

/// A number as a lossy layer of `bug` hands it back.
fn lossy_number(bug: Bug, n: serde_json::Number) -> Value {
    let reparse = |text: String| text.parse::<f64>().map_or(Value::Null, Value::from);
    match (bug, n.as_i64(), n.as_u64(), n.as_f64()) {
        (Bug::FloatsBecomeIntegers, _, _, Some(f))
            if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 =>
        {
            Value::from(f as i64)
        }
        (Bug::IntegersThroughF64, Some(i), _, _) => Value::from(i as f64 as i64),
        (Bug::IntegersThroughF64, None, Some(u), _) => Value::from(u as f64 as u64),
        (Bug::U64ClampedToI64, None, Some(_), _) => Value::from(i64::MAX),
        (Bug::U64WrappedToI64, None, Some(u), _) => Value::from(u as i64),
        (Bug::Floats15Digits, _, _, Some(f)) if n.is_f64() => reparse(format!("{f:.14e}")),
        (Bug::Floats16Digits, _, _, Some(f)) if n.is_f64() => reparse(format!("{f:.15e}")),
        (Bug::FloatsThroughF32, _, _, Some(f)) if n.is_f64() => Value::from(f as f32 as f64),
        _ => Value::Number(n),
    }
}

#[async_trait]
impl SessionStore for ReferenceStore {
    fn capabilities(&self) -> Capabilities {
        self.declared
    }

    fn store_name(&self) -> &'static str {
        if self.has(Bug::NameBreaksLogLines) {
            "reference\nstore"
        } else {
            "reference"
        }
    }

    async fn save_session(&self, record: &SessionRecord) -> Result<()> {
        round_trip().await;
        let stored = self.stored_form(record)?;
        let wall = OffsetDateTime::now_utc();
        let mut deadline = None;
        if stored.is_expired(wall) {
            if self.ttl && self.has(Bug::TtlSaveOfExpiredFails) {
                return Err(Error::unavailable(
                    "ERR invalid expire time in 'set' command",
                ));
            }
            if self.ttl && !self.has(Bug::TtlPastExpiryPersists) {
                // The server would expire it at once: nothing to keep.
                return Ok(());
            }
            if self.has(Bug::DeclaresKeepsExpiredButDrops) {
                return Ok(());
            }
        } else if self.ttl {
            deadline = Some(stored.expires_at);
        }
        if self.has(Bug::DropsSomeSaves)
            && (self.saves.fetch_add(1, Ordering::SeqCst) + 1).is_multiple_of(97)
        {
            return Ok(());
        }
        let key = self.session_key(&stored.id);
        let entry = self.entry(stored, deadline);
        if self.has(Bug::SaveCheckThenInsert) {
            let taken = self
                .state()
                .records
                .get(&key)
                .is_some_and(|existing| self.on_server(existing, wall));
            if taken {
                return Err(Error::DuplicateId);
            }
            race_window().await;
            self.state().insert(key, entry);
            return Ok(());
        }
        let mut state = self.state();
        match state.records.get(&key) {
            Some(existing) if self.on_server(existing, wall) => {}
            // The server had already dropped it: the id is free.
            Some(_) | None => {
                state.insert(key, entry);
                return Ok(());
            }
        }
        match self.bug {
            Some(Bug::SaveUpserts) => {
                state.insert(key, entry);
                Ok(())
            }
            Some(Bug::SaveOverwritesThenReportsDuplicate) => {
                state.insert(key, entry);
                Err(Error::DuplicateId)
            }
            Some(Bug::DuplicateIgnored) => Ok(()),
            Some(Bug::DuplicateNotTyped) => Err(Error::unavailable(
                "duplicate key value violates unique constraint \"sessions_pkey\"",
            )),
            _ => Err(Error::DuplicateId),
        }
    }

    async fn fetch_session(&self, session_id: &str) -> Result<Option<SessionRecord>> {
        round_trip().await;
        let key = self.session_key(session_id);
        let wall = OffsetDateTime::now_utc();
        let mut state = self.state();
        let found = match state.records.get(&key) {
            Some(entry)
                if self.on_server(entry, wall) || self.has(Bug::DeclaresHiddenButReturns) =>
            {
                Some(entry.record.clone())
            }
            Some(_) => {
                // The "server" removes an expired record when it is touched, as Redis does
                // lazily.
                state.remove(&key);
                None
            }
            None => None,
        };
        drop(state);
        match found {
            Some(record) if self.has(Bug::DeclaresReturnedButHides) && record.is_expired(wall) => {
                Ok(None)
            }
            None if self.has(Bug::FetchMissingIsError) => {
                Err(Error::unavailable("no row with this id"))
            }
            found => Ok(found),
        }
    }

    async fn update_session_expiry(
        &self,
        session_id: &str,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        round_trip().await;
        let key = self.session_key(session_id);
        if self.has(Bug::UpdateIgnored) {
            return Ok(());
        }
        if self.has(Bug::UpdateReadModifyWrite) {
            let Some(mut entry) = self.live_copy(&key) else {
                return Ok(());
            };
            race_window().await;
            entry.record.expires_at = expires_at;
            entry.updates += 1;
            self.state().insert(key, entry);
            return Ok(());
        }
        let mut state = self.state();
        if !state.records.contains_key(&key) && self.has(Bug::UpdateRecreates) {
            let now = OffsetDateTime::now_utc();
            let record = SessionRecord {
                id: session_id.to_owned(),
                user_id: String::new(),
                expires_at,
                created_at: now,
                data: Value::Null.into(),
                lifetime: None,
                data_version: 0,
            };
            let deadline = self.ttl.then_some(expires_at);
            let entry = self.entry(record, deadline);
            state.insert(key, entry);
            return Ok(());
        }
        let check_expired = !self.has(Bug::UpdateRevivesExpired);
        self.extend(&mut state, &key, expires_at, check_expired);
        Ok(())
    }

    async fn update_record_expiry(
        &self,
        record: &SessionRecord,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        round_trip().await;
        let key = self.session_key(&record.id);
        match self.bug {
            Some(Bug::UpdateRecordExpiryIgnored) => Ok(()),
            Some(Bug::UpdateRecordExpiryKeyedByUserId) => {
                self.update_session_expiry(&record.user_id, expires_at)
                    .await
            }
            Some(Bug::UpdateRecordExpiryRecreates) => {
                let mut record = self.stored_form(record)?;
                record.expires_at = expires_at;
                let deadline = self.ttl.then_some(expires_at);
                let entry = self.entry(record, deadline);
                self.state().insert(key, entry);
                Ok(())
            }
            Some(Bug::UpdateRecordExpiryRevivesExpired) => {
                self.extend(&mut self.state(), &key, expires_at, false);
                Ok(())
            }
            Some(Bug::UpdateRecordExpiryMovesAllOfUser) => {
                let mut state = self.state();
                let keys: Vec<String> = state
                    .by_user
                    .get(&self.user_key(&record.user_id))
                    .map(|keys| keys.iter().cloned().collect())
                    .unwrap_or_default();
                for key in keys {
                    self.extend(&mut state, &key, expires_at, true);
                }
                Ok(())
            }
            Some(Bug::UpdateRecordReadModifyWrite) => {
                if self.live_copy(&key).is_none() {
                    return Ok(());
                }
                race_window().await;
                let mut record = self.stored_form(record)?;
                record.expires_at = expires_at;
                let deadline = self.ttl.then_some(expires_at);
                let entry = self.entry(record, deadline);
                self.state().insert(key, entry);
                Ok(())
            }
            _ => self.update_session_expiry(&record.id, expires_at).await,
        }
    }

    async fn delete_session(&self, session_id: &str) -> Result<()> {
        round_trip().await;
        let key = self.session_key(session_id);
        let mut state = self.state();
        if self.has(Bug::DeleteWildcard) && session_id == "*" {
            *state = State::default();
        }
        if self.has(Bug::DeleteIgnored) {
            return Ok(());
        }
        let removed = state.remove(&key);
        if removed.is_none() && self.has(Bug::DeleteMissingIsError) {
            return Err(Error::unavailable("no row with this id"));
        }
        Ok(())
    }

    async fn fetch_sessions_for_user(
        &self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>> {
        round_trip().await;
        self.unsupported(OptionalOperation::FetchSessionsForUser)?;
        let wall = OffsetDateTime::now_utc();
        let cutoff = if self.has(Bug::ListingUsesWallClock) {
            wall
        } else {
            now
        };
        let user_key = self.user_key(user_id);
        let state = self.state();
        let keys: Vec<&String> = match self.bug {
            Some(Bug::ListingLeaksEveryone) => state.records.keys().collect(),
            Some(Bug::UserIdsMatchedWithLike) => state
                .by_user
                .iter()
                .filter(|(user, _)| like(user, &user_key))
                .flat_map(|(_, keys)| keys)
                .collect(),
            Some(Bug::ListingMatchesPrefix) => state
                .by_user
                .iter()
                .filter(|(user, _)| user.starts_with(&user_key))
                .flat_map(|(_, keys)| keys)
                .collect(),
            _ => state.by_user.get(&user_key).into_iter().flatten().collect(),
        };
        let mut listed = Vec::new();
        for entry in keys.into_iter().filter_map(|key| state.records.get(key)) {
            let live = match self.bug {
                Some(Bug::ListingIncludesExpired) => true,
                Some(Bug::ListingIncludesExpiresAtNow) => entry.record.expires_at >= cutoff,
                _ => !entry.record.is_expired(cutoff),
            };
            if !live || !self.on_server(entry, wall) {
                continue;
            }
            let mut record = entry.record.clone();
            if self.has(Bug::ListingStaleExpiry) {
                record.expires_at = entry.saved_expires_at;
            }
            if self.has(Bug::ListingDuplicatesUpdated) && entry.updates > 0 {
                listed.push(record.clone());
            }
            listed.push(record);
        }
        match self.bug {
            Some(Bug::ListingCappedAt1000) => listed.truncate(1_000),
            Some(Bug::ListingCappedAt2000) => listed.truncate(2_000),
            _ => {}
        }
        Ok(listed)
    }

    async fn delete_sessions_for_user(&self, user_id: &str) -> Result<()> {
        round_trip().await;
        self.unsupported(OptionalOperation::DeleteSessionsForUser)?;
        let user_key = self.user_key(user_id);
        if self.has(Bug::DeleteForUserRewritesSnapshot) {
            let mut snapshot = self.state().clone();
            wide_race_window().await;
            let doomed: Vec<String> = snapshot
                .by_user
                .get(&user_key)
                .map(|keys| keys.iter().cloned().collect())
                .unwrap_or_default();
            for key in doomed {
                snapshot.remove(&key);
            }
            *self.state() = snapshot;
            return Ok(());
        }
        if self.has(Bug::DeleteForUserDropsIndexRace) {
            let doomed: Vec<String> = self
                .state()
                .by_user
                .get(&user_key)
                .map(|keys| keys.iter().cloned().collect())
                .unwrap_or_default();
            wide_race_window().await;
            let mut state = self.state();
            for key in doomed {
                state.records.remove(&key);
            }
            state.by_user.remove(&user_key);
            return Ok(());
        }
        let mut state = self.state();
        let mut doomed: Vec<String> = match self.bug {
            Some(Bug::UserIdsMatchedWithLike) => state
                .by_user
                .iter()
                .filter(|(user, _)| like(user, &user_key))
                .flat_map(|(_, keys)| keys.iter().cloned())
                .collect(),
            Some(Bug::DeleteForUserMatchesPrefix) => state
                .by_user
                .iter()
                .filter(|(user, _)| user.starts_with(&user_key))
                .flat_map(|(_, keys)| keys.iter().cloned())
                .collect(),
            _ => match state.by_user.get(&user_key) {
                Some(keys) => keys.iter().cloned().collect(),
                None if self.has(Bug::DeleteForUnknownUserIsError) => {
                    return Err(Error::unavailable("no sessions for this user"));
                }
                None => Vec::new(),
            },
        };
        if self.has(Bug::DeleteForUserLeavesRecords) {
            state.by_user.remove(&user_key);
            return Ok(());
        }
        if self.has(Bug::DeleteForUserOneBatchOf1000) {
            doomed.truncate(1_000);
        }
        for key in doomed {
            state.remove(&key);
        }
        Ok(())
    }

    async fn delete_all_expired_sessions(&self, now: OffsetDateTime) -> Result<u64> {
        round_trip().await;
        self.unsupported(OptionalOperation::DeleteAllExpiredSessions)?;
        let wall = OffsetDateTime::now_utc();
        let mut cutoff = if self.has(Bug::PurgeUsesWallClock) {
            wall
        } else {
            now
        };
        if self.has(Bug::DeleteExpiredTakesLive) {
            cutoff += Duration::hours(1);
        }
        let expired = |entry: &Entry| {
            if self.has(Bug::PurgeSparesExpiresAtNow) {
                entry.record.expires_at < cutoff
            } else {
                entry.record.is_expired(cutoff)
            }
        };
        let doomed = |state: &mut State| -> Vec<String> {
            // What the server expired by itself is gone already, and not counted.
            let gone: Vec<String> = state
                .records
                .iter()
                .filter(|(_, entry)| !self.on_server(entry, wall))
                .map(|(key, _)| key.clone())
                .collect();
            for key in gone {
                state.remove(&key);
            }
            state
                .records
                .iter()
                .filter(|(_, entry)| expired(entry))
                .map(|(key, _)| key.clone())
                .collect()
        };
        let counted_first = if self.has(Bug::PurgeCountThenDelete) {
            let count = doomed(&mut self.state()).len();
            wide_race_window().await;
            Some(count)
        } else {
            None
        };
        let mut state = self.state();
        let mut keys = doomed(&mut state);
        let found = keys.len();
        match self.bug {
            Some(Bug::PurgeCappedAt1000) => keys.truncate(1_000),
            Some(Bug::PurgeCappedAt4096CountsAll) => keys.truncate(4_096),
            Some(Bug::DeleteExpiredDeletesNothing) => keys.clear(),
            _ => {}
        }
        let deleted = keys.len();
        for key in keys {
            state.remove(&key);
        }
        let count = match self.bug {
            Some(Bug::PurgeCountThenDelete) => counted_first.unwrap_or(deleted),
            Some(Bug::PurgeCappedAt4096CountsAll | Bug::DeleteExpiredDeletesNothing) => found,
            Some(Bug::DeleteExpiredMiscounts) => deleted + 1,
            _ => deleted,
        };
        Ok(u64::try_from(count).expect("fits"))
    }

    async fn update_session_data(
        &self,
        record: &SessionRecord,
        data: &SessionData,
        now: OffsetDateTime,
    ) -> Result<bool> {
        round_trip().await;
        self.unsupported(OptionalOperation::UpdateSessionData)?;
        let key = self.session_key(&record.id);
        let handed = SessionRecord {
            data: data.clone(),
            ..record.clone()
        };
        let handed = self.stored_form(&handed)?;
        let new_data = handed.data.clone();
        let Some(next_version) = record.data_version.checked_add(1) else {
            return Err(Error::InvalidData(
                "the data version is at its maximum".into(),
            ));
        };
        let wall = OffsetDateTime::now_utc();
        let cutoff = if self.has(Bug::DataUpdateUsesWallClock) {
            wall
        } else {
            now
        };
        // Whether the entry may be updated: on the server, at the handed version, live.
        let matches = |entry: &Entry| {
            self.on_server(entry, wall)
                && (self.has(Bug::DataUpdateIgnoresVersion)
                    || entry.record.data_version == record.data_version)
                && !entry.record.is_expired(cutoff)
        };
        match self.bug {
            Some(Bug::DataUpdateCheckThenWrite) => {
                if !self.state().records.get(&key).is_some_and(matches) {
                    return Ok(false);
                }
                race_window().await;
                if let Some(entry) = self.state().records.get_mut(&key) {
                    entry.record.data = new_data;
                    entry.record.data_version = next_version;
                }
                return Ok(true);
            }
            Some(Bug::DataUpdateReadModifyWrite) => {
                let Some(mut entry) = self
                    .state()
                    .records
                    .get(&key)
                    .filter(|e| matches(e))
                    .cloned()
                else {
                    return Ok(false);
                };
                race_window().await;
                entry.record.data = new_data;
                entry.record.data_version = next_version;
                self.state().insert(key, entry);
                return Ok(true);
            }
            _ => {}
        }
        let mut state = self.state();
        let Some(entry) = state.records.get(&key) else {
            if self.has(Bug::DataUpdateRecreates) {
                let mut created = handed;
                created.data_version = next_version;
                let deadline = self.ttl.then_some(created.expires_at);
                let entry = self.entry(created, deadline);
                state.insert(key, entry);
                return Ok(true);
            }
            return Ok(false);
        };
        if !self.on_server(entry, wall) {
            state.remove(&key);
            return Ok(false);
        }
        if !matches(entry) {
            return Ok(false);
        }
        if self.has(Bug::DataUpdateWritesHandedRecord) {
            let mut written = handed;
            written.data_version = next_version;
            let deadline = self.ttl.then_some(written.expires_at);
            let entry = self.entry(written, deadline);
            state.insert(key, entry);
            return Ok(true);
        }
        let user_key = entry.user_key.clone();
        let Some(entry) = state.records.get_mut(&key) else {
            return Ok(false);
        };
        entry.record.data = new_data.clone();
        if !self.has(Bug::DataUpdateKeepsVersion) {
            entry.record.data_version = next_version;
        }
        if self.has(Bug::DataUpdateTouchesWholeUser) {
            let keys: Vec<String> = state
                .by_user
                .get(&user_key)
                .map(|keys| keys.iter().cloned().collect())
                .unwrap_or_default();
            for other in keys {
                if let Some(entry) = state.records.get_mut(&other) {
                    entry.record.data = new_data.clone();
                }
            }
        }
        Ok(true)
    }
}

/// The reference store with only the four required calls: the optional ones keep the trait's
/// default bodies (the typed unsupported error), and so does the declaration.
#[derive(Default)]
pub struct RequiredOnlyStore(ReferenceStore);

narvik_core::forward_session_store! {
    impl SessionStore for RequiredOnlyStore {
        inner = |this| &this.0;
        forward = [save_session, fetch_session, update_session_expiry, delete_session];
    }
}
