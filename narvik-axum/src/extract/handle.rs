//! [`SessionHandle`]: the extractor that signs in and out, lists and ends a user's sessions,
//! and issues CSRF tokens.

use axum::extract::FromRequestParts;
use http::request::Parts;
use narvik_core::{Narvik, Session};

use super::{context, SessionRejection};
use crate::context::{CookieChange, SessionContext};
use crate::error::SessionError;
use crate::AdditionalData;

/// Signs in and out, lists and ends a user's sessions, and issues CSRF tokens. Every change of
/// the session reaches the browser through the layer's `Set-Cookie` once the handler returns.
///
/// ```
/// use axum::response::Redirect;
/// use narvik_axum::{SessionError, SessionHandle};
///
/// async fn sign_in(handle: SessionHandle) -> Result<Redirect, SessionError> {
///     // ... after checking the password of "alice":
///     handle.sign_in("alice", ()).await?;
///     Ok(Redirect::to("/"))
/// }
/// ```
pub struct SessionHandle<D = ()> {
    context: SessionContext<D>,
}

impl<D> Clone for SessionHandle<D> {
    fn clone(&self) -> Self {
        Self {
            context: self.context.clone(),
        }
    }
}

impl<D> std::fmt::Debug for SessionHandle<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field(
                "session",
                &self
                    .session_id()
                    .map(|id| narvik_core::session::short_id(&id).to_owned()),
            )
            .finish_non_exhaustive()
    }
}

impl<S: Send + Sync, D: AdditionalData> FromRequestParts<S> for SessionHandle<D> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            context: context::<D>(parts).await?,
        })
    }
}

impl<D> SessionHandle<D> {
    /// The engine, for anything the handle does not cover.
    pub fn narvik(&self) -> &Narvik<D> {
        &self.context.narvik
    }

    /// The session a sign-out or sign-in must end: the current one, or the record behind the
    /// request's token that no longer decodes.
    fn session_id_to_end(&self) -> Option<String> {
        let state = self.context.lock();
        state
            .session
            .as_ref()
            .map(|session| session.id.clone())
            .or_else(|| state.undecodable_session_id.clone())
    }

    fn session_id(&self) -> Option<String> {
        self.context
            .lock()
            .session
            .as_ref()
            .map(|session| session.id.clone())
    }

    /// The form token for the current session, to put in a hidden field of every form that
    /// changes state; `None` when signed out.
    pub fn csrf_token(&self) -> Option<String> {
        self.session_id()
            .map(|id| self.context.csrf_key.token_for(&id))
    }

    /// Whether `candidate` is the current session's form token. Always false when signed out.
    pub fn verify_csrf_token(&self, candidate: &str) -> bool {
        self.session_id()
            .is_some_and(|id| self.context.csrf_key.verify(&id, candidate))
    }
}

impl<D: AdditionalData> SessionHandle<D> {
    /// The current session, as it is now (after any sign-in or sign-out by this handle).
    pub fn session(&self) -> Option<Session<D>> {
        self.context.lock().session.clone()
    }

    /// Signs `user_id` in: creates a session carrying `data`, ends the session the request
    /// came with (a new token on every sign-in, so a planted token is worthless), and sends the
    /// new cookie.
    pub async fn sign_in(&self, user_id: &str, data: D) -> Result<Session<D>, SessionError> {
        self.sign_in_for(user_id, data, None).await
    }

    /// [`sign_in`](Self::sign_in) with a sliding lifetime of the session's own ("remember me"):
    /// the session is extended by `lifetime` whenever it is used in the last half of it (the
    /// absolute cap still applies), and its cookie is persistent with `Max-Age` = `lifetime`
    /// even when the engine sends browser-session cookies. A lifetime outside one second to
    /// 100 years is an [`Error::InvalidConfiguration`](narvik_core::Error::InvalidConfiguration).
    ///
    /// ```
    /// use narvik_axum::{SessionError, SessionHandle};
    ///
    /// async fn sign_in(handle: SessionHandle, remember_me: bool) -> Result<(), SessionError> {
    ///     if remember_me {
    ///         handle.sign_in_with_lifetime("alice", (), time::Duration::days(90)).await?;
    ///     } else {
    ///         handle.sign_in("alice", ()).await?;
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub async fn sign_in_with_lifetime(
        &self,
        user_id: &str,
        data: D,
        lifetime: time::Duration,
    ) -> Result<Session<D>, SessionError> {
        self.sign_in_for(user_id, data, Some(lifetime)).await
    }

    async fn sign_in_for(
        &self,
        user_id: &str,
        data: D,
        lifetime: Option<time::Duration>,
    ) -> Result<Session<D>, SessionError> {
        let narvik = &self.context.narvik;
        // The previous session ends first, so that under a per-user cap the new one replaces
        // it instead of evicting another device.
        if let Some(previous) = self.session_id_to_end() {
            narvik.invalidate_session(&previous).await?;
            let mut state = self.context.lock();
            state.session = None;
            state.token = None;
            state.undecodable_session_id = None;
            state.cookie = CookieChange::Clear;
        }
        let created = match lifetime {
            Some(lifetime) => {
                narvik
                    .create_session_with_lifetime(user_id, data, lifetime)
                    .await?
            }
            None => narvik.create_session(user_id, data).await?,
        };
        let mut state = self.context.lock();
        state.session = Some(created.session.clone());
        state.token = Some(created.token.clone());
        state.cookie = CookieChange::Set(created.token);
        Ok(created.session)
    }

