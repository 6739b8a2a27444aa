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

/// The browser model of the fuzz crate, for its list of every character a too-generous trim
/// would strip: all of `char::is_whitespace`, every control, the invisible format characters.
#[path = "../../fuzz/src/browser.rs"]
mod browser;

fn read(header: &str, name: &str) -> Option<String> {
    narvik_core::cookie::read_session_token(header, name).map(|t| t.as_str().to_owned())
}

#[test]
fn padding_other_than_sp_and_htab_makes_another_cookie_in_every_position() {
    let padding = browser::look_alike_padding();
    // Every Unicode whitespace code point and every control is in the list.
    assert!(padding.len() >= 25 + 65, "{}", padding.len());
    for c in [
        '\u{a0}', '\u{2000}', '\u{3000}', '\u{85}', '\u{2028}', '\u{feff}', '\u{b}',
    ] {
        assert!(padding.contains(&c), "{c:?}");
    }
    let mut checked = 0;
    for name in ["narvik_session", "__Host-narvik_session"] {
        for &c in &padding {
            let trimmed = c == ' ' || c == '\t';
            let headers = [
                format!("{c}{name}={TOKEN}"),
                format!("{name}{c}={TOKEN}"),
                format!("{name}={c}{TOKEN}"),
                format!("{name}={TOKEN}{c}"),
            ];
            for (position, header) in headers.iter().enumerate() {
                let expected = trimmed.then(|| TOKEN.to_owned());
                assert_eq!(read(header, name), expected, "{position}: {header:?}");
                checked += 1;
            }
            // Beside the real cookie, a look-alike name is neither read nor a duplicate.
            for look_alike in [format!("{c}{name}=other"), format!("{name}{c}=other")] {
                for header in [
                    format!("{look_alike}; {name}={TOKEN}"),
                    format!("{name}={TOKEN}; {look_alike}"),
                ] {
                    let expected = (!trimmed).then(|| TOKEN.to_owned());
                    assert_eq!(read(&header, name), expected, "{header:?}");
                    checked += 1;
                }
            }
            // A value padded with anything but SP or HTAB is not a token, and never cut down
            // to one.
            if !trimmed {
                let header = format!("{name}={c}{TOKEN}{c}");
                assert_eq!(read(&header, name), None, "{header:?}");
            }
        }
    }
    assert_eq!(checked, 2 * padding.len() * 8);
}

#[test]
fn the_engine_reads_the_exact_prefixed_name_only() {
    let narvik: Narvik = Narvik::builder(Arc::new(UnreachableStore))
        .cookie_host_prefix(true)
        .build()
        .expect("a valid configuration");
    let read = |header: &str| {
        narvik
            .read_session_token(header)
            .map(|t| t.as_str().to_owned())
    };
    assert_eq!(
        read(&format!("__Host-narvik_session={TOKEN}")),
        Some(TOKEN.into())
    );
    for header in [
        format!("\u{2000}__Host-narvik_session={TOKEN}"),
        format!("__Host-narvik_session\u{a0}={TOKEN}"),
        format!("__host-narvik_session={TOKEN}"),
        format!("narvik_session={TOKEN}"),
        format!("__Host-narvik_session={TOKEN}\u{3000}"),
        format!("\u{feff}__Host-narvik_session={TOKEN}"),
        format!("={TOKEN}"),
        TOKEN.to_owned(),
    ] {
        assert_eq!(read(&header), None, "{header:?}");
    }
    // The look-alike beside the real cookie changes nothing.
    assert_eq!(
        read(&format!(
            "__Host-narvik_session\u{a0}=x; __Host-narvik_session={TOKEN}; \u{2028}__Host-narvik_session=y"
        )),
        Some(TOKEN.into())
    );
}

fn rejection(config: narvik_core::CookieConfig) -> String {
    match Narvik::<()>::builder(Arc::new(UnreachableStore))
        .cookie(config.clone())
        .build()
    {
        Err(narvik_core::Error::InvalidConfiguration(message)) => message,
        Err(other) => panic!("{config:?}: {other:?}"),
        Ok(_) => panic!("{config:?} was accepted"),
    }
}

