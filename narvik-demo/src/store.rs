//! Choosing the session store by a URL-like spec (`--store` / `NARVIK_DEMO_STORE`).
//!
//! `memory` is built in. The database stores are separate crates; each one gets an arm here
//! (a URL scheme and the adapter's connect call) once it is wired into the demo.

use std::sync::Arc;

use narvik_core::{Clock, SessionStore};

use crate::DemoError;

/// The store the demo uses when none is named.
pub const DEFAULT_STORE: &str = "memory";

/// Opens the store named by `spec`: `memory` (or `memory://`), or a database URL.
pub async fn open_store(
    spec: &str,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn SessionStore>, DemoError> {
    let spec = spec.trim();
    let scheme = spec.split_once("://").map_or(spec, |(scheme, _)| scheme);
    match scheme.to_ascii_lowercase().as_str() {
        "memory" | "" => Ok(Arc::new(narvik_memory::MemoryStore::with_clock(clock))),
        "postgres" | "postgresql" | "redis" | "rediss" | "redis+cluster" | "mongodb"
        | "mongodb+srv" => Err(format!(
            "the {scheme} store is not wired into the demo yet; run with --store memory"
        )
        .into()),
        // Never echo more than a plain scheme: a database URL may hold a password.
        _ => {
            let plain = scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            let shown = if plain { scheme } else { "(not a URL)" };
            Err(format!(
                "unknown store {shown:?}: use `memory` or a postgres://, redis:// or mongodb:// URL"
            )
            .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_is_built_in_and_urls_never_echo_their_password() {
        let clock: Arc<dyn Clock> = Arc::new(narvik_core::SystemClock);
        assert!(open_store("memory", clock.clone()).await.is_ok());
        assert!(open_store("memory://", clock.clone()).await.is_ok());
        for spec in [
            "postgres://u:secret@db/x",
            "ftp://u:secret@host",
            "u:secret@host",
        ] {
            let error = open_store(spec, clock.clone())
                .await
                .err()
                .expect("refused");
            assert!(!error.to_string().contains("secret"), "{error}");
        }
    }
}
