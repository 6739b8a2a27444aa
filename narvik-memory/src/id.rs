//! Session ids as the shards keep them: the 32 raw bytes of an id of the engine's shape
//! (lowercase hex SHA-256, 64 characters), the text itself for any other id.
//!
//! The engine only ever makes canonical ids, so they take the compact path; any other string a
//! caller saves (the conformance suite saves many) is kept byte for byte, flagged as text. The two forms never meet: decoding is exact in both directions (64 lowercase
//! hex digits and nothing else), so `"AB…"`, `"ab… "` or a 63-digit id stay text ids, distinct
//! from every canonical one.

/// Characters in a canonical session id (hex of a SHA-256 digest).
const HEX_ID_LEN: usize = 64;

/// A session id, sorted by the form a shard keeps it in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Id<'a> {
    /// 64 lowercase hex digits, decoded.
    Hex([u8; 32]),
    /// Anything else, as given.
    Text(&'a str),
}

impl<'a> Id<'a> {
    /// The form `id` is kept in.
    pub(crate) fn of(id: &'a str) -> Self {
        decode_hex(id).map_or(Id::Text(id), Id::Hex)
    }
}

/// The digest behind a canonical id, or `None` for any other string.
///
/// Branch-free over the digits (a table look-up each, their flags or-ed together): hex digits
/// of a random digest are letters or numbers at random, which a branch per digit would guess
/// wrong half the time, on every lookup.
fn decode_hex(id: &str) -> Option<[u8; 32]> {
    let bytes = id.as_bytes();
    if bytes.len() != HEX_ID_LEN {
        return None;
    }
    let mut digest = [0u8; 32];
    let mut invalid = 0u8;
    for (byte, pair) in digest.iter_mut().zip(bytes.chunks_exact(2)) {
        let (high, low) = (NIBBLES[usize::from(pair[0])], NIBBLES[usize::from(pair[1])]);
        invalid |= high | low;
        *byte = (high << 4) | (low & 0x0f);
    }
    (invalid & INVALID == 0).then_some(digest)
}

/// Marks a byte that is not a lowercase hex digit in [`NIBBLES`].
const INVALID: u8 = 0x80;

/// The value of each lowercase hex digit; [`INVALID`] for every other byte (upper case too: an
/// upper-case id is another id, and must not collide with this one).
const NIBBLES: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut digit = 0;
    while digit < 16 {
        table[HEX_DIGITS[digit] as usize] = digit as u8;
        digit += 1;
    }
    table
};

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The canonical id of a digest: lowercase hex, as `narvik_core::token::session_id_from_token`
/// writes it.
pub(crate) fn encode_hex(digest: &[u8; 32]) -> String {
    let mut hex = String::with_capacity(HEX_ID_LEN);
    for byte in digest {
        hex.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use narvik_core::token::session_id_from_token;

    #[test]
    fn engine_ids_decode_and_encode_back_exactly() {
        for token in ["abc", "abcdefghijklmnopqrstuvwxyz234567", ""] {
            let id = session_id_from_token(token);
            let Id::Hex(digest) = Id::of(&id) else {
                panic!("{id} is canonical");
            };
            assert_eq!(encode_hex(&digest), id);
        }
    }

    #[test]
    fn every_other_string_stays_text() {
        let canonical = session_id_from_token("abc");
        let upper = canonical.to_uppercase();
        let spaced = format!("{canonical} ");
        let short = &canonical[..63];
        let long = format!("{canonical}0");
        let mut wrong_digit = canonical.clone().into_bytes();
        wrong_digit[10] = b'g';
        let wrong_digit = String::from_utf8(wrong_digit).expect("ASCII");
        // 64 bytes, but not 64 characters of hex: a multi-byte character inside.
        let multibyte = format!("{}é{}", &canonical[..31], &canonical[..31]);
        assert_eq!(multibyte.len(), 64);
        for id in [
            upper.as_str(),
            spaced.as_str(),
            short,
            long.as_str(),
            wrong_digit.as_str(),
            multibyte.as_str(),
            "",
            "s1",
        ] {
            assert!(matches!(Id::of(id), Id::Text(text) if text == id), "{id:?}");
        }
    }
}