    /// Changes the current session's additional data with `change` and stores it, without
    /// losing a concurrent update: when another request changed the data since this one read
    /// it, `change` runs again on the data stored now (see
    /// [`Narvik::update_session_data`], which bounds the retries and then fails with
    /// [`Error::Conflict`](narvik_core::Error::Conflict)). The token, the cookie and the expiry
    /// stay as they are.
    ///
    /// Returns the updated session, or `None` when signed out or when the session ended
    /// meanwhile (the request then runs signed out and the cookie is cleared). Needs a store
    /// with `update_session_data`, else
    /// [`Error::Unsupported`](narvik_core::Error::Unsupported).
    ///
    /// ```
    /// use narvik_axum::{SessionError, SessionHandle};
    ///
    /// /// Additional data with a one-shot notice for the next page.
    /// #[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
    /// struct Data {
    ///     flash: Option<String>,
    /// }
    ///
    /// async fn save(handle: SessionHandle<Data>) -> Result<(), SessionError> {
    ///     handle
    ///         .update_data(|data| data.flash = Some("Saved.".to_owned()))
    ///         .await?;
    ///     Ok(())
    /// }
    /// ```
    pub async fn update_data<F>(&self, change: F) -> Result<Option<Session<D>>, SessionError>
    where
        F: FnMut(&mut D),
    {
        let Some(current) = self.session() else {
            return Ok(None);
        };
        let updated = self
            .context
            .narvik
            .update_session_data(&current, change)
            .await?;
        let mut state = self.context.lock();
        // Only if this handle's session is still the request's (no sign-in or out meanwhile).
        if state.session.as_ref().map(|session| &session.id) == Some(&current.id) {
            match &updated {
                Some(session) => state.session = Some(session.clone()),
                None => {
                    state.session = None;
                    state.token = None;
                    state.cookie = CookieChange::Clear;
                }
            }
        }
        Ok(updated)
    }

    /// Signs out: ends the current session and sends the blank cookie. Signing out without a
    /// session succeeds.
    pub async fn sign_out(&self) -> Result<(), SessionError> {
        if let Some(id) = self.session_id_to_end() {
            self.context.narvik.invalidate_session(&id).await?;
        }
        let mut state = self.context.lock();
        state.undecodable_session_id = None;
        let had_cookie = state.had_token || state.session.is_some();
        state.session = None;
        state.token = None;
        if had_cookie {
            state.cookie = CookieChange::Clear;
        }
        Ok(())
    }

    /// Replaces the current session with a new one (new token, same user and data) and sends
    /// the new cookie: call it when the user's privileges change. `None` when signed out.
    pub async fn rotate(&self) -> Result<Option<Session<D>>, SessionError> {
        let token = self.context.lock().token.clone();
        let Some(token) = token else {
            return Ok(None);
        };
        let Some(created) = self.context.narvik.rotate_session(token.as_str()).await? else {
            return Ok(None);
        };
        let mut state = self.context.lock();
        state.session = Some(created.session.clone());
        state.token = Some(created.token.clone());
        state.cookie = CookieChange::Set(created.token);
        Ok(Some(created.session))
    }

    /// Every live session of the signed-in user ("your devices"); empty when signed out.
    pub async fn devices(&self) -> Result<Vec<Session<D>>, SessionError> {
        let user_id = self
            .context
            .lock()
            .session
            .as_ref()
            .map(|s| s.user_id.clone());
        match user_id {
            Some(user_id) => Ok(self
                .context
                .narvik
                .fetch_sessions_for_user(&user_id)
                .await?),
            None => Ok(Vec::new()),
        }
    }

    /// Ends one of the signed-in user's sessions by id (the current one signs out). Returns
    /// false, changing nothing, when the id is not a session of this user.
    pub async fn sign_out_device(&self, session_id: &str) -> Result<bool, SessionError> {
        if self.session_id().as_deref() == Some(session_id) {
            self.sign_out().await?;
            return Ok(true);
        }
        let owned = self
            .devices()
            .await?
            .iter()
            .any(|session| session.id == session_id);
        if owned {
            self.context.narvik.invalidate_session(session_id).await?;
        }
        Ok(owned)
    }

    /// Ends every session of the signed-in user except the current one, and returns how many.
    pub async fn sign_out_other_devices(&self) -> Result<u64, SessionError> {
        let current = self
            .context
            .lock()
            .session
            .as_ref()
            .map(|s| (s.user_id.clone(), s.id.clone()));
        match current {
            Some((user_id, id)) => Ok(self
                .context
                .narvik
                .invalidate_other_sessions(&user_id, &id)
                .await?),
            None => Ok(0),
        }
    }
}
