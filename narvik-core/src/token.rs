//! Session tokens: 160 random bits in lower-case base32, and the session id derived from them.

use rand::{rngs::OsRng, TryRngCore};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Random bytes in a token (160 bits, above the 128 of ASVS V7).
const TOKEN_BYTES: usize = 20;
/// Characters in an encoded token: 160 bits / 5 bits per character.
pub const TOKEN_LENGTH: usize = 32;
const BASE32_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The secret a client holds (in its cookie) to prove it owns a session.
///
/// Its `Debug` output is redacted and it has no `Display`, so a token cannot reach a log by
/// accident; [`SessionToken::as_str`] is the one deliberate way to read it.
///
/// ```
/// let token = narvik_core::SessionToken::generate().unwrap();
/// assert_eq!(token.as_str().len(), 32);
/// assert_eq!(format!("{token:?}"), "SessionToken(<redacted>)");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// A fresh token: 20 bytes from the operating system's CSPRNG, base32, lower case, no
    /// padding. Fails only when the OS cannot supply randomness.
    pub fn generate() -> Result<Self> {
        let mut bytes = [0u8; TOKEN_BYTES];
        OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|error| Error::unavailable(format!("the OS random source failed: {error}")))?;
        Ok(Self(encode_base32_lower_no_padding(&bytes)))
    }

    /// Accepts a token that came from a client, if it has the shape of a narvik token.
    ///
    /// Returns `None` for anything else (wrong length, upper case, padding, non-ASCII, a 4 KiB
    /// blob), so that malformed input never reaches a store.
    pub fn parse(candidate: &str) -> Option<Self> {
        is_well_formed(candidate).then(|| Self(candidate.to_owned()))
    }

    /// The token itself, for the cookie value. Never log it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The session id this token stands for: lowercase hex SHA-256 of its UTF-8 bytes.
    pub fn session_id(&self) -> String {
        session_id_from_token(&self.0)
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// Whether `candidate` has the exact shape of a token: 32 characters of `a-z2-7`.
///
/// ```
/// use narvik_core::token::is_well_formed;
/// assert!(is_well_formed("abcdefghijklmnopqrstuvwxyz234567"));
/// assert!(!is_well_formed("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"));
/// assert!(!is_well_formed("abc"));
/// ```
pub fn is_well_formed(candidate: &str) -> bool {
    candidate.len() == TOKEN_LENGTH
        && candidate
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || (b'2'..=b'7').contains(&byte))
}

/// Lowercase hex SHA-256 of the token's UTF-8 bytes: the id a store sees. A leaked store yields
/// ids, never tokens.
pub fn session_id_from_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    // Into a buffer, then one allocation: `hex::encode` collects the 64 characters one `char`
    // at a time, which was 5% of a validation on the memory store.
    let mut text = [0u8; 64];
    // Neither fallback runs (64 bytes hold 32 bytes' hex, and hex is ASCII); they keep the
    // function free of panics.
    match hex::encode_to_slice(digest, &mut text) {
        Ok(()) => std::str::from_utf8(&text).map_or_else(|_| hex::encode(digest), str::to_owned),
        Err(_) => hex::encode(digest),
    }
}

/// RFC 4648 base32, lower-case alphabet, no padding (as the original's
/// `encodeBase32LowerCaseNoPadding`).
pub fn encode_base32_lower_no_padding(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u16 = 0;
    let mut bits = 0u32;
    for &byte in bytes {
        buffer = (buffer << 8) | u16::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(char::from(
                BASE32_ALPHABET[usize::from((buffer >> bits) & 0x1f)],
            ));
        }
        buffer &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(char::from(
            BASE32_ALPHABET[usize::from((buffer << (5 - bits)) & 0x1f)],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648_vectors_in_lower_case() {
        // RFC 4648 section 10, lower-cased, padding removed.
        let vectors = [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ];
        for (input, expected) in vectors {
            assert_eq!(encode_base32_lower_no_padding(input.as_bytes()), expected);
        }
    }

    #[test]
    fn twenty_bytes_encode_to_thirty_two_characters() {
        assert_eq!(
            encode_base32_lower_no_padding(&[0xff; 20]),
            "77777777777777777777777777777777"
        );
        assert_eq!(
            encode_base32_lower_no_padding(&[0; 20]),
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        );
    }

    #[test]
    fn session_id_is_sha256_hex_of_the_token() {
        // sha256("abc") from FIPS 180-2.
        assert_eq!(
            session_id_from_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn generated_tokens_are_well_formed_and_distinct() {
        let tokens: std::collections::HashSet<String> = (0..1000)
            .map(|_| {
                SessionToken::generate()
                    .expect("OS randomness")
                    .as_str()
                    .to_owned()
            })
            .collect();
        assert_eq!(tokens.len(), 1000);
        assert!(tokens.iter().all(|token| is_well_formed(token)));
    }

    #[test]
    fn malformed_candidates_are_rejected() {
        let valid = "abcdefghijklmnopqrstuvwxyz234567";
        assert!(SessionToken::parse(valid).is_some());
        let junk = "a".repeat(4096);
        let candidates = [
            "",
            &valid[..31],
            "abcdefghijklmnopqrstuvwxyz2345671",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567",
            "abcdefghijklmnopqrstuvwxyz23456=",
            "abcdefghijklmnopqrstuvwxyz23456é",
            "abcdefghijklmnopqrstuvwxyz234501",
            junk.as_str(),
        ];
        for candidate in candidates {
            assert!(SessionToken::parse(candidate).is_none(), "{candidate:?}");
        }
    }
}
