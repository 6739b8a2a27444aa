// Over 400 lines in one file: the one definition of each parser property, which the fuzz
// targets and narvik-core's property tests (through `#[path]`) both include whole.
//! The properties of narvik's parsers, as functions that panic when one fails. The fuzz
//! targets call them on arbitrary input; narvik-core's property tests (through `#[path]`) call
//! the very same functions on proptest's input, so fuzzing and the stable tests check one
//! definition of each property.

#![allow(dead_code)]

use std::sync::Arc;

use narvik_core::cookie::{find_cookie, parse_cookie_header, read_session_token, CookieLookup};
use narvik_core::token::is_well_formed;
use narvik_core::{
    Cookie, CookieConfig, CookiePrefix, Error, Narvik, SameSite, SessionData, SessionRecord,
    SessionStore, SessionToken,
};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use crate::browser::{self, Jar, Origin};

/// A well-formed token, for cookies built by the checks.
pub const TOKEN: &str = "abcdefghijklmnopqrstuvwxyz234567";

/// The session cookie names every header is also read with.
pub const SESSION_NAMES: [&str; 3] = [
    "narvik_session",
    "__Host-narvik_session",
    "__Secure-narvik_session",
];

/// Narvik's reading of `header`: its pairs, owned.
pub fn narvik_pairs(header: &str) -> Vec<(String, String)> {
    parse_cookie_header(header)
        .map(|pair| (pair.name.to_owned(), pair.value.to_owned()))
        .collect()
}

/// What [`find_cookie`] must answer, counted on the reference reading.
fn expected_lookup<'a>(reference: &'a [(String, String)], name: &str) -> CookieLookup<'a> {
    if name.is_empty() {
        return CookieLookup::Missing;
    }
    let matching: Vec<&'a (String, String)> = reference
        .iter()
        .filter(|(pair_name, _)| pair_name == name)
        .collect();
    match matching.as_slice() {
        [] => CookieLookup::Missing,
        [(_, value)] => CookieLookup::Unique(value.as_str()),
        _ => CookieLookup::Duplicated,
    }
}

/// Narvik reads `header` exactly as the browser model does: the same pairs in the same order,
/// names and values trimmed of SP and HTAB only; looking a name up finds exactly the pairs of
/// that exact name; the session token is read only from a unique, well-formed value.
pub fn check_cookie_header(header: &str) {
    let ours = narvik_pairs(header);
    let reference = browser::read_cookie_header(header);
    assert_eq!(ours, reference, "pairs of {header:?}");
    for (name, value) in &ours {
        for part in [name, value] {
            assert!(!part.contains(';'), "{header:?}");
            assert!(!part.starts_with(browser::is_wsp), "{header:?}");
            assert!(!part.ends_with(browser::is_wsp), "{header:?}");
        }
        assert!(!name.contains('='), "{header:?}");
    }
    let names = ours
        .iter()
        .map(|(name, _)| name.as_str())
        .chain(SESSION_NAMES)
        .chain([""]);
    for name in names {
        let expected = expected_lookup(&reference, name);
        assert_eq!(
            find_cookie(header, name),
            expected,
            "{name:?} in {header:?}"
        );
        let token = read_session_token(header, name).map(|token| token.as_str().to_owned());
        let expected_token = match expected {
            CookieLookup::Unique(value) if is_well_formed(value) => Some(value.to_owned()),
            _ => None,
        };
        assert_eq!(token, expected_token, "token {name:?} in {header:?}");
    }
}

