//! The session cookie: its settings, its validation, its exact serialisation, and reading
//! cookies back from a request's `Cookie` header the way browsers write them (RFC 6265bis).
//!
//! Every place in narvik that reads a cookie goes through [`parse_cookie_header`] (or
//! [`find_cookie`] on top of it), so the engine, the axum layer and any application code agree
//! on what counts as "our" cookie.

use time::Duration;

use crate::error::{Error, Result};
use crate::token::{SessionToken, TOKEN_LENGTH};

/// The default cookie name, as in the original Narvik.
pub const DEFAULT_COOKIE_NAME: &str = "narvik_session";
/// The prefix that makes browsers insist on `Secure`, `Path=/` and no `Domain`.
pub const HOST_PREFIX: &str = "__Host-";
/// The prefix that makes browsers insist on `Secure`.
pub const SECURE_PREFIX: &str = "__Secure-";

/// The `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SameSite {
    /// Sent only on same-site requests.
    Strict,
    /// Sent on same-site requests and top-level cross-site navigations (the default).
    #[default]
    Lax,
    /// Sent everywhere; browsers require `Secure` with it.
    None,
}

impl SameSite {
    fn as_str(self) -> &'static str {
        match self {
            Self::Strict => "Strict",
            Self::Lax => "Lax",
            Self::None => "None",
        }
    }
}

/// A cookie name prefix (RFC 6265bis section 4.1.3): a promise, enforced by the browser, about
/// how the cookie was set. A browser stores a prefixed cookie only when it carries the
/// prefix's attributes, so a sibling subdomain or a plain-HTTP page cannot plant or overwrite
/// it (cookie tossing, session fixation).
///
/// ```
/// use narvik_core::CookiePrefix;
/// assert_eq!(CookiePrefix::Host.as_str(), "__Host-");
/// // Browsers match prefixes in any case: this name is bound by the `__Host-` rules.
/// assert_eq!(CookiePrefix::of_name("__HOST-sid"), CookiePrefix::Host);
/// assert_eq!(CookiePrefix::of_name("sid"), CookiePrefix::None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CookiePrefix {
    /// No prefix: the cookie is what the original Narvik sends (the default of narvik-core).
    #[default]
    None,
    /// `__Secure-`: the browser keeps it only with `Secure`. Allows a `Domain`, for
    /// deployments that share the session across subdomains.
    Secure,
    /// `__Host-`: the browser keeps it only with `Secure`, `Path=/` and no `Domain`, so only
    /// the exact host that set it can set it again. The strongest choice for a web app.
    Host,
}

impl CookiePrefix {
    /// The prefix as written before the name (empty for [`CookiePrefix::None`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "",
            Self::Secure => SECURE_PREFIX,
            Self::Host => HOST_PREFIX,
        }
    }

    /// The prefix a browser sees at the start of `name`, matched case-insensitively as RFC
    /// 6265bis requires (`__host-x` is bound by the `__Host-` rules too).
    pub fn of_name(name: &str) -> Self {
        let starts_with = |prefix: &str| {
            name.as_bytes()
                .get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix.as_bytes()))
        };
        if starts_with(HOST_PREFIX) {
            Self::Host
        } else if starts_with(SECURE_PREFIX) {
            Self::Secure
        } else {
            Self::None
        }
    }
}

/// How the session cookie is named and which attributes it carries.
///
/// The defaults are the original's: name `narvik_session`, `HttpOnly`, `Secure`, `Path=/`,
/// `SameSite=Lax`, `Max-Age` equal to the session lifetime, no prefix. A web application
/// should use a prefix (narvik-axum's `web_builder` sets [`CookiePrefix::Host`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    /// The cookie name, without the prefix set in `prefix`.
    pub name: String,
    /// `Max-Age`; `None` means the session lifetime. Sent in whole seconds, any fraction of a
    /// second dropped (1.9 s is sent as `Max-Age=1`).
    pub max_age: Option<Duration>,
    /// Sends the cookie without `Max-Age`, so the browser drops it when it closes (a
    /// browser-session cookie). The server-side lifetime still applies, and a session created
    /// with a lifetime of its own ("remember me") still gets a persistent cookie.
    pub browser_session: bool,
    /// The `Secure` attribute. Turn it off only for plain-HTTP development.
    pub secure: bool,
    /// The `HttpOnly` attribute.
    pub http_only: bool,
    /// The `Domain` attribute; `None` leaves it out (host-only cookie).
    pub domain: Option<String>,
    /// The `Path` attribute.
    pub path: String,
    /// The `SameSite` attribute.
    pub same_site: SameSite,
    /// The prefix written before `name`; [`CookiePrefix::Host`] requires `secure`, path `/`
    /// and no domain, [`CookiePrefix::Secure`] requires `secure`.
    pub prefix: CookiePrefix,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_COOKIE_NAME.to_owned(),
            max_age: None,
            browser_session: false,
            secure: true,
            http_only: true,
            domain: None,
            path: "/".to_owned(),
            same_site: SameSite::Lax,
            prefix: CookiePrefix::None,
        }
    }
}