#[test]
fn configurations_browsers_reject_are_configuration_errors() {
    use narvik_core::{CookieConfig, CookiePrefix};
    let base = CookieConfig::default();
    // A name that itself carries a prefix, in any case, without the prefix's attributes.
    for name in ["__Host-sid", "__host-sid", "__HOST-sid", "__hOsT-sid"] {
        for config in [
            CookieConfig {
                name: name.into(),
                secure: false,
                ..base.clone()
            },
            CookieConfig {
                name: name.into(),
                path: "/app".into(),
                ..base.clone()
            },
            CookieConfig {
                name: name.into(),
                domain: Some("example.com".into()),
                ..base.clone()
            },
        ] {
            let message = rejection(config);
            assert!(message.contains("__Host-"), "{message}");
        }
        // With its attributes, the browser keeps it: so does narvik.
        let config = CookieConfig {
            name: name.into(),
            ..base.clone()
        };
        assert!(config.validate().is_ok(), "{name}");
    }
    for name in ["__Secure-sid", "__secure-sid", "__SECURE-sid"] {
        let message = rejection(CookieConfig {
            name: name.into(),
            secure: false,
            ..base.clone()
        });
        assert!(message.contains("__Secure-"), "{message}");
        let config = CookieConfig {
            name: name.into(),
            domain: Some("example.com".into()),
            path: "/app".into(),
            ..base.clone()
        };
        assert!(config.validate().is_ok(), "{name}");
    }
    // A prefix setting on a name that already has one.
    for (prefix, name) in [
        (CookiePrefix::Host, "__Host-sid"),
        (CookiePrefix::Host, "__secure-sid"),
        (CookiePrefix::Secure, "__Secure-sid"),
        (CookiePrefix::Secure, "__HOST-sid"),
    ] {
        let message = rejection(CookieConfig {
            name: name.into(),
            prefix,
            ..base.clone()
        });
        assert!(message.contains("already begins with"), "{message}");
    }
    // The prefix settings themselves.
    for config in [
        CookieConfig {
            prefix: CookiePrefix::Host,
            secure: false,
            ..base.clone()
        },
        CookieConfig {
            prefix: CookiePrefix::Host,
            path: "/x".into(),
            ..base.clone()
        },
        CookieConfig {
            prefix: CookiePrefix::Host,
            domain: Some("example.com".into()),
            ..base.clone()
        },
        CookieConfig {
            prefix: CookiePrefix::Secure,
            secure: false,
            ..base.clone()
        },
    ] {
        rejection(config);
    }
    // Max-Age=0 deletes the cookie: sign-in would never stick. Under a second is written as 0.
    for max_age in [
        Duration::ZERO,
        Duration::milliseconds(999),
        Duration::seconds(-1),
    ] {
        let message = rejection(CookieConfig {
            max_age: Some(max_age),
            ..base.clone()
        });
        assert!(message.contains("Max-Age"), "{message}");
    }
    // What browsers ignore for its size: a name and value over 4096 bytes, an attribute over
    // 1024.
    rejection(CookieConfig {
        name: "n".repeat(4096 - 32 + 1),
        ..base.clone()
    });
    assert!(CookieConfig {
        name: "n".repeat(4096 - 32),
        ..base.clone()
    }
    .validate()
    .is_ok());
    rejection(CookieConfig {
        path: format!("/{}", "p".repeat(1024)),
        ..base.clone()
    });
    rejection(CookieConfig {
        domain: Some(format!("{}.com", "d".repeat(1021))),
        ..base.clone()
    });
    // A Domain that is no host name.
    for domain in [".", "..", "a..b", "a.", ".a.", "..a"] {
        rejection(CookieConfig {
            domain: Some(domain.into()),
            ..base.clone()
        });
    }
    assert!(CookieConfig {
        domain: Some(".example.com".into()),
        ..base.clone()
    }
    .validate()
    .is_ok());
    // What always held still holds.
    assert!(base.validate().is_ok());
}

#[test]
fn secure_prefix_is_the_way_out_for_a_shared_domain() {
    let narvik: Narvik = Narvik::builder(Arc::new(UnreachableStore))
        .cookie_prefix(narvik_core::CookiePrefix::Secure)
        .cookie_domain("example.com")
        .build()
        .expect("a valid configuration");
    assert_eq!(narvik.cookie_name(), "__Secure-narvik_session");
    assert_eq!(
        narvik.create_cookie(&token()).serialize(),
        format!(
            "__Secure-narvik_session={TOKEN}; Domain=example.com; Max-Age=2592000; Path=/; SameSite=Lax; Secure; HttpOnly"
        )
    );
    assert_eq!(
        narvik
            .read_session_token(&format!(
                "narvik_session=x; __Secure-narvik_session={TOKEN}"
            ))
            .map(|t| t.as_str().to_owned()),
        Some(TOKEN.to_owned())
    );
    // cookie_host_prefix stays a shorthand for the Host prefix.
    let host: Narvik = Narvik::builder(Arc::new(UnreachableStore))
        .cookie_host_prefix(true)
        .build()
        .expect("a valid configuration");
    assert_eq!(
        host.create_cookie(&token()).serialize(),
        format!(
            "__Host-narvik_session={TOKEN}; Max-Age=2592000; Path=/; SameSite=Lax; Secure; HttpOnly"
        )
    );
}
