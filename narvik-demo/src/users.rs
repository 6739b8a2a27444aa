//! The demo's user directory: a few seeded users whose passwords are hashed with Argon2id at
//! start-up and checked against the hash at sign-in.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

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

fn hash(password: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| HashError(error.to_string()))
}

impl Users {
    /// Hashes the seed users' passwords with Argon2id (the crate's default parameters).
    pub fn seeded(seeds: &[SeedUser]) -> Result<Self, HashError> {
        let users = seeds
            .iter()
            .map(|seed| {
                Ok(User {
                    username: seed.username.to_owned(),
                    display_name: seed.display_name.to_owned(),
                    password_hash: hash(seed.password)?,
                })
            })
            .collect::<Result<_, HashError>>()?;
        Ok(Self {
            users,
            decoy_hash: hash("decoy password that matches no one")?,
        })
    }

    /// The display name of a user, if the user exists.
    pub fn display_name(&self, username: &str) -> Option<&str> {
        self.users
            .iter()
            .find(|user| user.username == username)
            .map(|user| user.display_name.as_str())
    }

    /// Whether `password` is the password of `username`. Slow on purpose (Argon2): call it off
    /// the async executor.
    pub fn verify(&self, username: &str, password: &str) -> bool {
        let user = self.users.iter().find(|user| user.username == username);
        let stored = user.map_or(self.decoy_hash.as_str(), |user| user.password_hash.as_str());
        let Ok(parsed) = PasswordHash::new(stored) else {
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        matches && user.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_stored_as_argon2id_hashes_and_verified() {
        let users = Users::seeded(&SEED_USERS[..1]).expect("hashing");
        assert!(users.users[0].password_hash.starts_with("$argon2id$"));
        assert!(!users.users[0].password_hash.contains("wonderland"));
        assert!(users.verify("alice", "wonderland-rabbit"));
        assert!(!users.verify("alice", "wonderland-rabbit "));
        assert!(!users.verify("alice", ""));
        assert!(!users.verify("mallory", "wonderland-rabbit"));
        assert!(!users.verify("mallory", "decoy password that matches no one"));
        assert_eq!(users.display_name("alice"), Some("Alice"));
    }
}
