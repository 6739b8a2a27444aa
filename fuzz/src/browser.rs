// Over 400 lines in one file: a reference model written from RFC 6265bis in the RFC's order, to
// be read against it; narvik-core's and narvik-axum's tests include it whole with `#[path]`.
//! A small reference model of how a browser handles cookies (RFC 6265bis: section 5.6 parsing a
//! `Set-Cookie` string, 5.7 the storage model with the `__Secure-` / `__Host-` prefix rules,
//! 5.8.3 writing the `Cookie` header), written from the RFC without looking at narvik's parser,
//! so the two can be compared.
//!
//! Standard library only: the fuzz crate and narvik's property tests (narvik-core and
//! narvik-axum, through `#[path]`) compile this one file, so fuzzing and the stable tests check
//! against the same model.
//!
//! Left out, as they do not bear on which name a server reads: `Expires` (only `Max-Age`
//! counts), the public suffix list, IP-address hosts, the 400-day cap, eviction, `SameSite`
//! enforcement on requests, and non-HTTP APIs.

#![allow(dead_code)]

/// SP and HTAB: the only characters RFC 6265bis trims from names and values.
pub fn is_wsp(c: char) -> bool {
    c == ' ' || c == '\t'
}

fn strip_wsp(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut start = 0;
    while start < chars.len() && is_wsp(chars[start]) {
        start += 1;
    }
    let mut end = chars.len();
    while end > start && is_wsp(chars[end - 1]) {
        end -= 1;
    }
    chars[start..end].iter().collect()
}

/// Characters that make a browser ignore a `Set-Cookie` string: %x00-08 / %x0A-1F / %x7F
/// (the controls but HTAB).
pub fn is_forbidden_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{a}'..='\u{1f}' | '\u{7f}')
}

fn starts_with_ignore_ascii_case(text: &str, prefix: &str) -> bool {
    text.len() >= prefix.len()
        && text.is_char_boundary(prefix.len())
        && text[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Whether a browser binds `name` by the `__Host-` rules (matched in any case).
pub fn has_host_prefix(name: &str) -> bool {
    starts_with_ignore_ascii_case(name, "__Host-")
}

/// Whether a browser binds `name` by the `__Secure-` rules (matched in any case).
pub fn has_secure_prefix(name: &str) -> bool {
    starts_with_ignore_ascii_case(name, "__Secure-")
}

/// The pairs of a `Cookie` header, read one character at a time with the per-pair rules of
/// section 5.6 (split at the first `=`, no `=` means an empty name, trim SP and HTAB only),
/// pairs separated by `;`. A pair with an empty name and an empty value carries nothing and is
/// left out.
pub fn read_cookie_header(header: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut before_equals = String::new();
    let mut after_equals = String::new();
    let mut seen_equals = false;
    let mut finish = |before: &mut String, after: &mut String, seen: &mut bool| {
        let (name, value) = if *seen {
            (strip_wsp(before), strip_wsp(after))
        } else {
            (String::new(), strip_wsp(before))
        };
        if !(name.is_empty() && value.is_empty()) {
            pairs.push((name, value));
        }
        before.clear();
        after.clear();
        *seen = false;
    };
    for c in header.chars() {
        match c {
            ';' => finish(&mut before_equals, &mut after_equals, &mut seen_equals),
            '=' if !seen_equals => seen_equals = true,
            _ if seen_equals => after_equals.push(c),
            _ => before_equals.push(c),
        }
    }
    finish(&mut before_equals, &mut after_equals, &mut seen_equals);
    pairs
}

/// Where a `Set-Cookie` comes from, or where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The host, lower case.
    pub host: String,
    /// Whether the scheme is `https`.
    pub secure: bool,
}

impl Origin {
    /// An origin on `host` (lower-cased), over `https` when `secure`.
    pub fn new(host: &str, secure: bool) -> Self {
        Self {
            host: host.to_ascii_lowercase(),
            secure,
        }
    }
}

/// The attributes of one `Set-Cookie` string that the model acts on (section 5.6.1-5.6.7; the
/// last occurrence of an attribute wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    /// `Max-Age`, when present and well formed (saturated to the `i64` range).
    pub max_age: Option<i64>,
    /// `Domain`, leading `.` removed, lower case; `None` when absent or empty.
    pub domain: Option<String>,
    /// `Path`, when present and starting with `/`.
    pub path: Option<String>,
    /// A `Path` attribute is present, valid or not (an invalid one stands for the default
    /// path, and still counts for the `__Host-` rule).
    pub path_attribute: bool,
    /// `Secure` is present.
    pub secure: bool,
    /// `HttpOnly` is present.
    pub http_only: bool,
    /// `SameSite`, as written (case kept).
    pub same_site: Option<String>,
}

/// A parsed `Set-Cookie` string: name, value and attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetCookie {
    /// The cookie name (may be empty).
    pub name: String,
    /// The cookie value.
    pub value: String,
    /// The attributes.
    pub attributes: Attributes,
}

