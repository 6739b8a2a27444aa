//! The extractors: the current session (required or optional) here, and the handle that signs
//! in and out in `handle`.

mod handle;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::StatusCode;
use narvik_core::Session;

use crate::context::SessionContext;
use crate::error::plain_response;
use crate::AdditionalData;

pub use handle::SessionHandle;

/// Why a session extractor rejected a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionRejection {
    /// No live session: `401 Unauthorized`. A dead cookie is cleared by the layer on the way out.
    Unauthenticated,
    /// The route is not wrapped in a [`NarvikLayer`](crate::NarvikLayer) of the same data
    /// type: `500`, and an error in the log naming the fix.
    MissingLayer,
    /// The store failed while validating the request's session: `503` with a generic body
    /// (the cause is logged at error level, never sent).
    Unavailable,
}

impl IntoResponse for SessionRejection {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthenticated => {
                plain_response(StatusCode::UNAUTHORIZED, "Please sign in first.\n")
            }
            Self::MissingLayer => {
                tracing::error!(
                    "a narvik extractor ran without NarvikLayer: add `.layer(NarvikLayer::new(narvik))` \
                     with the same session data type to the router"
                );
                plain_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal server error.\n",
                )
            }
            Self::Unavailable => plain_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "Sessions are unavailable right now. Please try again shortly.\n",
            ),
        }
    }
}

/// The request's session context, validated: the first extractor of a request makes the one
/// store call, every later one reads its outcome.
async fn context<D: AdditionalData>(parts: &Parts) -> Result<SessionContext<D>, SessionRejection> {
    let context = parts
        .extensions
        .get::<SessionContext<D>>()
        .cloned()
        .ok_or(SessionRejection::MissingLayer)?;
    context
        .validate()
        .await
        .map_err(|_| SessionRejection::Unavailable)?;
    Ok(context)
}

/// The signed-in session; rejects with `401` when there is none.
///
/// `Option<CurrentSession<D>>` is the optional form (as is [`MaybeSession`]).
///
/// ```
/// use narvik_axum::CurrentSession;
/// async fn home(CurrentSession(session): CurrentSession) -> String {
///     format!("hello, {}", session.user_id)
/// }
/// ```
#[derive(Debug, Clone)]
pub struct CurrentSession<D = ()>(pub Session<D>);

impl<D> std::ops::Deref for CurrentSession<D> {
    type Target = Session<D>;
    fn deref(&self) -> &Session<D> {
        &self.0
    }
}

impl<S: Send + Sync, D: AdditionalData> FromRequestParts<S> for CurrentSession<D> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let session = context::<D>(parts).await?.lock().session.clone();
        session.map(Self).ok_or(SessionRejection::Unauthenticated)
    }
}

impl<S: Send + Sync, D: AdditionalData> OptionalFromRequestParts<S> for CurrentSession<D> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Option<Self>, Self::Rejection> {
        let session = context::<D>(parts).await?.lock().session.clone();
        Ok(session.map(Self))
    }
}

/// The session if there is one; never rejects (except without the layer).
#[derive(Debug, Clone)]
pub struct MaybeSession<D = ()>(pub Option<Session<D>>);

impl<S: Send + Sync, D: AdditionalData> FromRequestParts<S> for MaybeSession<D> {
    type Rejection = SessionRejection;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(context::<D>(parts).await?.lock().session.clone()))
    }
}
