//! The per-request session state the layer puts into the request's extensions, that the first
//! extractor validates and the handle changes.

use std::sync::{Arc, Mutex, MutexGuard};

use narvik_core::{Narvik, Session, SessionToken};
use tokio::sync::OnceCell;

use crate::csrf::CsrfKey;
use crate::AdditionalData;

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
    /// The well-formed token the request came with, until the first extractor validates it.
    pub(crate) unvalidated: Option<SessionToken>,
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

impl<D> State<D> {
    /// The state of a request whose `Cookie` header has been read, before any store call.
    pub(crate) fn unvalidated(token: Option<SessionToken>, cookie: CookieChange) -> Self {
        Self {
            had_token: token.is_some(),
            unvalidated: token,
            session: None,
            token: None,
            undecodable_session_id: None,
            cookie,
        }
    }
}

/// Why the request's session could not be read: the store failed (logged once, when it did).
pub(crate) type ValidationFailure = Arc<narvik_core::Error>;

/// Everything a request's extractors need, stored once in its extensions.
pub(crate) struct SessionContext<D> {
    pub(crate) narvik: Narvik<D>,
    pub(crate) csrf_key: Arc<CsrfKey>,
    state: Arc<Mutex<State<D>>>,
    /// Set by the first extractor that asks; every later one reads the same outcome, so a
    /// request costs at most one validation however many extractors it has.
    validated: Arc<OnceCell<Result<(), ValidationFailure>>>,
}

impl<D> Clone for SessionContext<D> {
    fn clone(&self) -> Self {
        Self {
            narvik: self.narvik.clone(),
            csrf_key: Arc::clone(&self.csrf_key),
            state: Arc::clone(&self.state),
            validated: Arc::clone(&self.validated),
        }
    }
}

impl<D: AdditionalData> SessionContext<D> {
    /// Validates the request's token (extending its session when due) on the first call, and
    /// returns that outcome on every call.
    pub(crate) async fn validate(&self) -> Result<(), ValidationFailure> {
        self.validated
            .get_or_init(|| self.validate_once())
            .await
            .clone()
    }

    /// The cookie to send once the handler is done, with the session a new cookie is for.
    pub(crate) fn cookie_change(&self) -> (CookieChange, Option<Session<D>>) {
        let state = self.lock();
        (state.cookie.clone(), state.session.clone())
    }

    async fn validate_once(&self) -> Result<(), ValidationFailure> {
        // Cloned, not taken: if this future is dropped half-way, the next extractor starts over.
        let Some(token) = self.lock().unvalidated.clone() else {
            return Ok(());
        };
        let validated = self.narvik.validate_token(&token).await;
        let mut state = self.lock();
        state.unvalidated = None;
        match validated {
            Ok(Some(session)) => {
                if session.extended {
                    state.cookie = CookieChange::Set(token.clone());
                }
                state.session = Some(session);
                state.token = Some(token);
            }
            Ok(None) => state.cookie = CookieChange::Clear,
            // The record exists but its data no longer fits `D` (typically a deploy that
            // changed the type, possibly with old instances still running). Fail closed for
            // this request only: no session, but the cookie and the record stay, so nothing is
            // lost and every other page still works; a 503 here would lock the user out of the
            // whole site.
            Err(error @ narvik_core::Error::CorruptRecord { .. }) => {
                tracing::error!(%error, "session record does not decode; treating the request as signed out");
                state.undecodable_session_id = Some(token.session_id());
            }
            Err(error) => {
                tracing::error!(%error, "session validation failed");
                return Err(Arc::new(error));
            }
        }
        Ok(())
    }
}

impl<D> SessionContext<D> {
    pub(crate) fn new(narvik: Narvik<D>, csrf_key: Arc<CsrfKey>, state: State<D>) -> Self {
        Self {
            narvik,
            csrf_key,
            state: Arc::new(Mutex::new(state)),
            validated: Arc::new(OnceCell::new()),
        }
    }

    /// The state; a panic elsewhere while it was held leaves plain data behind, so a poisoned
    /// lock is still usable.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State<D>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
