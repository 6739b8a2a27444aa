//! Validating a token: the near cache or the store, expiry judged on the engine's clock, and
//! the sliding extension in the last half of a session's lifetime.

use serde::{de::DeserializeOwned, Serialize};
use time::OffsetDateTime;

use crate::error::Result;
use crate::session::{decode_data, short_id, Session, SessionRecord};
use crate::store_calls::traced;
use crate::token::{self, SessionToken};

use super::Narvik;

impl<D: Serialize + DeserializeOwned> Narvik<D> {
    /// Checks a token from a client and returns its session, or `None`.
    ///
    /// - A malformed token is `None` without a store round trip.
    /// - An expired session is `None`. On a store that returns expired records
    ///   ([`ExpiredFetch::Returned`](crate::ExpiredFetch::Returned): the SQL stores) the engine
    ///   deletes the record then; a store that hides them
    ///   ([`ExpiredFetch::Hidden`](crate::ExpiredFetch::Hidden): memory, Redis, MongoDB) answers
    ///   as if it were missing, so nothing is deleted here and the record stays until the purge
    ///   ([`delete_all_expired_sessions`](Self::delete_all_expired_sessions), the purge task) or
    ///   the server's own TTL removes it. A session past the absolute cap is deleted and `None`
    ///   on every store.
    /// - A session in the last half of its lifetime is extended to `now + lifetime` (never past
    ///   the absolute cap) and returned with `extended == true`: set the cookie again.
    /// - A record whose data does not decode as `D` is [`Error::CorruptRecord`](crate::Error::CorruptRecord).
    ///
    /// A validation racing a logout is ordered before it: the store's expiry update never
    /// brings a deleted record back, though this call may still return the session it read
    /// (with `extended == true`) just before the delete landed.
    pub async fn validate_session(&self, token: &str) -> Result<Option<Session<D>>> {
        if !token::is_well_formed(token) {
            tracing::debug!(outcome = "malformed", "validate_session");
            return Ok(None);
        }
        self.validate_session_id(&token::session_id_from_token(token))
            .await
    }

    /// [`Narvik::validate_session`] for an already parsed token.
    pub async fn validate_token(&self, token: &SessionToken) -> Result<Option<Session<D>>> {
        self.validate_session_id(&token.session_id()).await
    }

    /// A near cache hit, or the store. With a cache the store path is boxed: it is large, and
    /// a hit (the common case then) would otherwise carry it, moved on every poll and spawn.
    /// Without one it is not, so that an uncached validation pays no allocation for it.
    pub(super) async fn validate_session_id(&self, session_id: &str) -> Result<Option<Session<D>>> {
        let Some(cache) = &self.near_cache else {
            return self.validate_from_store(session_id).await;
        };
        if let Some(session) = cache.get(session_id, self.now()) {
            tracing::debug!(
                session = short_id(session_id),
                outcome = "cached",
                "validate_session"
            );
            return Ok(Some(session));
        }
        Box::pin(self.validate_from_store(session_id)).await
    }

    pub(super) async fn validate_from_store(&self, session_id: &str) -> Result<Option<Session<D>>> {
        let span = tracing::debug_span!(
            "validate_session",
            session = short_id(session_id),
            outcome = tracing::field::Empty
        );
        traced(
            span,
            self.validate_live(session_id),
            |validated| match validated {
                Some(session) if session.extended => "extended",
                Some(_) => "valid",
                None => "none",
            },
            "session validated",
        )
        .await
    }

    pub(super) async fn validate_live(&self, session_id: &str) -> Result<Option<Session<D>>> {
        let now = self.now();
        // Taken before the read: an invalidation that lands while it is in flight undoes the
        // insert below.
        let ticket = self
            .near_cache
            .as_ref()
            .and_then(|cache| cache.ticket(session_id));
        let Some(record) = self.fetch_live_record(session_id, now).await? else {
            return Ok(None);
        };
        let data = decode_data(&record)?;
        let lifetime = self.lifetime_of(record.lifetime);
        let half_life = lifetime / 2;
        let mut extended = false;
        let mut expires_at = record.expires_at;
        if now >= record.expires_at - half_life {
            let extended_to = self.expiry_from(now, record.created_at, lifetime);
            if extended_to > record.expires_at {
                // The store gets the whole record: the engine holds it already, so a store that
                // needs more than the id never pays a round trip to learn it.
                self.backend()
                    .update_record_expiry(&record, extended_to)
                    .await?;
                expires_at = extended_to;
                extended = true;
            }
        }
        let mut session = Session::with_data(record, data);
        session.expires_at = expires_at;
        session.extended = extended;
        if let (Some(cache), Some(ticket)) = (&self.near_cache, ticket) {
            // Served until the next extension is due, never past the absolute cap: the store
            // still sees one write per half-life, and no entry outlives its session.
            let mut serve_until: OffsetDateTime = expires_at - half_life;
            if let Some(cap) = self.inner.config.absolute_lifetime {
                serve_until = serve_until.min(session.created_at + cap);
            }
            if now < serve_until {
                cache.insert(ticket, &session, serve_until);
            }
        }
        Ok(Some(session))
    }

    /// The live record behind `session_id`. An expired record the store returns (or one past
    /// the absolute cap) is deleted and `None`; one the store hides is `None` alone.
    pub(super) async fn fetch_live_record(
        &self,
        session_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<SessionRecord>> {
        let Some(record) = self.backend().fetch_session(session_id).await? else {
            return Ok(None);
        };
        // The absolute cap is checked here too, so a cap added to a running deployment also
        // ends sessions created before it.
        let past_cap = self
            .inner
            .config
            .absolute_lifetime
            .is_some_and(|cap| now >= record.created_at + cap);
        if record.is_expired(now) || past_cap {
            self.delete_stored(session_id).await?;
            return Ok(None);
        }
        Ok(Some(record))
    }
}
