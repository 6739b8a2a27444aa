//! Creating a session: a fresh token, its record saved insert-only (a duplicate id retries
//! with a new token), then the user's cap.

use serde::{de::DeserializeOwned, Serialize};
use time::{Duration, OffsetDateTime};
use tracing::Instrument;

use crate::config::valid_lifetime;
use crate::error::{Error, Result};
use crate::session::{short_id, Session, SessionRecord};
use crate::store_calls::error_outcome;
use crate::token::SessionToken;

use super::{CreatedSession, Narvik};

impl<D> Narvik<D> {
    /// The expiry a session created (or last extended) at `now` gets: `now + lifetime`, never
    /// past the absolute cap.
    pub(super) fn expiry_from(
        &self,
        now: OffsetDateTime,
        created_at: OffsetDateTime,
        lifetime: Duration,
    ) -> OffsetDateTime {
        let sliding = now + lifetime;
        match self.inner.config.absolute_lifetime {
            Some(cap) => sliding.min(created_at + cap),
            None => sliding,
        }
    }

    /// Saves `record` under a fresh token, retrying with new tokens on a duplicate id.
    pub(super) async fn save_with_fresh_token(
        &self,
        record: &mut SessionRecord,
    ) -> Result<SessionToken> {
        let attempts = self.inner.config.create_attempts;
        for attempt in 1..=attempts {
            let token = SessionToken::generate()?;
            record.id = token.session_id();
            match self.backend().save_session(record).await {
                Ok(()) => return Ok(token),
                Err(Error::DuplicateId) => {
                    tracing::warn!(
                        session = short_id(&record.id),
                        attempt,
                        "session id collision; retrying with a fresh token"
                    );
                }
                Err(error) => return Err(error),
            }
        }
        Err(Error::DuplicateId)
    }

    /// Brings the user back under the per-user cap by deleting their oldest live sessions,
    /// never `keep` (the session just saved) and not counting `leaving` (a session about to be
    /// deleted by the caller, as in rotation).
    pub(super) async fn enforce_user_cap(
        &self,
        user_id: &str,
        now: OffsetDateTime,
        keep: &str,
        leaving: Option<&str>,
    ) -> Result<()> {
        let Some(cap) = self.inner.config.max_sessions_per_user else {
            return Ok(());
        };
        let mut live: Vec<SessionRecord> = self
            .backend()
            .fetch_sessions_for_user(user_id, now)
            .await?
            .into_iter()
            .filter(|record| !record.is_expired(now) && Some(record.id.as_str()) != leaving)
            .collect();
        if live.len() <= cap.get() {
            return Ok(());
        }
        let excess = live.len() - cap.get();
        live.retain(|record| record.id != keep);
        live.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.id.cmp(&b.id))
        });
        for record in live.iter().take(excess) {
            tracing::debug!(
                session = short_id(&record.id),
                "evicting oldest session of user"
            );
            self.delete_stored(&record.id).await?;
        }
        Ok(())
    }
}

impl<D: Serialize + DeserializeOwned> Narvik<D> {
    /// Creates a session for `user_id` carrying `data`, and its token.
    ///
    /// On a duplicate id from the store it retries with a fresh token (up to
    /// `create_attempts`), so an existing session is never overwritten. With a per-user cap,
    /// the user's oldest other sessions are evicted once the new one is saved (so a failed
    /// save costs no device its session).
    pub async fn create_session(&self, user_id: &str, data: D) -> Result<CreatedSession<D>> {
        let now = self.now();
        self.create_session_at(user_id, data, now, now, None, None)
            .instrument(tracing::debug_span!(
                "create_session",
                session = tracing::field::Empty,
                outcome = tracing::field::Empty
            ))
            .await
    }

    /// [`create_session`](Self::create_session) for a session with a sliding lifetime of its
    /// own ("remember me"), kept with the session: validation extends it by this lifetime, the
    /// absolute cap still applies, and [`create_session_cookie`](Self::create_session_cookie)
    /// gives it a persistent cookie. The lifetime is between one second and 100 years, in
    /// whole milliseconds, or [`Error::InvalidConfiguration`].
    pub async fn create_session_with_lifetime(
        &self,
        user_id: &str,
        data: D,
        lifetime: Duration,
    ) -> Result<CreatedSession<D>> {
        if !valid_lifetime(lifetime) {
            return Err(Error::InvalidConfiguration(
                "a session lifetime must be between one second and 100 years, in whole milliseconds"
                    .to_owned(),
            ));
        }
        let now = self.now();
        self.create_session_at(user_id, data, now, now, None, Some(lifetime))
            .instrument(tracing::debug_span!(
                "create_session",
                session = tracing::field::Empty,
                outcome = tracing::field::Empty
            ))
            .await
    }

    pub(super) async fn create_session_at(
        &self,
        user_id: &str,
        data: D,
        created_at: OffsetDateTime,
        now: OffsetDateTime,
        replacing: Option<&str>,
        lifetime: Option<Duration>,
    ) -> Result<CreatedSession<D>> {
        let created = self
            .create_session_record(user_id, data, created_at, now, replacing, lifetime)
            .await;
        let span = tracing::Span::current();
        match &created {
            Ok(created) => {
                span.record("session", short_id(&created.session.id));
                span.record("outcome", "created");
            }
            Err(error) => {
                span.record("outcome", error_outcome(error));
            }
        }
        tracing::debug!("session created");
        created
    }

    pub(super) async fn create_session_record(
        &self,
        user_id: &str,
        data: D,
        created_at: OffsetDateTime,
        now: OffsetDateTime,
        replacing: Option<&str>,
        lifetime: Option<Duration>,
    ) -> Result<CreatedSession<D>> {
        let json =
            serde_json::to_value(&data).map_err(|error| Error::InvalidData(error.to_string()))?;
        let mut record = SessionRecord {
            id: String::new(),
            user_id: user_id.to_owned(),
            expires_at: self.expiry_from(now, created_at, self.lifetime_of(lifetime)),
            created_at,
            data: json.into(),
            lifetime,
            data_version: 0,
        };
        let token = self.save_with_fresh_token(&mut record).await?;
        if let Err(error) = self
            .enforce_user_cap(user_id, now, &record.id, replacing)
            .await
        {
            // Best effort: a create that reports failure leaves no session behind.
            let _ = self.delete_stored(&record.id).await;
            return Err(error);
        }
        let mut session = Session::with_data(record, data);
        session.new = true;
        Ok(CreatedSession { token, session })
    }
}
