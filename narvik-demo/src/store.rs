//! Choosing the session store by a URL-like spec (`--store` / `NARVIK_DEMO_STORE`).
//!
//! `memory` is built in. Each database store is a cargo feature of this crate (`postgres`,
//! `redis`, `mongo`, `sqlite`, `mysql`), so the default build stays small:
//! `cargo run -p narvik-demo --features postgres -- --store postgres://localhost/app`, or
//! `cargo run -p narvik-demo --features sqlite -- --store sqlite:demo.db`.

use std::sync::Arc;

use narvik_core::SessionStore;

use crate::DemoError;

/// The store the demo uses when none is named.
pub const DEFAULT_STORE: &str = "memory";

/// Opens the store named by `spec`: `memory` (or `memory://`), `sqlite:PATH`, or a database URL
/// whose store was compiled in. The database stores create their table or indexes if missing.
///
/// No store takes a clock: the engine hands its `now` down to listing and purge, so the
/// engine's clock is the deployment's one clock.
pub async fn open_store(spec: &str) -> Result<Arc<dyn SessionStore>, DemoError> {
    let spec = spec.trim();
    // The scheme is what comes before the first ':' (`sqlite:demo.db` has no `//`).
    let scheme = spec
        .split_once(':')
        .map_or(spec, |(scheme, _)| scheme)
        .to_ascii_lowercase();
    match scheme.as_str() {
        "memory" | "" => Ok(Arc::new(narvik_memory::MemoryStore::new())),
        "postgres" | "postgresql" => postgres(spec).await,
        "redis" | "rediss" => redis(spec).await,
        "mongodb" | "mongodb+srv" => mongo(spec).await,
        "sqlite" => sqlite(spec).await,
        "mysql" | "mariadb" => mysql(spec).await,
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
                "unknown store {shown:?}: use `memory`, `sqlite:PATH` or a postgres://, mysql://, redis:// or mongodb:// URL"
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

/// `sqlite:PATH` (also `sqlite://PATH`, and `sqlite::memory:` for a database that lives as long
/// as the process): the sessions survive a restart of the demo.
#[cfg(feature = "sqlite")]
async fn sqlite(spec: &str) -> Result<Arc<dyn SessionStore>, DemoError> {
    let path = spec.strip_prefix("sqlite:").unwrap_or(spec);
    let path = path.strip_prefix("//").unwrap_or(path);
    let store = narvik_sqlite::SqliteStore::open(path).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "sqlite"))]
async fn sqlite(_: &str) -> Result<Arc<dyn SessionStore>, DemoError> {
    Err(not_built_in("sqlite"))
}

/// `mysql://…` (MySQL or MariaDB), migrating its table at start-up.
#[cfg(feature = "mysql")]
async fn mysql(url: &str) -> Result<Arc<dyn SessionStore>, DemoError> {
    // `mariadb://` (in any case) is accepted as a name for the same protocol.
    let rest = url.split_once(':').map_or("", |(_, rest)| rest);
    let store = narvik_mysql::MySqlStore::connect(&format!("mysql:{rest}")).await?;
    store.migrate().await?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "mysql"))]
async fn mysql(_: &str) -> Result<Arc<dyn SessionStore>, DemoError> {
    Err(not_built_in("mysql"))
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