impl CookieConfig {
    /// The name as it appears in headers, with the prefix when configured.
    pub fn full_name(&self) -> String {
        format!("{}{}", self.prefix.as_str(), self.name)
    }

    /// Checks that no name, domain or path can inject an attribute or a header line, and
    /// rejects what a browser would refuse to store: a name bound by a prefix (in any case)
    /// without the prefix's attributes, a prefix on a name that already has one, and a
    /// `Max-Age` below one second (`Max-Age=0` deletes the cookie: sign-in would never stick).
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(Error::InvalidConfiguration(message));
        if self.name.is_empty() || !self.name.bytes().all(is_token_byte) {
            return invalid(format!(
                "cookie name {:?} must be a non-empty RFC 6265 token (no separators, spaces or control characters)",
                self.name
            ));
        }
        if self.full_name().len() + TOKEN_LENGTH > MAX_NAME_AND_VALUE {
            return invalid(format!(
                "cookie name is {} bytes long: browsers ignore a cookie whose name and value \
                 exceed {MAX_NAME_AND_VALUE} bytes",
                self.full_name().len()
            ));
        }
        if let Some(domain) = &self.domain {
            // Labels of letters, digits and '-', one optional leading '.' (browsers drop it).
            let labels = domain.strip_prefix('.').unwrap_or(domain);
            let valid = !labels.is_empty()
                && labels.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-')
                });
            if !valid {
                return invalid(format!(
                    "cookie domain {domain:?} must be a host name: labels of letters, digits \
                     and '-' separated by single dots"
                ));
            }
            if domain.len() > MAX_ATTRIBUTE_VALUE {
                return invalid(format!(
                    "cookie domain is {} bytes long: browsers ignore a Domain over \
                     {MAX_ATTRIBUTE_VALUE} bytes",
                    domain.len()
                ));
            }
        }
        let path_valid = self.path.starts_with('/')
            && self
                .path
                .bytes()
                .all(|byte| (0x21..=0x7e).contains(&byte) && byte != b';' && byte != b',');
        if !path_valid {
            return invalid(format!(
                "cookie path {:?} must start with '/' and hold no spaces, ';', ',' or control characters",
                self.path
            ));
        }
        if self.path.len() > MAX_ATTRIBUTE_VALUE {
            return invalid(format!(
                "cookie path is {} bytes long: browsers ignore a Path over \
                 {MAX_ATTRIBUTE_VALUE} bytes",
                self.path.len()
            ));
        }
        if self.browser_session && self.max_age.is_some() {
            return invalid(
                "a browser-session cookie has no Max-Age: set browser_session or max_age, not both"
                    .to_owned(),
            );
        }
        if let Some(max_age) = self.max_age {
            if max_age.is_negative() {
                return invalid("cookie Max-Age must not be negative".to_owned());
            }
            if max_age.whole_seconds() < 1 {
                return invalid(format!(
                    "cookie Max-Age must be at least one second (got {max_age}): Max-Age=0 \
                     deletes the cookie, so no sign-in would ever stick"
                ));
            }
        }
        let named_prefix = CookiePrefix::of_name(&self.name);
        if self.prefix != CookiePrefix::None && named_prefix != CookiePrefix::None {
            return invalid(format!(
                "cookie name {:?} already begins with {} (browsers match prefixes in any case) \
                 and prefix adds {}: set one of the two",
                self.name,
                named_prefix.as_str(),
                self.prefix.as_str()
            ));
        }
        let how = if self.prefix == CookiePrefix::None {
            format!("cookie name {:?} begins with", self.name)
        } else {
            "the cookie prefix is".to_owned()
        };
        match CookiePrefix::of_name(&self.full_name()) {
            CookiePrefix::Host if !self.secure || self.path != "/" || self.domain.is_some() => {
                return invalid(format!(
                    "{how} __Host- (matched in any case), so browsers store the cookie only with \
                     Secure, Path=/ and no Domain (got secure: {}, path: {:?}, domain: {:?}); \
                     for a Domain use the __Secure- prefix",
                    self.secure, self.path, self.domain
                ));
            }
            CookiePrefix::Secure if !self.secure => {
                return invalid(format!(
                    "{how} __Secure- (matched in any case), so browsers store the cookie only \
                     with Secure"
                ));
            }
            _ => {}
        }
        if self.same_site == SameSite::None && !self.secure {
            return invalid("SameSite=None needs Secure (browsers reject it otherwise)".to_owned());
        }
        Ok(())
    }
}

