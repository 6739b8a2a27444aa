//! The demo's user directory: a few seeded users whose passwords are hashed with Argon2id at
//! start-up and checked against the hash at sign-in.

use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::password_hash::PasswordHasher;
use argon2::{Algorithm, Argon2, Block, Params, Version};

/// A seeded user: the login name, the name shown on pages, and the password printed at start-up.
#[derive(Debug, Clone, Copy)]
pub struct SeedUser {
    /// The login name, also the narvik user id.
    pub username: &'static str,
    /// The name the pages greet with.
    pub display_name: &'static str,
    /// The demo password (printed at start-up; this is a demo).
    pub password: &'static str,
}

/// The users every demo starts with.
pub const SEED_USERS: &[SeedUser] = &[
    SeedUser {
        username: "alice",
        display_name: "Alice",
        password: "wonderland-rabbit",
    },
    SeedUser {
        username: "bob",
        display_name: "Bob",
        password: "builder-of-things",
    },
    SeedUser {
        username: "carol",
        display_name: "Carol",
        password: "singing-in-snow",
    },
];

/// The working memory of one password check with the parameters the demo hashes with
/// (Argon2's defaults: `m_cost` = 19 MiB).
pub const ARGON2_MEMORY_BYTES: usize = Params::DEFAULT_M_COST as usize * Block::SIZE;

struct User {
    username: String,
    display_name: String,
    password_hash: String,
}

/// The users and their Argon2id hashes (never the passwords themselves).
pub struct Users {
    users: Vec<User>,
    /// A hash checked when the username is unknown, so that a wrong name costs as long as a
    /// wrong password and response times do not reveal which names exist.
    decoy_hash: String,
}

/// Hashing failed (the OS random source for the salt, or the hasher itself).
#[derive(Debug)]
pub struct HashError(String);

impl std::fmt::Display for HashError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "password hashing failed: {}", self.0)
    }
}

impl std::error::Error for HashError {}

fn hash(password: &str, params: &Params) -> Result<String, HashError> {
    Argon2::new(Algorithm::Argon2id, Version::default(), params.clone())
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| HashError(error.to_string()))
}

impl Users {
    /// Hashes the seed users' passwords with Argon2id (the crate's default parameters).
    pub fn seeded(seeds: &[SeedUser]) -> Result<Self, HashError> {
        Self::seeded_with(seeds, &Params::default())
    }

    /// Hashes the seed users' passwords with Argon2id and these parameters. The checks at
    /// sign-in read the parameters from each stored hash, so their memory is `params.m_cost()`
    /// KiB.
    pub fn seeded_with(seeds: &[SeedUser], params: &Params) -> Result<Self, HashError> {
        let users = seeds
            .iter()
            .map(|seed| {
                Ok(User {
                    username: seed.username.to_owned(),
                    display_name: seed.display_name.to_owned(),
                    password_hash: hash(seed.password, params)?,
                })
            })
            .collect::<Result<_, HashError>>()?;
        Ok(Self {
            users,
            // The same parameters, so that an unknown name costs what a known one does.
            decoy_hash: hash("decoy password that matches no one", params)?,
        })
    }

    /// The display name of a user, if the user exists.
    pub fn display_name(&self, username: &str) -> Option<&str> {
        self.users
            .iter()
            .find(|user| user.username == username)
            .map(|user| user.display_name.as_str())
    }

    /// Whether `password` is the password of `username`, computed in `memory`. Slow on purpose
    /// (Argon2): call it off the async executor, and only with memory handed out under the
    /// sign-in bound, so that the number of Argon2 working areas never exceeds the bound.
    pub fn verify(&self, username: &str, password: &str, memory: &mut Argon2Memory) -> bool {
        let user = self.users.iter().find(|user| user.username == username);
        let stored = user.map_or(self.decoy_hash.as_str(), |user| user.password_hash.as_str());
        let matches = matches_hash(password.as_bytes(), stored, memory).unwrap_or(false);
        matches && user.is_some()
    }
}

/// The working memory of one Argon2 computation (`m_cost` KiB: 19 MiB with the default
/// parameters), kept so that it is allocated once and reused rather than allocated per
/// sign-in: the sign-in bound hands out at most one per permit, so the process never holds
/// more of them than there are permits.
#[derive(Default)]
pub struct Argon2Memory {
    blocks: Vec<Block>,
}

impl std::fmt::Debug for Argon2Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Argon2Memory")
            .field("kib", &self.blocks.len())
            .finish()
    }
}

impl Argon2Memory {
    /// Bytes this memory holds now (0 until its first use).
    pub fn bytes(&self) -> usize {
        self.blocks.len() * Block::SIZE
    }

    /// `count` blocks, allocated on first use (exactly, without the doubling of `Vec` growth).
    fn blocks(&mut self, count: usize) -> &mut [Block] {
        if self.blocks.len() < count {
            self.blocks = vec![Block::new(); count];
        }
        &mut self.blocks[..count]
    }
}

/// Recomputes the PHC-encoded `stored` hash for `password` in `memory` and compares the
/// outputs in constant time. `None` when the stored hash cannot be read.
fn matches_hash(password: &[u8], stored: &str, memory: &mut Argon2Memory) -> Option<bool> {
    let hash = PasswordHash::new(stored).ok()?;
    let algorithm = Algorithm::new(hash.algorithm.as_str()).ok()?;
    let version = match hash.version {
        Some(version) => Version::try_from(version).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(&hash).ok()?;
    let (salt, expected) = (hash.salt?, hash.hash?);
    let mut buffer = [0u8; Output::MAX_LENGTH];
    let computed = buffer.get_mut(..expected.len())?;
    let blocks = memory.blocks(params.block_count());
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password, &salt, computed, blocks)
        .ok()?;
    // `Output`'s equality is constant-time.
    Some(Output::new(computed).ok()? == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_stored_as_argon2id_hashes_and_verified() {
        let users = Users::seeded(&SEED_USERS[..1]).expect("hashing");
        assert!(users.users[0].password_hash.starts_with("$argon2id$"));
        assert!(!users.users[0].password_hash.contains("wonderland"));
        let mut memory = Argon2Memory::default();
        assert_eq!(
            memory.bytes(),
            0,
            "nothing allocated before the first check"
        );
        assert!(users.verify("alice", "wonderland-rabbit", &mut memory));
        assert_eq!(memory.bytes(), ARGON2_MEMORY_BYTES);
        assert_eq!(ARGON2_MEMORY_BYTES, 19 * 1024 * 1024);
        assert!(!users.verify("alice", "wonderland-rabbit ", &mut memory));
        assert!(!users.verify("alice", "", &mut memory));
        assert!(!users.verify("mallory", "wonderland-rabbit", &mut memory));
        assert!(!users.verify("mallory", "decoy password that matches no one", &mut memory));
        assert_eq!(memory.bytes(), ARGON2_MEMORY_BYTES, "reused, never grown");
        assert_eq!(users.display_name("alice"), Some("Alice"));
    }
}
