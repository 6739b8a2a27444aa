//! The session cookie: its settings, its validation, its exact serialisation, and reading the
//! token back from a request's `Cookie` header.

use time::Duration;

use crate::error::{Error, Result};
use crate::token::SessionToken;

/// The default cookie name, as in the original Narvik.
pub const DEFAULT_COOKIE_NAME: &str = "narvik_session";
/// The prefix that makes browsers insist on `Secure`, `Path=/` and no `Domain`.
pub const HOST_PREFIX: &str = "__Host-";

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

/// How the session cookie is named and which attributes it carries.
///
/// The defaults are the original's: name `narvik_session`, `HttpOnly`, `Secure`, `Path=/`,
/// `SameSite=Lax`, `Max-Age` equal to the session lifetime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieConfig {
    /// The cookie name (without the `__Host-` prefix; see `host_prefix`).
    pub name: String,
    /// `Max-Age`; `None` means the session lifetime.
    pub max_age: Option<Duration>,
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
    /// Prefix the name with `__Host-`; requires `secure`, path `/` and no domain.
    pub host_prefix: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: DEFAULT_COOKIE_NAME.to_owned(),
            max_age: None,
            secure: true,
            http_only: true,
            domain: None,
            path: "/".to_owned(),
            same_site: SameSite::Lax,
            host_prefix: false,
        }
    }
}

impl CookieConfig {
    /// The name as it appears in headers, with the `__Host-` prefix when configured.
    pub fn full_name(&self) -> String {
        if self.host_prefix {
            format!("{HOST_PREFIX}{}", self.name)
        } else {
            self.name.clone()
        }
    }

    /// Checks that no name, domain or path can inject an attribute or a header line.
    pub fn validate(&self) -> Result<()> {
        let invalid = |message: String| Err(Error::InvalidConfiguration(message));
        if self.name.is_empty() || !self.name.bytes().all(is_token_byte) {
            return invalid(format!(
                "cookie name {:?} must be a non-empty RFC 6265 token (no separators, spaces or control characters)",
                self.name
            ));
        }
        if let Some(domain) = &self.domain {
            let valid = !domain.is_empty()
                && domain
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'.' || byte == b'-');
            if !valid {
                return invalid(format!(
                    "cookie domain {domain:?} may only contain letters, digits, '.' and '-'"
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
        if let Some(max_age) = self.max_age {
            if max_age.is_negative() {
                return invalid("cookie Max-Age must not be negative".to_owned());
            }
        }
        if self.host_prefix && (!self.secure || self.path != "/" || self.domain.is_some()) {
            return invalid("a __Host- cookie needs Secure, Path=/ and no Domain".to_owned());
        }
        if self.same_site == SameSite::None && !self.secure {
            return invalid("SameSite=None needs Secure (browsers reject it otherwise)".to_owned());
        }
        Ok(())
    }
}

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
    /// `Max-Age` in whole seconds.
    pub max_age_seconds: i64,
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
    pub(crate) fn new(config: &CookieConfig, value: String, max_age: Duration) -> Self {
        Self {
            name: config.full_name(),
            value,
            max_age_seconds: max_age.whole_seconds(),
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
    ///     max_age_seconds: 0,
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
        out.push_str(&format!("; Max-Age={}", self.max_age_seconds));
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

/// Finds the session token in a request's `Cookie` header.
///
/// Returns `None` when the cookie is missing, appears more than once (a sign of cookie
/// tossing: which one is real cannot be told), or does not hold a well-formed token.
///
/// ```
/// use narvik_core::cookie::read_session_token;
/// let header = "theme=dark; narvik_session=abcdefghijklmnopqrstuvwxyz234567";
/// assert!(read_session_token(header, "narvik_session").is_some());
/// assert!(read_session_token("narvik_session=x; narvik_session=y", "narvik_session").is_none());
/// ```
pub fn read_session_token(cookie_header: &str, cookie_name: &str) -> Option<SessionToken> {
    let mut found = None;
    for pair in cookie_header.split(';') {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        if name.trim() != cookie_name {
            continue;
        }
        if found.is_some() {
            return None;
        }
        found = Some(value.trim());
    }
    found.and_then(SessionToken::parse)
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
            host_prefix: true,
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
