//! The cookie strings of the original Narvik, byte for byte.

use std::sync::Arc;

use async_trait::async_trait;
use narvik_core::{Narvik, Result, SameSite, SessionRecord, SessionStore, SessionToken};
use time::{Duration, OffsetDateTime};

/// Cookies never touch the store; this one proves it by failing every call.
struct UnreachableStore;

#[async_trait]
impl SessionStore for UnreachableStore {
    async fn save_session(&self, _: &SessionRecord) -> Result<()> {
        panic!("cookie code must not touch the store")
    }
    async fn fetch_session(&self, _: &str) -> Result<Option<SessionRecord>> {
        panic!("cookie code must not touch the store")
    }
    async fn update_session_expiry(&self, _: &str, _: OffsetDateTime) -> Result<()> {
        panic!("cookie code must not touch the store")
    }
    async fn delete_session(&self, _: &str) -> Result<()> {
        panic!("cookie code must not touch the store")
    }
}

const TOKEN: &str = "abcdefghijklmnopqrstuvwxyz234567";

fn token() -> SessionToken {
    SessionToken::parse(TOKEN).expect("a well-formed token")
}

#[test]
fn default_cookie_matches_the_original() {
    let narvik: Narvik = Narvik::new(Arc::new(UnreachableStore));
    assert_eq!(narvik.cookie_name(), "narvik_session");
    assert_eq!(
        narvik.create_cookie(&token()).serialize(),
        format!("narvik_session={TOKEN}; Max-Age=2592000; Path=/; SameSite=Lax; Secure; HttpOnly")
    );
    assert_eq!(
        narvik.create_blank_cookie().serialize(),
        "narvik_session=; Max-Age=0; Path=/; SameSite=Lax; Secure; HttpOnly"
    );
}

#[test]
fn cookie_with_domain_path_and_no_secure_matches_the_original() {
    let narvik: Narvik = Narvik::builder(Arc::new(UnreachableStore))
        .cookie_name("NAME")
        .cookie_domain("example.com")
        .cookie_path("/x")
        .cookie_secure(false)
        .cookie_max_age(Duration::hours(1))
        .build()
        .expect("a valid configuration");
    let token = token();
    assert_eq!(
        narvik.create_cookie(&token).serialize(),
        format!("NAME={TOKEN}; Domain=example.com; Max-Age=3600; Path=/x; SameSite=Lax; HttpOnly")
    );
    assert_eq!(
        narvik.create_blank_cookie().serialize(),
        "NAME=; Domain=example.com; Max-Age=0; Path=/x; SameSite=Lax; HttpOnly"
    );
}

#[test]
fn max_age_follows_the_session_lifetime_unless_configured() {
    let narvik: Narvik = Narvik::builder(Arc::new(UnreachableStore))
        .session_lifetime(Duration::days(7))
        .cookie_same_site(SameSite::Strict)
        .build()
        .expect("a valid configuration");
    assert_eq!(
        narvik.create_cookie(&token()).serialize(),
        format!(
            "narvik_session={TOKEN}; Max-Age=604800; Path=/; SameSite=Strict; Secure; HttpOnly"
        )
    );
}

#[test]
fn host_prefix_is_part_of_the_name_and_is_read_back() {
    let narvik: Narvik = Narvik::builder(Arc::new(UnreachableStore))
        .cookie_host_prefix(true)
        .build()
        .expect("a valid configuration");
    assert_eq!(narvik.cookie_name(), "__Host-narvik_session");
    assert!(narvik
        .create_cookie(&token())
        .serialize()
        .starts_with("__Host-narvik_session="));
    let header = format!("narvik_session=x; __Host-narvik_session={TOKEN}");
    assert_eq!(
        narvik
            .read_session_token(&header)
            .map(|t| t.as_str().to_owned()),
        Some(TOKEN.to_owned())
    );
}

#[test]
fn invalid_settings_are_configuration_errors() {
    let attempts: Vec<narvik_core::NarvikBuilder<()>> = vec![
        Narvik::builder(Arc::new(UnreachableStore)).cookie_name("a;b"),
        Narvik::builder(Arc::new(UnreachableStore)).cookie_domain("x.com; Secure"),
        Narvik::builder(Arc::new(UnreachableStore)).cookie_path("/\r\nSet-Cookie: x=y"),
        Narvik::builder(Arc::new(UnreachableStore)).session_lifetime(Duration::ZERO),
        Narvik::builder(Arc::new(UnreachableStore)).session_lifetime(Duration::MAX),
        Narvik::builder(Arc::new(UnreachableStore)).absolute_lifetime(Duration::days(40_000)),
        Narvik::builder(Arc::new(UnreachableStore)).create_attempts(0),
        Narvik::builder(Arc::new(UnreachableStore))
            .cookie_host_prefix(true)
            .cookie_domain("example.com"),
    ];
    for builder in attempts {
        assert!(matches!(
            builder.build(),
            Err(narvik_core::Error::InvalidConfiguration(_))
        ));
    }
}

#[test]
fn debug_output_never_shows_a_token() {
    let narvik: Narvik = Narvik::new(Arc::new(UnreachableStore));
    let token = token();
    let cookie = narvik.create_cookie(&token);
    for printed in [
        format!("{token:?}"),
        format!("{cookie:?}"),
        format!("{narvik:?}"),
    ] {
        assert!(!printed.contains(TOKEN), "{printed}");
    }
}
