//! Reading cookies back from a request's `Cookie` header, as RFC 6265bis reads what browsers
//! send.

use crate::token::SessionToken;

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