/// Section 5.6: `None` when the browser ignores the string entirely.
pub fn parse_set_cookie(set_cookie: &str) -> Option<SetCookie> {
    if set_cookie.chars().any(is_forbidden_control) {
        return None;
    }
    let (name_value, attributes) = match set_cookie.find(';') {
        Some(at) => (&set_cookie[..at], &set_cookie[at..]),
        None => (set_cookie, ""),
    };
    let (name, value) = match name_value.find('=') {
        Some(at) => (
            strip_wsp(&name_value[..at]),
            strip_wsp(&name_value[at + 1..]),
        ),
        None => (String::new(), strip_wsp(name_value)),
    };
    if name.len() + value.len() > 4096 {
        return None;
    }
    let mut parsed = Attributes::default();
    // The first character is the ';' that ends the name-value pair.
    for av in attributes.split(';').skip(1) {
        let (key, raw) = match av.find('=') {
            Some(at) => (strip_wsp(&av[..at]), strip_wsp(&av[at + 1..])),
            None => (strip_wsp(av), String::new()),
        };
        if raw.len() > 1024 {
            continue;
        }
        match key.to_ascii_lowercase().as_str() {
            "max-age" => {
                let mut chars = raw.chars();
                let negative = raw.starts_with('-');
                if negative {
                    chars.next();
                }
                let digits: String = chars.collect();
                if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
                    continue;
                }
                let mut seconds: i64 = 0;
                for digit in digits.bytes() {
                    seconds = seconds
                        .saturating_mul(10)
                        .saturating_add(i64::from(digit - b'0'));
                }
                parsed.max_age = Some(if negative { -seconds } else { seconds });
            }
            "domain" => {
                if raw.is_empty() {
                    continue;
                }
                let domain = raw.strip_prefix('.').unwrap_or(&raw).to_ascii_lowercase();
                parsed.domain = Some(domain);
            }
            "path" => {
                parsed.path_attribute = true;
                parsed.path = raw.starts_with('/').then_some(raw);
            }
            "secure" => parsed.secure = true,
            "httponly" => parsed.http_only = true,
            "samesite" => parsed.same_site = Some(raw),
            _ => {}
        }
    }
    Some(SetCookie {
        name,
        value,
        attributes: parsed,
    })
}

/// A cookie in the jar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCookie {
    /// The name (may be empty: a nameless cookie).
    pub name: String,
    /// The value.
    pub value: String,
    /// The domain it belongs to.
    pub domain: String,
    /// Sent to `domain` only, not to its subdomains.
    pub host_only: bool,
    /// The path.
    pub path: String,
    /// Sent over https only.
    pub secure: bool,
    /// The origin that set it.
    pub set_by: Origin,
    /// Order of creation, for the `Cookie` header's order.
    pub created: u64,
}

/// Why the jar refused a `Set-Cookie`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Section 5.6 ignored the string (a control character, over 4096 bytes).
    Unparsable,
    /// Empty name and empty value.
    Empty,
    /// A nameless cookie whose value begins with a prefix.
    NamelessPrefix,
    /// The request host does not domain-match `Domain`.
    DomainMismatch,
    /// `Secure` set from a plain-http origin.
    SecureFromInsecure,
    /// A plain-http origin would shadow a secure cookie.
    ShadowsSecure,
    /// `__Secure-` without `Secure`.
    SecurePrefix,
    /// `__Host-` without `Secure`, host-only and `Path=/`.
    HostPrefix,
    /// `SameSite=None` without `Secure`.
    SameSiteNoneInsecure,
}

