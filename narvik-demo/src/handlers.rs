// Over 400 lines in one file: the demo's routes and the password-check, refusal and flash
// helpers every one of them goes through, read together as one small application.
//! The demo's routes. Every state-changing form is a `POST` that carries the session's CSRF
//! token; the origin check in front of the router refuses cross-site ones before they get here.
//! Every password check (sign-in, and the confirmation before "sign out all other devices")
//! goes through the throttle first and then the sign-in bound.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use narvik_axum::{SessionError, SessionHandle};
use narvik_core::Session;
use serde::Deserialize;

use crate::bound::{Busy, PasswordChecks};
use crate::client_address::ClientAddress;
use crate::pages::{self, DeviceRow, Viewer};
use crate::throttle::{SignInThrottle, Throttled};
use crate::{Device, REMEMBER_ME_LIFETIME};

/// Longer inputs are refused before Argon2 sees them: hashing cost grows with the input.
const MAX_USERNAME: usize = 64;
const MAX_PASSWORD: usize = 256;

/// `Retry-After` of a `503` when every permit of the sign-in bound stayed taken: a check takes
/// well under a second, so a second later one is likely free.
const BUSY_RETRY_AFTER_SECONDS: u64 = 1;

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) checks: Arc<PasswordChecks>,
    pub(crate) throttle: Arc<SignInThrottle>,
    pub(crate) credentials: Vec<(&'static str, &'static str)>,
    pub(crate) trust_x_forwarded_for: bool,
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
            .checks
            .users()
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

/// How a password check ended.
enum Verdict {
    Valid,
    Wrong,
    /// Refused by the throttle before any Argon2 work.
    Throttled(Throttled),
    /// The sign-in bound stayed saturated for the whole wait; nothing was checked.
    Busy,
}

/// Throttle, then the bound, then Argon2 on a blocking thread. Over-long input is wrong
/// without any of them: hashing cost grows with the input, and it cannot be anyone's password.
async fn check_password(
    state: &AppState,
    account: &str,
    password: String,
    client: IpAddr,
) -> Verdict {
    if account.len() > MAX_USERNAME || password.len() > MAX_PASSWORD {
        return Verdict::Wrong;
    }
    let attempt = match state.throttle.admit(account, client) {
        Ok(attempt) => attempt,
        Err(throttled) => return Verdict::Throttled(throttled),
    };
    match state.checks.check(account.to_owned(), password).await {
        Ok(true) => {
            state.throttle.succeeded(attempt);
            Verdict::Valid
        }
        Ok(false) => {
            state.throttle.failed(attempt);
            Verdict::Wrong
        }
        Err(Busy) => {
            state.throttle.not_checked(attempt);
            Verdict::Busy
        }
    }
}

/// A check that did not say "valid", as the page shows it.
struct Refusal {
    status: StatusCode,
    retry_after: Option<u64>,
    message: String,
}

/// `None` for a valid password; else the status, `Retry-After` and message, `wrong` being the
/// message for a wrong password.
fn refusal(verdict: &Verdict, wrong: &'static str) -> Option<Refusal> {
    let (status, retry_after, message) = match verdict {
        Verdict::Valid => return None,
        Verdict::Wrong => (StatusCode::UNAUTHORIZED, None, wrong.to_owned()),
        Verdict::Throttled(throttled) => {
            let seconds = throttled.retry_after_seconds();
            (
                StatusCode::TOO_MANY_REQUESTS,
                Some(seconds),
                format!(
                    "Too many wrong passwords. Try again in {}.",
                    pages::wait_text(seconds)
                ),
            )
        }
        Verdict::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            Some(BUSY_RETRY_AFTER_SECONDS),
            "The server is checking too many passwords at once. Try again in a moment.".to_owned(),
        ),
    };
    Some(Refusal {
        status,
        retry_after,
        message,
    })
}

