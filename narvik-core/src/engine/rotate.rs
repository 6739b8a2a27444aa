//! Rotating a session: a new token for the same user and data, the old one ended.

use serde::{de::DeserializeOwned, Serialize};

use crate::error::Result;
use crate::session::{short_id, Session};
use crate::store_calls::traced;
use crate::token::SessionToken;

use super::{CreatedSession, Narvik};

impl<D: Serialize + DeserializeOwned> Narvik<D> {
    /// Replaces the session behind `token` with a new one (new token, same user, data and
    /// `created_at`, so the absolute cap still counts from sign-in); the old token is dead
    /// afterwards. `None` when the token does not open a live session.
    ///
    /// Use it on privilege changes. The new session is saved before the old one is deleted, so
    /// a failure never leaves the user with neither.
    pub async fn rotate_session(&self, token: &str) -> Result<Option<CreatedSession<D>>> {
        let Some(token) = SessionToken::parse(token) else {
            return Ok(None);
        };
        let span = tracing::debug_span!(
            "rotate_session",
            session = short_id(&token.session_id()).to_owned(),
            outcome = tracing::field::Empty
        );
        traced(
            span,
            self.rotate_token(&token),
            |rotated| if rotated.is_some() { "rotated" } else { "none" },
            "session rotated",
        )
        .await
    }

    pub(super) async fn rotate_token(
        &self,
        token: &SessionToken,
    ) -> Result<Option<CreatedSession<D>>> {
        let now = self.now();
        // No extension: the old session is about to die, so writing its expiry would be waste.
        let Some(old) = self.fetch_live_record(&token.session_id(), now).await? else {
            return Ok(None);
        };
        let old = Session::<D>::from_record(old)?;
        let created = self
            .create_session_record(
                &old.user_id,
                old.data,
                old.created_at,
                now,
                Some(&old.id),
                old.lifetime,
            )
            .await?;
        if let Err(error) = self.delete_stored(&old.id).await {
            // Best effort: do not leave two live sessions when the caller sees a failure.
            let _ = self.delete_stored(&created.session.id).await;
            return Err(error);
        }
        Ok(Some(created))
    }
}
