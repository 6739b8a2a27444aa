//! The per-request session state the layer puts into the request's extensions, and that the
//! extractors read and the handle changes.

use std::sync::{Arc, Mutex, MutexGuard};

use narvik_core::{Narvik, Session, SessionToken};

use crate::csrf::CsrfKey;

/// What the layer must do to the session cookie once the handler has answered.
#[derive(Clone, Default)]
pub(crate) enum CookieChange {
    /// Nothing changed: no `Set-Cookie`.
    #[default]
    Keep,
    /// A new, extended or rotated session: send its cookie.
    Set(SessionToken),
    /// The session ended (sign-out, dead or expired token): send the blank cookie.
    Clear,
}

/// The mutable part, shared between the layer and the handler's extractors.
pub(crate) struct State<D> {
    /// The session the request acts as, if any.
    pub(crate) session: Option<Session<D>>,
    /// The token of `session` (needed to rotate it and to re-send its cookie). Never exposed.
    pub(crate) token: Option<SessionToken>,
    /// Whether the request carried a well-formed session token at all.
    pub(crate) had_token: bool,
    /// The id behind a token whose record exists but no longer decodes as `D`: the request
    /// runs signed out, but sign-out and sign-in must still end that record.
    pub(crate) undecodable_session_id: Option<String>,
    pub(crate) cookie: CookieChange,
}

/// Everything a request's extractors need, stored once in its extensions.
pub(crate) struct SessionContext<D> {
    pub(crate) narvik: Narvik<D>,
    pub(crate) csrf_key: Arc<CsrfKey>,
    state: Arc<Mutex<State<D>>>,
}

impl<D> Clone for SessionContext<D> {
    fn clone(&self) -> Self {
        Self {
            narvik: self.narvik.clone(),
            csrf_key: Arc::clone(&self.csrf_key),
            state: Arc::clone(&self.state),
        }
    }
}

impl<D> SessionContext<D> {
    pub(crate) fn new(narvik: Narvik<D>, csrf_key: Arc<CsrfKey>, state: State<D>) -> Self {
        Self {
            narvik,
            csrf_key,
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// The state; a panic elsewhere while it was held leaves plain data behind, so a poisoned
    /// lock is still usable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State<D>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cookie to send once the handler is done.
    pub(crate) fn cookie_change(&self) -> CookieChange {
        self.lock().cookie.clone()
    }
}