/// RFC 6265bis section 5.6: a browser ignores a cookie whose name and value together are
/// longer.
const MAX_NAME_AND_VALUE: usize = 4096;
/// RFC 6265bis section 5.6: a browser ignores an attribute whose value is longer.
const MAX_ATTRIBUTE_VALUE: usize = 1024;

/// RFC 6265 `token` characters: visible ASCII except separators.
fn is_token_byte(byte: u8) -> bool {
    (0x21..=0x7e).contains(&byte) && !b"()<>@,;:\\\"/[]?={}".contains(&byte)
}

/// A cookie ready to send in a `Set-Cookie` header.
///
/// Its `Debug` output hides the value (a token); [`Cookie::serialize`] gives the header value.
#[derive(Clone, PartialEq, Eq)]
pub struct Cookie {
    /// The cookie name.
    pub name: String,
    /// The cookie value: the token, or empty for the blank cookie.
    pub value: String,
    /// `Max-Age` in whole seconds: the lifetime or configured max age with any fraction of a
    /// second dropped (the cookie equals the TypeScript original's byte for byte when that
    /// duration is whole seconds). `None` leaves the attribute out (a browser-session cookie).
    pub max_age_seconds: Option<i64>,
    /// The `Domain` attribute.
    pub domain: Option<String>,
    /// The `Path` attribute.
    pub path: String,
    /// The `SameSite` attribute.
    pub same_site: SameSite,
    /// The `Secure` attribute.
    pub secure: bool,
    /// The `HttpOnly` attribute.
    pub http_only: bool,
}

impl Cookie {
    pub(crate) fn new(config: &CookieConfig, value: String, max_age: Option<Duration>) -> Self {
        Self {
            name: config.full_name(),
            value,
            max_age_seconds: max_age.map(Duration::whole_seconds),
            domain: config.domain.clone(),
            path: config.path.clone(),
            same_site: config.same_site,
            secure: config.secure,
            http_only: config.http_only,
        }
    }

    /// The `Set-Cookie` header value, attribute for attribute as the original writes it:
    ///
    /// ```
    /// use narvik_core::{Cookie, SameSite};
    /// let cookie = Cookie {
    ///     name: "narvik_session".into(),
    ///     value: String::new(),
    ///     max_age_seconds: Some(0),
    ///     domain: None,
    ///     path: "/".into(),
    ///     same_site: SameSite::Lax,
    ///     secure: true,
    ///     http_only: true,
    /// };
    /// assert_eq!(
    ///     cookie.serialize(),
    ///     "narvik_session=; Max-Age=0; Path=/; SameSite=Lax; Secure; HttpOnly"
    /// );
    /// ```
    pub fn serialize(&self) -> String {
        let mut out = format!("{}={}", self.name, self.value);
        if let Some(domain) = &self.domain {
            out.push_str("; Domain=");
            out.push_str(domain);
        }
        if let Some(seconds) = self.max_age_seconds {
            out.push_str(&format!("; Max-Age={seconds}"));
        }
        out.push_str("; Path=");
        out.push_str(&self.path);
        out.push_str("; SameSite=");
        out.push_str(self.same_site.as_str());
        if self.secure {
            out.push_str("; Secure");
        }
        if self.http_only {
            out.push_str("; HttpOnly");
        }
        out
    }
}

impl std::fmt::Debug for Cookie {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cookie")
            .field("name", &self.name)
            .field(
                "value",
                &if self.value.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field("max_age_seconds", &self.max_age_seconds)
            .field("domain", &self.domain)
            .field("path", &self.path)
            .field("same_site", &self.same_site)
            .field("secure", &self.secure)
            .field("http_only", &self.http_only)
            .finish()
    }
}

