//! What a request sees when the session machinery fails: a status and a generic body, never a
//! store's message.

use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};

/// A failure of the session engine or its store, as a handler sees it.
///
/// It turns into a response with a generic body: `503 Service Unavailable` for store failures
/// (the store is down or past its deadline) and for a record that no longer decodes as `D`
/// when a handler's call reads one (a device in [`devices`](crate::SessionHandle::devices),
/// the re-read of a data update), `500` for programming errors (additional data that does not
/// serialise). The cause is logged with `tracing` at error level and never sent to the client.
///
/// The request's own session record never gets here when it does not decode: the layer logs
/// it and runs the request signed out, leaving the cookie and the record alone (see
/// [`NarvikLayer`](crate::NarvikLayer)).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SessionError(#[from] pub narvik_core::Error);

impl SessionError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        status_for(&self.0)
    }
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        error_response(&self.0)
    }
}

pub(crate) fn status_for(error: &narvik_core::Error) -> StatusCode {
    match error {
        narvik_core::Error::InvalidData(_) | narvik_core::Error::InvalidConfiguration(_) => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// Logs `error` (whose messages never hold a token) and answers with a body that says nothing
/// about the store.
pub(crate) fn error_response(error: &narvik_core::Error) -> Response {
    let status = status_for(error);
    tracing::error!(error = %error, status = status.as_u16(), "session engine failed");
    let body = if status == StatusCode::SERVICE_UNAVAILABLE {
        "Sessions are unavailable right now. Please try again shortly.\n"
    } else {
        "Internal server error.\n"
    };
    plain_response(status, body)
}

/// A plain-text response that no cache keeps.
pub(crate) fn plain_response(status: StatusCode, body: &'static str) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