/// Inserting `other` (one pair, no `;`) anywhere in `header` changes nothing about `name`
/// unless the browser model reads `other` as a cookie of exactly that name: a look-alike is
/// never ours, never a duplicate of ours, and never hides ours.
pub fn check_other_cookie_changes_nothing(header: &str, other: &str, at: usize, name: &str) {
    assert!(!other.contains(';'), "one pair only: {other:?}");
    if browser::read_cookie_header(other)
        .iter()
        .any(|(other_name, _)| other_name == name)
    {
        return;
    }
    let mut segments: Vec<&str> = header.split(';').collect();
    let at = at % (segments.len() + 1);
    segments.insert(at, other);
    let with_other = segments.join(";");
    assert_eq!(
        find_cookie(&with_other, name),
        find_cookie(header, name),
        "{other:?} changed what {name:?} reads in {with_other:?}"
    );
    assert_eq!(
        read_session_token(&with_other, name),
        read_session_token(header, name),
        "{other:?} changed the token of {name:?} in {with_other:?}"
    );
}

/// A candidate is a token exactly when it is 32 characters of `a-z2-7`; parsing never panics,
/// and a token reads back as itself with a 64-character lower-case hex id.
pub fn check_token(candidate: &str) {
    let expected = candidate.len() == 32
        && candidate
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || (b'2'..=b'7').contains(&byte));
    assert_eq!(is_well_formed(candidate), expected, "{candidate:?}");
    let parsed = SessionToken::parse(candidate);
    assert_eq!(parsed.is_some(), expected, "{candidate:?}");
    if let Some(token) = parsed {
        assert_eq!(token.as_str(), candidate);
        let id = token.session_id();
        assert_eq!(id.len(), 64);
        assert!(id
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte)));
        assert_eq!(format!("{token:?}"), "SessionToken(<redacted>)");
    }
    let padded = candidate.starts_with(browser::is_wsp) || candidate.ends_with(browser::is_wsp);
    if !candidate.contains(';') && !padded {
        let header = format!("sid={candidate}");
        assert_eq!(
            read_session_token(&header, "sid").is_some(),
            expected,
            "{header:?}"
        );
    }
}

/// Equal JSON, numbers compared by kind and bits (`-0.0` is not `0.0`, `1.0` is not `1`).
pub fn same_json(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => {
            if left.is_f64() || right.is_f64() {
                left.is_f64()
                    && right.is_f64()
                    && left.as_f64().map(f64::to_bits) == right.as_f64().map(f64::to_bits)
            } else {
                left.as_u64() == right.as_u64() && left.as_i64() == right.as_i64()
            }
        }
        (Value::Array(left), Value::Array(right)) => {
            left.len() == right.len() && left.iter().zip(right).all(|(l, r)| same_json(l, r))
        }
        (Value::Object(left), Value::Object(right)) => {
            left.len() == right.len()
                && left
                    .iter()
                    .zip(right)
                    .all(|((lk, lv), (rk, rv))| lk == rk && same_json(lv, rv))
        }
        _ => left == right,
    }
}

/// A value survives the text form a store keeps (`to_json_text`, then `from_json_text` and
/// `decode`) exactly: same shape, same strings, numbers bit for bit; writing it again gives
/// the same text, and every way of reading the text agrees.
pub fn check_data_value(value: &Value) {
    let data = SessionData::from(value.clone());
    let text = data
        .to_json_text()
        .expect("a JSON value writes")
        .into_owned();
    let mut written = Vec::new();
    data.write_json(&mut written).expect("a JSON value writes");
    assert_eq!(written, text.as_bytes());
    assert_eq!(data.to_string(), text);

    let stored = SessionData::from_json_text(text.as_str());
    let decoded: Value = stored.decode().expect("the text decodes");
    assert!(
        same_json(&decoded, value),
        "{value:?} came back as {decoded:?}"
    );
    let parsed = stored.to_value().expect("the text parses");
    assert!(
        same_json(&parsed, value),
        "{value:?} came back as {parsed:?}"
    );
    assert_eq!(stored, data);
    assert_eq!(
        SessionData::from(decoded).to_json_text().expect("writes"),
        text.as_str(),
        "the text form is stable"
    );
    // Through a record, as the engine decodes it.
    let record = SessionRecord {
        id: "id".into(),
        user_id: "user".into(),
        expires_at: OffsetDateTime::UNIX_EPOCH + Duration::days(1),
        created_at: OffsetDateTime::UNIX_EPOCH,
        data: stored,
        lifetime: None,
        data_version: 0,
    };
    let session = narvik_core::Session::<Value>::from_record(record).expect("decodes");
    assert!(same_json(&session.data, value));
}