impl Refusal {
    fn respond(&self, page: String) -> Response {
        let mut response = (self.status, Html(page)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Spaces and tabs around the name are dropped (a pasted name); nothing else, so that names
/// that differ to the byte are different accounts to the throttle as to the directory.
fn form_username(raw: &str) -> &str {
    raw.trim_matches([' ', '\t'])
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
    /// The "Remember me" checkbox: present (`on`) only when ticked.
    remember: Option<String>,
}

async fn sign_in(
    handle: Handle,
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Result<Response, SessionError> {
    let username = form_username(&form.username).to_owned();
    let verdict = check_password(&state, &username, form.password, client).await;
    if let Some(refused) = refusal(&verdict, "Wrong username or password.") {
        let page = pages::sign_in(Some(&refused.message), &username, &state.credentials);
        return Ok(refused.respond(page));
    }
    // A new session and token; the session this browser came with (if any) ends here.
    let device = Device::from_headers(&headers);
    if form.remember.is_some() {
        handle
            .sign_in_with_lifetime(&username, device, REMEMBER_ME_LIFETIME)
            .await?;
    } else {
        handle.sign_in(&username, device).await?;
    }
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

async fn devices(handle: Handle, State(state): State<AppState>) -> Result<Response, SessionError> {
    let Some(signed) = Signed::of(&handle, &state) else {
        return Ok(to_sign_in());
    };
    let notice = take_flash(&handle, &signed.session).await?;
    let page = devices_page(&handle, &signed, Message::notice(notice.as_deref())).await?;
    Ok(Html(page).into_response())
}

/// Leaves `notice` in the session for the page the redirect leads to (on a store that can
/// update session data; elsewhere the page shows no notice).
async fn set_flash(handle: &Handle, notice: String) -> Result<(), SessionError> {
    if !handle.narvik().capabilities().update_session_data {
        return Ok(());
    }
    handle
        .update_data(|device| device.flash = Some(notice.clone()))
        .await?;
    Ok(())
}

/// The session's notice, removed from it so that it shows exactly once. A page without a
/// notice writes nothing.
async fn take_flash(
    handle: &Handle,
    session: &Session<Device>,
) -> Result<Option<String>, SessionError> {
    if session.data.flash.is_none() {
        return Ok(None);
    }
    let mut taken = None;
    // The closure runs again if another request changed the data meanwhile: the notice is
    // the one the successful run took.
    handle
        .update_data(|device| taken = device.flash.take())
        .await?;
    Ok(taken)
}

/// A notice or an error above the device list.
struct Message<'a> {
    notice: Option<&'a str>,
    error: Option<&'a str>,
}

impl<'a> Message<'a> {
    fn notice(notice: Option<&'a str>) -> Self {
        Self {
            notice,
            error: None,
        }
    }

    fn error(error: &'a str) -> Self {
        Self {
            notice: None,
            error: Some(error),
        }
    }
}

async fn devices_page(
    handle: &Handle,
    signed: &Signed,
    message: Message<'_>,
) -> Result<String, SessionError> {
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
    Ok(pages::devices(
        &signed.viewer(),
        &rows,
        message.notice,
        message.error,
    ))
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
        set_flash(&handle, "Signed out that device.".to_owned()).await?;
        Redirect::to("/devices").into_response()
    })
}

#[derive(Deserialize)]
struct ConfirmForm {
    csrf: String,
    #[serde(default)]
    password: String,
}

/// Ending every other session is what an attacker with a stolen session would do first to keep
/// the account to themselves, so it asks for the password again (under the same throttle and
/// bound as sign-in: it must not become a password oracle).
async fn sign_out_others(
    handle: Handle,
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    Form(form): Form<ConfirmForm>,
) -> Result<Response, SessionError> {
    let Some(signed) = Signed::of(&handle, &state) else {
        return Ok(to_sign_in());
    };
    if !handle.verify_csrf_token(&form.csrf) {
        return Ok(forged_form());
    }
    let account = signed.session.user_id.clone();
    let verdict = check_password(&state, &account, form.password, client).await;
    if let Some(refused) = refusal(&verdict, "Wrong password: no device was signed out.") {
        let page = devices_page(&handle, &signed, Message::error(&refused.message)).await?;
        return Ok(refused.respond(page));
    }
    let count = handle.sign_out_other_devices().await?;
    let notice = if count == 1 {
        "Signed out 1 other device.".to_owned()
    } else {
        format!("Signed out {count} other devices.")
    };
    set_flash(&handle, notice).await?;
    Ok(Redirect::to("/devices").into_response())
}

async fn not_found() -> Response {
    refused(
        StatusCode::NOT_FOUND,
        "Not found",
        "There is no page at this address.",
    )
}