/// One `name=value` pair of a `Cookie` header, read as RFC 6265bis reads a cookie.
///
/// Its `Debug` output hides the value (it may be a session token).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CookiePair<'a> {
    /// The name, with leading and trailing SP and HTAB removed and nothing else: any other
    /// character (U+00A0, U+2000, U+3000, U+FEFF, a control) is part of the name. Empty for a
    /// pair without `=`.
    pub name: &'a str,
    /// The value, with leading and trailing SP and HTAB removed. Double quotes are kept.
    pub value: &'a str,
}

impl std::fmt::Debug for CookiePair<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookiePair")
            .field("name", &self.name)
            .field("value_len", &self.value.len())
            .finish()
    }
}

/// The pairs of a `Cookie` header, in order, read the way browsers write them (RFC 6265bis):
///
/// - pairs are split on `;`;
/// - a pair is split at its first `=`; a pair without `=` has an empty name and the whole pair
///   as its value (a browser sends a nameless cookie that way), so it never matches a name;
/// - only SP (0x20) and HTAB (0x09) are trimmed from both ends of the name and of the value;
/// - a pair whose name and value are both empty (`a=1;;b=2`) carries nothing and is skipped.
///
/// Names are left as sent, to be compared byte for byte. Never `str::trim`: it strips every
/// Unicode whitespace character, so `\u{2000}__Host-sid`, which a browser holds as a cookie of
/// its own (one without the prefix, that a sibling subdomain may set), would pass for
/// `__Host-sid`.
///
/// ```
/// use narvik_core::cookie::{parse_cookie_header, CookiePair};
///
/// let pairs: Vec<CookiePair<'_>> =
///     parse_cookie_header("theme=dark ;\tsid=a=b; flag; \u{a0}sid=x").collect();
/// let read: Vec<(&str, &str)> = pairs.iter().map(|pair| (pair.name, pair.value)).collect();
/// assert_eq!(
///     read,
///     [("theme", "dark"), ("sid", "a=b"), ("", "flag"), ("\u{a0}sid", "x")]
/// );
/// ```
pub fn parse_cookie_header(cookie_header: &str) -> CookiePairs<'_> {
    CookiePairs {
        pairs: cookie_header.split(';'),
    }
}

/// The iterator of [`parse_cookie_header`].
#[derive(Clone)]
pub struct CookiePairs<'a> {
    pairs: std::str::Split<'a, char>,
}

impl<'a> Iterator for CookiePairs<'a> {
    type Item = CookiePair<'a>;

    fn next(&mut self) -> Option<CookiePair<'a>> {
        self.pairs.by_ref().find_map(|pair| {
            let (name, value) = match pair.split_once('=') {
                Some((name, value)) => (trim_wsp(name), trim_wsp(value)),
                None => ("", trim_wsp(pair)),
            };
            (!name.is_empty() || !value.is_empty()).then_some(CookiePair { name, value })
        })
    }
}

impl std::fmt::Debug for CookiePairs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookiePairs").finish_non_exhaustive()
    }
}

/// Removes leading and trailing WSP (RFC 5234: SP and HTAB), the only characters RFC 6265bis
/// trims from a cookie's name and value.
fn trim_wsp(text: &str) -> &str {
    text.trim_matches([' ', '\t'])
}

/// What a `Cookie` header holds under one exact name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CookieLookup<'a> {
    /// No pair has the name.
    Missing,
    /// Exactly one pair has the name: its value, as [`CookiePair::value`].
    Unique(&'a str),
    /// Two or more pairs have the name. Which one the server set cannot be told (another
    /// path, a parent domain, a sibling subdomain tossing its own), so none should be trusted.
    Duplicated,
}

impl std::fmt::Debug for CookieLookup<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("Missing"),
            Self::Unique(_) => f.write_str("Unique(<redacted>)"),
            Self::Duplicated => f.write_str("Duplicated"),
        }
    }
}

/// Looks a cookie up by its exact name in a `Cookie` header ([`parse_cookie_header`]'s
/// reading): names compare byte for byte, so a look-alike (`\u{a0}sid`, `sid\u{3000}`, `SID`)
/// is another cookie and is neither found nor counted as a duplicate. An empty `name` is never
/// found: nameless cookies cannot be addressed.
///
/// ```
/// use narvik_core::cookie::{find_cookie, CookieLookup};
/// assert_eq!(find_cookie("a=1; sid=x", "sid"), CookieLookup::Unique("x"));
/// assert_eq!(find_cookie("sid=x; sid=y", "sid"), CookieLookup::Duplicated);
/// assert_eq!(find_cookie("\u{2000}sid=x; sid\u{a0}=y", "sid"), CookieLookup::Missing);
/// ```
pub fn find_cookie<'a>(cookie_header: &'a str, name: &str) -> CookieLookup<'a> {
    if name.is_empty() {
        return CookieLookup::Missing;
    }
    let mut found = CookieLookup::Missing;
    for pair in parse_cookie_header(cookie_header) {
        if pair.name != name {
            continue;
        }
        if found != CookieLookup::Missing {
            return CookieLookup::Duplicated;
        }
        found = CookieLookup::Unique(pair.value);
    }
    found
}