/// `host` domain-matches `domain` (section 5.1.3, hosts are names, not IP addresses here).
pub fn domain_matches(host: &str, domain: &str) -> bool {
    host == domain
        || (host.len() > domain.len()
            && host.ends_with(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.')
}

/// `request_path` path-matches `cookie_path` (section 5.1.4).
pub fn path_matches(request_path: &str, cookie_path: &str) -> bool {
    request_path == cookie_path
        || (request_path.starts_with(cookie_path)
            && (cookie_path.ends_with('/')
                || request_path.as_bytes().get(cookie_path.len()) == Some(&b'/')))
}

/// The default path of a request path (section 5.1.4).
pub fn default_path(request_path: &str) -> String {
    if !request_path.starts_with('/') {
        return "/".to_owned();
    }
    match request_path.rfind('/') {
        Some(0) | None => "/".to_owned(),
        Some(at) => request_path[..at].to_owned(),
    }
}

/// A browser's cookie jar.
#[derive(Debug, Clone, Default)]
pub struct Jar {
    cookies: Vec<StoredCookie>,
    clock: u64,
}

impl Jar {
    /// An empty jar.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cookies held.
    pub fn cookies(&self) -> &[StoredCookie] {
        &self.cookies
    }

    /// Section 5.7: the browser receives `set_cookie` in a response from `origin` to a request
    /// for `request_path`. `Ok(true)` when a cookie is stored, `Ok(false)` when the string
    /// deletes one (or expires at once), `Err` when it is ignored.
    pub fn receive(
        &mut self,
        origin: &Origin,
        request_path: &str,
        set_cookie: &str,
    ) -> Result<bool, Refusal> {
        let parsed = parse_set_cookie(set_cookie).ok_or(Refusal::Unparsable)?;
        let attributes = &parsed.attributes;
        if parsed.name.is_empty() {
            if parsed.value.is_empty() {
                return Err(Refusal::Empty);
            }
            if has_secure_prefix(&parsed.value) || has_host_prefix(&parsed.value) {
                return Err(Refusal::NamelessPrefix);
            }
        }
        let (domain, host_only) = match attributes.domain.as_ref().filter(|d| !d.is_empty()) {
            Some(domain) => {
                if !domain_matches(&origin.host, domain) {
                    return Err(Refusal::DomainMismatch);
                }
                (domain.clone(), false)
            }
            None => (origin.host.clone(), true),
        };
        let path = attributes
            .path
            .clone()
            .unwrap_or_else(|| default_path(request_path));
        if attributes.secure && !origin.secure {
            return Err(Refusal::SecureFromInsecure);
        }
        if attributes
            .same_site
            .as_deref()
            .is_some_and(|same_site| same_site.eq_ignore_ascii_case("none"))
            && !attributes.secure
        {
            return Err(Refusal::SameSiteNoneInsecure);
        }
        if !attributes.secure && !origin.secure {
            let shadows = self.cookies.iter().any(|old| {
                old.name == parsed.name
                    && old.secure
                    && (domain_matches(&old.domain, &domain)
                        || domain_matches(&domain, &old.domain))
                    && path_matches(&path, &old.path)
            });
            if shadows {
                return Err(Refusal::ShadowsSecure);
            }
        }
        if has_secure_prefix(&parsed.name) && !attributes.secure {
            return Err(Refusal::SecurePrefix);
        }
        if has_host_prefix(&parsed.name)
            && !(attributes.secure && host_only && attributes.path_attribute && path == "/")
        {
            return Err(Refusal::HostPrefix);
        }
        let same = |old: &StoredCookie| {
            old.name == parsed.name
                && old.domain == domain
                && old.host_only == host_only
                && old.path == path
        };
        let previous = self.cookies.iter().position(same);
        let created = match previous {
            Some(at) => self.cookies.remove(at).created,
            None => {
                self.clock += 1;
                self.clock
            }
        };
        if attributes.max_age.is_some_and(|seconds| seconds <= 0) {
            return Ok(false);
        }
        self.cookies.push(StoredCookie {
            name: parsed.name,
            value: parsed.value,
            domain,
            host_only,
            path,
            secure: attributes.secure,
            set_by: origin.clone(),
            created,
        });
        Ok(true)
    }

    /// The cookies a request to `origin` for `request_path` carries, in the order of section
    /// 5.8.3 (longer paths first, then older first).
    pub fn cookies_for(&self, origin: &Origin, request_path: &str) -> Vec<&StoredCookie> {
        let mut sent: Vec<&StoredCookie> = self
            .cookies
            .iter()
            .filter(|cookie| {
                let host_ok = if cookie.host_only {
                    origin.host == cookie.domain
                } else {
                    domain_matches(&origin.host, &cookie.domain)
                };
                host_ok
                    && path_matches(request_path, &cookie.path)
                    && (origin.secure || !cookie.secure)
            })
            .collect();
        sent.sort_by(|a, b| {
            b.path
                .len()
                .cmp(&a.path.len())
                .then(a.created.cmp(&b.created))
        });
        sent
    }

    /// The `Cookie` header a request to `origin` for `request_path` carries (section 5.8.3): a
    /// nameless cookie is written as its value alone.
    pub fn cookie_header(&self, origin: &Origin, request_path: &str) -> String {
        self.cookies_for(origin, request_path)
            .iter()
            .map(|cookie| serialize_pair(&cookie.name, &cookie.value))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// One pair as a browser writes it in a `Cookie` header.
pub fn serialize_pair(name: &str, value: &str) -> String {
    if name.is_empty() {
        value.to_owned()
    } else {
        format!("{name}={value}")
    }
}

/// Every character a name could be confused with if a parser trimmed more than SP and HTAB:
/// all of `char::is_whitespace`, all controls (C0, DEL, C1), and the invisible format
/// characters that some trims strip (U+FEFF, U+200B-U+200D, U+2060, U+180E).
pub fn look_alike_padding() -> Vec<char> {
    let mut chars: Vec<char> = (0..=u32::from(char::MAX))
        .filter_map(char::from_u32)
        .filter(|c| c.is_whitespace() || c.is_control())
        .collect();
    for extra in [
        '\u{feff}', '\u{200b}', '\u{200c}', '\u{200d}', '\u{2060}', '\u{180e}',
    ] {
        if !chars.contains(&extra) {
            chars.push(extra);
        }
    }
    chars
}