/// Whatever a store hands back as text: decoding never panics, text that is JSON decodes to
/// what serde_json reads and round-trips exactly, text that is not is `InvalidData` to
/// `to_value`, an error to `decode`, and equal only to the identical text.
pub fn check_data_text(text: &str) {
    let data = SessionData::from_json_text(text);
    assert_eq!(data.to_json_text().expect("text is kept").as_ref(), text);
    let mut written = Vec::new();
    data.write_json(&mut written).expect("text is kept");
    assert_eq!(written, text.as_bytes());
    match serde_json::from_str::<Value>(text) {
        Ok(value) => {
            let decoded: Value = data.decode().expect("JSON decodes");
            assert!(same_json(&decoded, &value));
            assert!(same_json(&data.to_value().expect("JSON parses"), &value));
            assert_eq!(data, SessionData::from(value.clone()));
            check_data_value(&value);
        }
        Err(_) => {
            assert!(data.decode::<Value>().is_err(), "{text:?}");
            assert!(
                matches!(data.to_value(), Err(Error::InvalidData(_))),
                "{text:?}"
            );
            assert_eq!(data, SessionData::from_json_text(text));
            assert_ne!(data, SessionData::default());
        }
    }
    // Typed decoding of arbitrary text fails cleanly or succeeds; it never panics.
    let _ = data.decode::<(String, u64, f64)>();
    let _ = data.decode::<std::collections::BTreeMap<String, Vec<Option<i64>>>>();
}

/// A store that is never called: building an engine and writing cookies need none.
pub struct NoStore;

#[narvik_core::async_trait]
impl SessionStore for NoStore {
    async fn save_session(&self, _: &SessionRecord) -> narvik_core::Result<()> {
        Err(Error::unavailable("cookie checks never touch the store"))
    }
    async fn fetch_session(&self, _: &str) -> narvik_core::Result<Option<SessionRecord>> {
        Err(Error::unavailable("cookie checks never touch the store"))
    }
    async fn update_session_expiry(&self, _: &str, _: OffsetDateTime) -> narvik_core::Result<()> {
        Err(Error::unavailable("cookie checks never touch the store"))
    }
    async fn delete_session(&self, _: &str) -> narvik_core::Result<()> {
        Err(Error::unavailable("cookie checks never touch the store"))
    }
}

/// The rules narvik adds to the browser's: no character that could inject an attribute or a
/// header line, a domain made of labels, no negative `Max-Age`, one prefix at most. Written
/// here on its own, as the oracle `validate` is compared with.
pub fn breaks_narvik_rules(config: &CookieConfig) -> bool {
    let token_byte =
        |byte: u8| (0x21..=0x7e).contains(&byte) && !b"()<>@,;:\\\"/[]?={}".contains(&byte);
    let name_bad = config.name.is_empty() || !config.name.bytes().all(token_byte);
    let domain_bad = config.domain.as_deref().is_some_and(|domain| {
        let labels = domain.strip_prefix('.').unwrap_or(domain);
        labels.is_empty()
            || labels.split('.').any(|label| {
                label.is_empty()
                    || !label
                        .bytes()
                        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
            })
    });
    let path_bad = !config.path.starts_with('/')
        || !config
            .path
            .bytes()
            .all(|byte| (0x21..=0x7e).contains(&byte) && byte != b';' && byte != b',');
    let negative = config.max_age.is_some_and(Duration::is_negative);
    let double_prefix = config.prefix != CookiePrefix::None
        && CookiePrefix::of_name(&config.name) != CookiePrefix::None;
    name_bad || domain_bad || path_bad || negative || double_prefix
}

