//! Changing a session's data: read, change, compare-and-set on the record's version, retried
//! on a lost race.

use serde::{de::DeserializeOwned, Serialize};

use crate::data::SessionData;
use crate::error::OptionalOperation;
use crate::error::{Error, Result};
use crate::session::{short_id, Session};
use crate::store_calls::traced;

use super::Narvik;

impl<D: Serialize + DeserializeOwned> Narvik<D> {
    /// Changes the additional data of `session` with `change`, without losing a concurrent
    /// update: the store replaces the data only if nobody else has since the version read
    /// ([`SessionStore::update_session_data`](crate::SessionStore::update_session_data)). When another update won, the engine re-reads
    /// the session and applies `change` again to the data it finds, up to
    /// `data_update_attempts` times (so `change` may run more than once and should only
    /// compute from the data it is given), then fails with [`Error::Conflict`].
    ///
    /// Returns the session as updated (`data_version` one higher), or `None` when the session
    /// has ended or expired meanwhile; an update never brings a session back. The expiry is
    /// left alone. Needs a store that declares `update_session_data`, else
    /// [`Error::Unsupported`] without a round trip.
    ///
    /// ```
    /// # async fn demo(narvik: narvik_core::Narvik<Vec<String>>, session: narvik_core::Session<Vec<String>>) -> narvik_core::Result<()> {
    /// let updated = narvik
    ///     .update_session_data(&session, |flashes| flashes.push("Saved.".to_owned()))
    ///     .await?;
    /// # let _ = updated; Ok(()) }
    /// ```
    pub async fn update_session_data<F>(
        &self,
        session: &Session<D>,
        change: F,
    ) -> Result<Option<Session<D>>>
    where
        D: Clone,
        F: FnMut(&mut D),
    {
        let span = tracing::debug_span!(
            "update_session_data",
            session = short_id(&session.id),
            outcome = tracing::field::Empty
        );
        traced(
            span,
            self.update_data(session, change),
            |updated| if updated.is_some() { "updated" } else { "none" },
            "session data updated",
        )
        .await
    }

    pub(super) async fn update_data<F>(
        &self,
        session: &Session<D>,
        mut change: F,
    ) -> Result<Option<Session<D>>>
    where
        D: Clone,
        F: FnMut(&mut D),
    {
        self.require(OptionalOperation::UpdateSessionData)?;
        let attempts = self.inner.config.data_update_attempts;
        let mut current = session.clone();
        for attempt in 1..=attempts {
            let mut data = current.data.clone();
            change(&mut data);
            let read = current.to_record()?;
            let replacement: SessionData = serde_json::to_value(&data)
                .map_err(|error| Error::InvalidData(error.to_string()))?
                .into();
            let replaced = self
                .backend()
                .update_session_data(&read, &replacement, self.now())
                .await;
            // Forgotten whatever the answer: a failed call may have landed, and a lost race
            // means the cached copy is out of date.
            if let Some(cache) = &self.near_cache {
                cache.forget(&session.id);
            }
            if replaced? {
                current.data = data;
                current.data_version += 1;
                current.new = false;
                current.extended = false;
                return Ok(Some(current));
            }
            tracing::debug!(attempt, "data changed concurrently; reading it again");
            let Some(fresh) = self.fetch_live_record(&session.id, self.now()).await? else {
                return Ok(None);
            };
            current = Session::from_record(fresh)?;
        }
        Err(Error::Conflict { attempts })
    }
}
