//! The settings of the session cookie, and the checks that keep them to what a browser will
//! store.

use time::Duration;

use super::{CookiePrefix, SameSite, DEFAULT_COOKIE_NAME};
use crate::error::{Error, Result};
use crate::token::TOKEN_LENGTH;

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
}