/// The `Max-Age` the engine writes for `config` on its default 30-day lifetime.
fn max_age_seconds(config: &CookieConfig) -> i64 {
    config
        .max_age
        .unwrap_or(narvik_core::config::DEFAULT_SESSION_LIFETIME)
        .whole_seconds()
}

/// The host a deployment with this cookie serves: the cookie's domain, or a host of its own.
fn serving_origin(config: &CookieConfig) -> Origin {
    let host = config
        .domain
        .as_deref()
        .map(|domain| domain.strip_prefix('.').unwrap_or(domain))
        .unwrap_or("app.example.com");
    Origin::new(host, true)
}

/// Whether the browser model, sent `set_cookie` by the deployment of `config`, keeps the
/// cookie with exactly the configured name, value, domain, path and `Secure`.
fn browser_keeps_as_configured(config: &CookieConfig, set_cookie: &str) -> bool {
    let origin = serving_origin(config);
    let mut jar = Jar::new();
    if jar.receive(&origin, &config.path, set_cookie) != Ok(true) {
        return false;
    }
    let expected_domain = config.domain.as_deref().map(|domain| {
        domain
            .strip_prefix('.')
            .unwrap_or(domain)
            .to_ascii_lowercase()
    });
    match jar.cookies() {
        [cookie] => {
            cookie.name == config.full_name()
                && cookie.value == TOKEN
                && cookie.host_only == expected_domain.is_none()
                && Some(&cookie.domain) == expected_domain.as_ref().or(Some(&origin.host))
                && cookie.path == config.path
                && cookie.secure == config.secure
        }
        _ => false,
    }
}

/// `validate` accepts a configuration exactly when it keeps narvik's own rules and a browser
/// keeps the resulting cookie as configured; an accepted one serialises to a header value
/// with nothing injected, whose attributes read back as configured, which the browser sends
/// back (read as the session token) and which the blank cookie deletes.
pub fn check_cookie_config(config: &CookieConfig) {
    let validated = config.validate();
    if let Err(error) = &validated {
        assert!(matches!(error, Error::InvalidConfiguration(_)), "{error:?}");
    }
    let built = Narvik::<()>::builder(Arc::new(NoStore))
        .cookie(config.clone())
        .build();
    assert_eq!(validated.is_ok(), built.is_ok(), "{config:?}");

    let expected_ok = !breaks_narvik_rules(config) && {
        let manual = Cookie {
            name: config.full_name(),
            value: TOKEN.to_owned(),
            max_age_seconds: Some(max_age_seconds(config)),
            domain: config.domain.clone(),
            path: config.path.clone(),
            same_site: config.same_site,
            secure: config.secure,
            http_only: config.http_only,
        };
        browser_keeps_as_configured(config, &manual.serialize())
    };
    assert_eq!(
        validated.is_ok(),
        expected_ok,
        "validate and the browser disagree on {config:?}: {validated:?}"
    );
    let Ok(narvik) = built else {
        return;
    };

    let token = SessionToken::parse(TOKEN).expect("a token");
    let set_cookie = narvik.create_cookie(&token).serialize();
    assert!(
        set_cookie
            .bytes()
            .all(|byte| byte == b' ' || (0x21..=0x7e).contains(&byte)),
        "{set_cookie:?}"
    );
    let expected_attributes = 1
        + usize::from(config.domain.is_some())
        + 3
        + usize::from(config.secure)
        + usize::from(config.http_only);
    assert_eq!(
        set_cookie.split(';').count(),
        expected_attributes,
        "{set_cookie:?}"
    );
    let parsed = browser::parse_set_cookie(&set_cookie).expect("the browser parses it");
    assert_eq!(parsed.name, config.full_name());
    assert_eq!(parsed.value, TOKEN);
    let attributes = parsed.attributes;
    assert_eq!(attributes.max_age, Some(max_age_seconds(config)));
    assert!(attributes.max_age.is_some_and(|seconds| seconds >= 1));
    assert_eq!(attributes.path.as_deref(), Some(config.path.as_str()));
    assert_eq!(attributes.secure, config.secure);
    assert_eq!(attributes.http_only, config.http_only);
    let same_site = match config.same_site {
        SameSite::Strict => "Strict",
        SameSite::Lax => "Lax",
        SameSite::None => "None",
    };
    assert_eq!(attributes.same_site.as_deref(), Some(same_site));

    let origin = serving_origin(config);
    let mut jar = Jar::new();
    assert_eq!(jar.receive(&origin, &config.path, &set_cookie), Ok(true));
    let header = jar.cookie_header(&origin, &config.path);
    assert_eq!(
        narvik
            .read_session_token(&header)
            .map(|t| t.as_str().to_owned()),
        Some(TOKEN.to_owned()),
        "{header:?}"
    );
    let blank = narvik.create_blank_cookie().serialize();
    assert_eq!(jar.receive(&origin, &config.path, &blank), Ok(false));
    assert_eq!(jar.cookie_header(&origin, &config.path), "");
}

