//! Choosing the session store by a URL-like spec (`--store` / `NARVIK_DEMO_STORE`).
//!
//! `memory` is built in. Each database store is a cargo feature of this crate (`postgres`,
//! `redis`, `mongo`), so the default build stays small:
//! `cargo run -p narvik-demo --features postgres -- --store postgres://localhost/app`.

use std::sync::Arc;

use narvik_core::SessionStore;

use crate::DemoError;

/// The store the demo uses when none is named.
pub const DEFAULT_STORE: &str = "memory";

/// Opens the store named by `spec`: `memory` (or `memory://`), or a database URL whose store
/// was compiled in. The database stores create their table or indexes if missing.
///
/// No store takes a clock: the engine hands its `now` down to listing and purge, so the
/// engine's clock is the deployment's one clock.
pub async fn open_store(spec: &str) -> Result<Arc<dyn SessionStore>, DemoError> {
    let spec = spec.trim();
    let scheme = spec
        .split_once("://")
        .map_or(spec, |(scheme, _)| scheme)
        .to_ascii_lowercase();
    match scheme.as_str() {
        "memory" | "" => Ok(Arc::new(narvik_memory::MemoryStore::new())),
        "postgres" | "postgresql" => postgres(spec).await,
        "redis" | "rediss" => redis(spec).await,
        "mongodb" | "mongodb+srv" => mongo(spec).await,
        // Never echo more than a plain scheme: a database URL may hold a password.
        _ => {
            let plain = scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            let shown = if plain {
                scheme.as_str()
            } else {
                "(not a URL)"
            };
            Err(format!(
                "unknown store {shown:?}: use `memory` or a postgres://, redis:// or mongodb:// URL"
            )
            .into())
        }
    }
}

#[cfg(feature = "postgres")]
async fn postgres(url: &str) -> Result<Arc<dyn SessionStore>, DemoError> {
    use narvik_postgres::PostgresStore;
    // The store's own pool: connect and acquire bounded at 2 s, not sqlx's 30 s.
    let store = PostgresStore::connect(url).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_: &str) -> Result<Arc<dyn SessionStore>, DemoError> {
    Err(not_built_in("postgres"))
}

#[cfg(feature = "redis")]
async fn redis(url: &str) -> Result<Arc<dyn SessionStore>, DemoError> {
    Ok(Arc::new(narvik_redis::RedisStore::connect(url).await?))
}

#[cfg(not(feature = "redis"))]
async fn redis(_: &str) -> Result<Arc<dyn SessionStore>, DemoError> {
    Err(not_built_in("redis"))
}

#[cfg(feature = "mongo")]
async fn mongo(uri: &str) -> Result<Arc<dyn SessionStore>, DemoError> {
    use narvik_mongo::{MongoStore, MongoStoreConfig};
    let store = MongoStore::connect(uri, &MongoStoreConfig::default()).await?;
    store.ensure_indexes().await?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "mongo"))]
async fn mongo(_: &str) -> Result<Arc<dyn SessionStore>, DemoError> {
    Err(not_built_in("mongo"))
}

#[cfg(not(all(feature = "postgres", feature = "redis", feature = "mongo")))]
fn not_built_in(feature: &str) -> DemoError {
    format!("this build has no {feature} store: run with `cargo run -p narvik-demo --features {feature} -- --store URL`").into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_is_built_in_and_urls_never_echo_their_password() {
        assert!(open_store("memory").await.is_ok());
        assert!(open_store("memory://").await.is_ok());
        for spec in ["ftp://u:secret@host", "u:secret@host"] {
            let error = open_store(spec).await.err().expect("refused");
            assert!(!error.to_string().contains("secret"), "{error}");
        }
    }
}
