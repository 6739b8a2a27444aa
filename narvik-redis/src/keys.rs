//! Key names. Every key starts with the configured prefix; user ids are hex-encoded inside a
//! hash tag, so no byte of a user id (braces included) can change a key's shape or its slot.

use narvik_core::{Error, Result};

/// Number of expiry-queue buckets: spreads the queue over the nodes of a cluster.
pub(crate) const QUEUE_BUCKETS: usize = 16;

/// How long a queue bucket outlives its latest entry, waiting for
/// `delete_all_expired_sessions` (a bucket dying with its entries would leave nothing to find).
pub(crate) const QUEUE_GRACE_MS: i64 = 7 * 24 * 3600 * 1000;

/// The key names of one store (one prefix).
#[derive(Debug, Clone)]
pub(crate) struct KeySpace {
    prefix: String,
    record: String,
    index: String,
    queue: Vec<String>,
}

impl KeySpace {
    /// Rejects prefixes that would carry a hash tag of their own (`{`, `}`): the tags of the
    /// keys below must be the first braces of every key.
    pub(crate) fn new(prefix: &str) -> Result<Self> {
        if prefix.contains(['{', '}']) {
            return Err(Error::InvalidConfiguration(format!(
                "redis key prefix {prefix:?} must not contain `{{` or `}}` (hash tags are narvik's)"
            )));
        }
        Ok(Self {
            prefix: prefix.to_owned(),
            record: format!("{prefix}:s:"),
            index: format!("{prefix}:u:{{"),
            queue: (0..QUEUE_BUCKETS)
                .map(|bucket| format!("{prefix}:x:{{{bucket:x}}}"))
                .collect(),
        })
    }

    /// The configured prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `PREFIX:s:`: what comes before the session id in a record key (the prefix the
    /// invalidation listener tracks).
    pub(crate) fn record_prefix(&self) -> &str {
        &self.record
    }

    /// `PREFIX:s:SESSION_ID`: the record. Found by id alone, so it lives in the id's slot.
    pub(crate) fn record(&self, session_id: &str) -> String {
        let mut key = String::with_capacity(self.record.len() + session_id.len());
        key.push_str(&self.record);
        key.push_str(session_id);
        key
    }

    /// `PREFIX:u:{HEX(USER_ID)}`: the user's index, a sorted set of session ids scored by
    /// expiry (ms).
    pub(crate) fn index(&self, user_id: &str) -> String {
        let mut key = String::with_capacity(self.index.len() + 1 + 2 * user_id.len());
        key.push_str(&self.index);
        key.push_str(&hex::encode(user_id));
        key.push('}');
        key
    }

    /// `PREFIX:u:{`: what comes before the hex of the user id in an index key, for the
    /// single-node scripts that name the index of the user stored in a record
    /// (`index_of` in `scripts/lib.lua`).
    pub(crate) fn index_prefix(&self) -> &str {
        &self.index
    }

    /// What a queue member (see [`KeySpace::queue_member`]) names: `None` when it is not one of
    /// ours (it is then just dropped).
    pub(crate) fn parse_queue_member<'m>(&self, member: &'m str) -> Option<QueueEntry<'m>> {
        let (hex_user, session_id) = member.split_once(':')?;
        let mut user_id = vec![0_u8; hex_user.len() / 2];
        decode_lower_hex(hex_user.as_bytes(), &mut user_id)?;
        let user_id = String::from_utf8(user_id).ok()?;
        Some(QueueEntry {
            index: self.index(&user_id),
            user_id,
            session_id,
        })
    }

    /// `PREFIX:x:{N}`: the expiry-queue bucket of a session id.
    pub(crate) fn queue_bucket(&self, session_id: &str) -> &str {
        // FNV-1a: stable across processes and versions, unlike std's hasher.
        let hash = session_id
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            });
        &self.queue[(hash % QUEUE_BUCKETS as u64) as usize]
    }

    /// Every expiry-queue bucket.
    pub(crate) fn queue_buckets(&self) -> &[String] {
        &self.queue
    }

    /// A queue member: `HEX(USER_ID):SESSION_ID` (hex has no `:`, so it splits back).
    pub(crate) fn queue_member(&self, user_id: &str, session_id: &str) -> String {
        let mut member = String::with_capacity(2 * user_id.len() + 1 + session_id.len());
        member.push_str(&hex::encode(user_id));
        member.push(':');
        member.push_str(session_id);
        member
    }
}

/// One expiry-queue member, parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct QueueEntry<'m> {
    /// The user's index key.
    pub(crate) index: String,
    /// The user id.
    pub(crate) user_id: String,
    /// The session id.
    pub(crate) session_id: &'m str,
}

/// Decodes lowercase hex (as `hex::encode` writes it) into `out`; `None` for anything else,
/// capitals included, so that a member or a header field has exactly one spelling.
pub(crate) fn decode_lower_hex(digits: &[u8], out: &mut [u8]) -> Option<()> {
    if !digits
        .iter()
        .all(|digit| matches!(digit, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    hex::decode_to_slice(digits, out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_cannot_shape_keys() {
        let keys = KeySpace::new("app").expect("valid prefix");
        assert_eq!(keys.index("{x}"), "app:u:{7b787d}");
        assert_ne!(keys.index("a%"), keys.index("ab"));
        assert_eq!(keys.record("ab12"), "app:s:ab12");
        assert_eq!(keys.index_prefix(), "app:u:{");
        assert_eq!(keys.record_prefix(), "app:s:");
        for (user, id) in [
            ("{x}:y", "id:1"),
            ("", "{}"),
            ("a\0b", "x\0y"),
            ("İ", " id\t"),
        ] {
            let member = keys.queue_member(user, id);
            assert_eq!(
                keys.parse_queue_member(&member),
                Some(QueueEntry {
                    index: keys.index(user),
                    user_id: user.to_owned(),
                    session_id: id,
                })
            );
        }
        // Not hex, odd length, capitals, not UTF-8, no separator: not ours.
        for member in ["zz:id", "abc:id", "AB:id", "ff:id", "6162"] {
            assert_eq!(keys.parse_queue_member(member), None, "{member}");
        }
    }

    #[test]
    fn prefixes_with_braces_are_rejected() {
        assert!(KeySpace::new("a{b}").is_err());
        assert!(KeySpace::new("").is_ok());
    }

    #[test]
    fn queue_buckets_spread() {
        let keys = KeySpace::new("p").expect("valid prefix");
        let used: std::collections::HashSet<&str> = (0..200)
            .map(|n| keys.queue_bucket(&format!("{n:064x}")))
            .collect();
        assert_eq!(used.len(), QUEUE_BUCKETS);
    }
}
