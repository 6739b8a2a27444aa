//! Every store call the engine makes, traced the same way for every store: one debug span per
//! call named after the trait method, with the store's name, the session's short id where the
//! call has one, and the call's outcome or error.
//!
//! Built here once rather than by hand in each store, so that the memory store and any
//! third-party store get the same spans as the shipped server stores. When no subscriber wants
//! debug spans from narvik (the usual case) a call runs bare: no span is built or entered, and
//! the store's future is awaited directly, without another allocation.

use std::future::Future;

use time::OffsetDateTime;
use tracing::Instrument;

use crate::data::SessionData;
use crate::error::{Error, Result};
use crate::session::{short_id, SessionRecord};
use crate::store::SessionStore;

/// The engine's view of its store: the same calls as [`SessionStore`], each in its span.
#[derive(Clone, Copy)]
pub(crate) struct TracedStore<'a> {
    store: &'a dyn SessionStore,
}

/// A debug span for one store call. Each use is a callsite of its own, so a subscriber can
/// filter by the call's name (`fetch_session`) as well as by target.
macro_rules! store_span {
    ($store:expr, $call:literal) => {
        tracing::debug_span!(
            $call,
            store = $store.store_name(),
            session = tracing::field::Empty,
            outcome = tracing::field::Empty,
            error = tracing::field::Empty
        )
    };
    ($store:expr, $call:literal, $session_id:expr) => {
        tracing::debug_span!(
            $call,
            store = $store.store_name(),
            session = short_id($session_id),
            outcome = tracing::field::Empty,
            error = tracing::field::Empty
        )
    };
}

impl<'a> TracedStore<'a> {
    pub(crate) fn new(store: &'a dyn SessionStore) -> Self {
        Self { store }
    }

    pub(crate) async fn save_session(self, record: &SessionRecord) -> Result<()> {
        let span = store_span!(self.store, "save_session", &record.id);
        in_span(span, self.store.save_session(record), |_| "saved").await
    }

    pub(crate) async fn fetch_session(self, session_id: &str) -> Result<Option<SessionRecord>> {
        let span = store_span!(self.store, "fetch_session", session_id);
        in_span(span, self.store.fetch_session(session_id), |found| {
            if found.is_some() {
                "found"
            } else {
                "absent"
            }
        })
        .await
    }

    pub(crate) async fn update_record_expiry(
        self,
        record: &SessionRecord,
        expires_at: OffsetDateTime,
    ) -> Result<()> {
        let span = store_span!(self.store, "update_record_expiry", &record.id);
        in_span(
            span,
            self.store.update_record_expiry(record, expires_at),
            |_| "updated",
        )
        .await
    }

    pub(crate) async fn delete_session(self, session_id: &str) -> Result<()> {
        let span = store_span!(self.store, "delete_session", session_id);
        in_span(span, self.store.delete_session(session_id), |_| "deleted").await
    }

    /// No user id in the span: it is personal data, and the engine's own span says which call
    /// of the application this was.
    pub(crate) async fn fetch_sessions_for_user(
        self,
        user_id: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<SessionRecord>> {
        let span = store_span!(self.store, "fetch_sessions_for_user");
        in_span(
            span,
            self.store.fetch_sessions_for_user(user_id, now),
            |_| "fetched",
        )
        .await
    }

    pub(crate) async fn delete_sessions_for_user(self, user_id: &str) -> Result<()> {
        let span = store_span!(self.store, "delete_sessions_for_user");
        in_span(span, self.store.delete_sessions_for_user(user_id), |_| {
            "deleted"
        })
        .await
    }

    pub(crate) async fn delete_all_expired_sessions(self, now: OffsetDateTime) -> Result<u64> {
        let span = store_span!(self.store, "delete_all_expired_sessions");
        in_span(span, self.store.delete_all_expired_sessions(now), |_| {
            "purged"
        })
        .await
    }

    pub(crate) async fn update_session_data(
        self,
        record: &SessionRecord,
        data: &SessionData,
        now: OffsetDateTime,
    ) -> Result<bool> {
        let span = store_span!(self.store, "update_session_data", &record.id);
        in_span(
            span,
            self.store.update_session_data(record, data, now),
            |replaced| if *replaced { "updated" } else { "unchanged" },
        )
        .await
    }
}

/// Runs `work` in `span` (a debug span with empty `outcome` and, for a store call, `error`
/// fields), then records its outcome, named by `outcome` on success and by the error's kind on
/// failure (with the error's message as `error`, where the span has that field), and logs
/// `message` in the span. The engine's own spans and the store calls' spans both go through
/// it.
pub(crate) async fn traced<T>(
    span: tracing::Span,
    work: impl Future<Output = Result<T>>,
    outcome: impl FnOnce(&T) -> &'static str,
    message: &'static str,
) -> Result<T> {
    // No subscriber wants the span (the usual case at the default level): the call runs bare,
    // without entering, recording or logging on every poll.
    if span.is_disabled() {
        return work.await;
    }
    let result = work.instrument(span.clone()).await;
    match &result {
        Ok(value) => {
            span.record("outcome", outcome(value));
        }
        Err(error) => {
            span.record("outcome", error_outcome(error));
            // A span without an `error` field ignores this.
            span.record("error", tracing::field::display(error));
        }
    }
    span.in_scope(|| tracing::debug!("{message}"));
    result
}

/// [`traced`] for a store call.
async fn in_span<T>(
    span: tracing::Span,
    call: impl Future<Output = Result<T>>,
    outcome: impl FnOnce(&T) -> &'static str,
) -> Result<T> {
    traced(span, call, outcome, "store call finished").await
}

/// The `outcome` a span records for a failed call: the error's kind, one word. The engine's
/// own spans use it too.
pub(crate) fn error_outcome(error: &Error) -> &'static str {
    match error {
        Error::Unavailable { .. } => "unavailable",
        Error::CorruptRecord { .. } => "corrupt",
        Error::Conflict { .. } => "conflict",
        Error::DuplicateId => "duplicate_id",
        Error::Unsupported { .. } => "unsupported",
        _ => "error",
    }
}
