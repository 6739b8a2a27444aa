//! The demo's routes. Every state-changing form is a `POST` that carries the session's CSRF
//! token; the origin check in front of the router refuses cross-site ones before they get here.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use narvik_axum::{SessionError, SessionHandle};
use narvik_core::Session;
use serde::Deserialize;

use crate::pages::{self, DeviceRow, Viewer};
use crate::users::Users;
use crate::Device;

/// Longer inputs are refused before Argon2 sees them: hashing cost grows with the input.
const MAX_USERNAME: usize = 64;
const MAX_PASSWORD: usize = 256;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) users: Arc<Users>,
    pub(crate) credentials: Vec<(&'static str, &'static str)>,
}

type Handle = SessionHandle<Device>;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/sign-in", get(sign_in_page).post(sign_in))
        .route("/sign-out", post(sign_out))
        .route("/devices", get(devices))
        .route("/devices/sign-out", post(sign_out_device))
        .route("/devices/sign-out-others", post(sign_out_others))
        .fallback(not_found)
}

fn to_sign_in() -> Response {
    Redirect::to("/sign-in").into_response()
}

fn refused(status: StatusCode, title: &str, text: &str) -> Response {
    (status, Html(pages::message(title, text))).into_response()
}

fn forged_form() -> Response {
    refused(
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form was not issued to your current session. Reload the page and try again.",
    )
}

/// The signed-in user's name and form token, for the page header.
struct Signed {
    session: Session<Device>,
    display_name: String,
    csrf_token: String,
}

impl Signed {
    fn of(handle: &Handle, state: &AppState) -> Option<Self> {
        let session = handle.session()?;
        let display_name = state
            .users
            .display_name(&session.user_id)
            .unwrap_or(&session.user_id)
            .to_owned();
        Some(Self {
            session,
            display_name,
            csrf_token: handle.csrf_token()?,
        })
    }

    fn viewer(&self) -> Viewer<'_> {
        Viewer {
            display_name: &self.display_name,
            csrf_token: &self.csrf_token,
        }
    }
}

async fn home(handle: Handle, State(state): State<AppState>) -> Response {
    let Some(signed) = Signed::of(&handle, &state) else {
        return to_sign_in();
    };
    Html(pages::home(
        &signed.viewer(),
        signed.session.created_at,
        signed.session.expires_at,
    ))
    .into_response()
}

async fn sign_in_page(handle: Handle, State(state): State<AppState>) -> Response {
    if handle.session().is_some() {
        return Redirect::to("/").into_response();
    }
    Html(pages::sign_in(None, "", &state.credentials)).into_response()
}

#[derive(Deserialize)]
struct SignInForm {
    username: String,
    password: String,
}

async fn sign_in(
    handle: Handle,
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Result<Response, SessionError> {
    let username = form.username.trim().to_owned();
    let valid = if username.len() > MAX_USERNAME || form.password.len() > MAX_PASSWORD {
        false
    } else {
        let users = Arc::clone(&state.users);
        let name = username.clone();
        // Argon2 is deliberately slow: keep it off the async workers.
        tokio::task::spawn_blocking(move || users.verify(&name, &form.password))
            .await
            .unwrap_or(false)
    };
    if !valid {
        let page = pages::sign_in(
            Some("Wrong username or password."),
            &username,
            &state.credentials,
        );
        return Ok((StatusCode::UNAUTHORIZED, Html(page)).into_response());
    }
    // A new session and token; the session this browser came with (if any) ends here.
    handle
        .sign_in(&username, Device::from_headers(&headers))
        .await?;
    Ok(Redirect::to("/").into_response())
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn sign_out(handle: Handle, Form(form): Form<CsrfForm>) -> Result<Response, SessionError> {
    if handle.session().is_none() {
        return Ok(to_sign_in());
    }
    if !handle.verify_csrf_token(&form.csrf) {
        return Ok(forged_form());
    }
    handle.sign_out().await?;
    Ok(to_sign_in())
}

#[derive(Deserialize)]
struct DevicesQuery {
    done: Option<String>,
    n: Option<u64>,
}

async fn devices(
    handle: Handle,
    State(state): State<AppState>,
    Query(query): Query<DevicesQuery>,
) -> Result<Response, SessionError> {
    let Some(signed) = Signed::of(&handle, &state) else {
        return Ok(to_sign_in());
    };
    let mut sessions = handle.devices().await?;
    sessions.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
    let rows: Vec<DeviceRow<'_>> = sessions
        .iter()
        .map(|session| DeviceRow {
            session_id: &session.id,
            device: &session.data,
            created_at: session.created_at,
            expires_at: session.expires_at,
            current: session.id == signed.session.id,
        })
        .collect();
    // Fixed texts chosen by a code: the query string never puts words on the page.
    let notice = match (query.done.as_deref(), query.n) {
        (Some("others"), Some(1)) => Some("Signed out 1 other device.".to_owned()),
        (Some("others"), Some(n)) => Some(format!("Signed out {n} other devices.")),
        (Some("device"), _) => Some("Signed out that device.".to_owned()),
        _ => None,
    };
    Ok(Html(pages::devices(&signed.viewer(), &rows, notice.as_deref())).into_response())
}

#[derive(Deserialize)]
struct DeviceForm {
    csrf: String,
    session: String,
}

async fn sign_out_device(
    handle: Handle,
    Form(form): Form<DeviceForm>,
) -> Result<Response, SessionError> {
    let Some(current) = handle.session() else {
        return Ok(to_sign_in());
    };
    if !handle.verify_csrf_token(&form.csrf) {
        return Ok(forged_form());
    }
    let was_current = form.session == current.id;
    if !handle.sign_out_device(&form.session).await? {
        return Ok(refused(
            StatusCode::NOT_FOUND,
            "No such device",
            "That device is not signed in to your account (any more).",
        ));
    }
    Ok(if was_current {
        to_sign_in()
    } else {
        Redirect::to("/devices?done=device").into_response()
    })
}

async fn sign_out_others(
    handle: Handle,
    Form(form): Form<CsrfForm>,
) -> Result<Response, SessionError> {
    if handle.session().is_none() {
        return Ok(to_sign_in());
    }
    if !handle.verify_csrf_token(&form.csrf) {
        return Ok(forged_form());
    }
    let count = handle.sign_out_other_devices().await?;
    Ok(Redirect::to(&format!("/devices?done=others&n={count}")).into_response())
}

async fn not_found() -> Response {
    refused(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no page at this address.",
    )
}