/// The sites of the browser differential: the application, its sibling and parent domains,
/// each over https or plain http.
pub const SITES: [(&str, bool); 6] = [
    ("app.example.com", true),
    ("app.example.com", false),
    ("evil.example.com", true),
    ("evil.example.com", false),
    ("example.com", true),
    ("example.com", false),
];

/// Browser versus server: sites set cookies (`(site index, Set-Cookie string)`), then the
/// browser sends its `Cookie` header to `https://app.example.com{request_path}`. Narvik must
/// read every cookie the browser holds under the browser's own name, and a name with a prefix
/// only when the browser holds that exact cookie, set the way the prefix demands: a
/// `__Host-` session cookie can come only from the application itself, over https.
pub fn check_browser_differential(set_cookies: &[(usize, String)], request_path: &str) {
    let mut jar = Jar::new();
    for (site, set_cookie) in set_cookies {
        let (host, secure) = SITES[site % SITES.len()];
        let _ = jar.receive(&Origin::new(host, secure), request_path, set_cookie);
    }
    let app = Origin::new("app.example.com", true);
    let header = jar.cookie_header(&app, request_path);
    check_cookie_header(&header);

    let sent = jar.cookies_for(&app, request_path);
    let expected: Vec<(String, String)> = sent
        .iter()
        .flat_map(|cookie| {
            if cookie.name.is_empty() {
                browser::read_cookie_header(&cookie.value)
            } else {
                vec![(cookie.name.clone(), cookie.value.clone())]
            }
        })
        .collect();
    let read = narvik_pairs(&header);
    assert_eq!(read, expected, "{header:?}");

    for (name, value) in &read {
        let held = |cookie: &browser::StoredCookie| &cookie.name == name && &cookie.value == value;
        if browser::has_host_prefix(name) {
            assert!(
                sent.iter().any(|cookie| held(cookie)
                    && cookie.host_only
                    && cookie.domain == "app.example.com"
                    && cookie.secure
                    && cookie.path == "/"
                    && cookie.set_by == app),
                "{name:?} read from {header:?} is no __Host- cookie of the app"
            );
        }
        if browser::has_secure_prefix(name) {
            assert!(
                sent.iter()
                    .any(|cookie| held(cookie) && cookie.secure && cookie.set_by.secure),
                "{name:?} read from {header:?} is no __Secure- cookie"
            );
        }
    }
    if let CookieLookup::Unique(value) = find_cookie(&header, "__Host-narvik_session") {
        let held: Vec<_> = sent
            .iter()
            .filter(|cookie| cookie.name == "__Host-narvik_session")
            .collect();
        assert_eq!(held.len(), 1, "{header:?}");
        assert_eq!(held[0].value, value);
        assert_eq!(held[0].set_by, app);
    }
}