/// Finds the session token in a request's `Cookie` header.
///
/// Returns `None` when the cookie is missing, appears more than once (a sign of cookie
/// tossing: which one is real cannot be told), or does not hold a well-formed token. The
/// cookie is found by [`find_cookie`]: by its exact name, SP and HTAB around the name and
/// value being the only padding allowed.
///
/// ```
/// use narvik_core::cookie::read_session_token;
/// let header = "theme=dark; narvik_session=abcdefghijklmnopqrstuvwxyz234567";
/// assert!(read_session_token(header, "narvik_session").is_some());
/// assert!(read_session_token("narvik_session=x; narvik_session=y", "narvik_session").is_none());
/// // A look-alike name is another cookie: never read as the session cookie.
/// let look_alike = "\u{2000}narvik_session=abcdefghijklmnopqrstuvwxyz234567";
/// assert!(read_session_token(look_alike, "narvik_session").is_none());
/// ```
pub fn read_session_token(cookie_header: &str, cookie_name: &str) -> Option<SessionToken> {
    match find_cookie(cookie_header, cookie_name) {
        CookieLookup::Unique(value) => SessionToken::parse(value),
        CookieLookup::Missing | CookieLookup::Duplicated => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injection_through_name_domain_or_path_is_rejected() {
        let names = ["", "a;b", "a b", "a,b", "a\nb", "a=b", "a\u{7f}", "näme"];
        for name in names {
            let config = CookieConfig {
                name: name.to_owned(),
                ..CookieConfig::default()
            };
            assert!(
                matches!(config.validate(), Err(Error::InvalidConfiguration(_))),
                "{name:?}"
            );
        }
        for domain in ["", "a;b", "a b", "a\r\nb", "a,b", "exämple.com"] {
            let config = CookieConfig {
                domain: Some(domain.to_owned()),
                ..CookieConfig::default()
            };
            assert!(config.validate().is_err(), "{domain:?}");
        }
        for path in ["", "x", "/a;b", "/a b", "/a\nb", "/a,b"] {
            let config = CookieConfig {
                path: path.to_owned(),
                ..CookieConfig::default()
            };
            assert!(config.validate().is_err(), "{path:?}");
        }
        assert!(CookieConfig::default().validate().is_ok());
    }

    #[test]
    fn host_prefix_needs_secure_root_path_and_no_domain() {
        let base = CookieConfig {
            prefix: CookiePrefix::Host,
            ..CookieConfig::default()
        };
        assert!(base.validate().is_ok());
        assert_eq!(base.full_name(), "__Host-narvik_session");
        let cases = [
            CookieConfig {
                secure: false,
                ..base.clone()
            },
            CookieConfig {
                path: "/x".into(),
                ..base.clone()
            },
            CookieConfig {
                domain: Some("example.com".into()),
                ..base.clone()
            },
        ];
        for config in cases {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn reading_the_token_rejects_garbage_and_duplicates() {
        let token = "abcdefghijklmnopqrstuvwxyz234567";
        let name = "narvik_session";
        let read = |header: &str| read_session_token(header, name).map(|t| t.as_str().to_owned());
        assert_eq!(
            read(&format!("narvik_session={token}")),
            Some(token.to_owned())
        );
        assert_eq!(
            read(&format!("a=1;narvik_session={token} ; b=2")),
            Some(token.to_owned())
        );
        assert_eq!(read(""), None);
        assert_eq!(read("narvik_session"), None);
        assert_eq!(read("narvik_session="), None);
        assert_eq!(read(&format!("narvik_session=\"{token}\"")), None);
        assert_eq!(
            read(&format!("narvik_session={token}; narvik_session={token}")),
            None
        );
        assert_eq!(read(&format!("xnarvik_session={token}")), None);
        assert_eq!(read(&format!("narvik_session={}", "a".repeat(4096))), None);
        assert_eq!(read("narvik_session=ééééééééééééééééééééééééééééééé"), None);
    }
}
