//! Test servers and fresh stores for narvik-redis's tests.
//!
//! Single node: `NARVIK_TEST_REDIS_URL`; else (feature `containers`, Docker reachable) a
//! testcontainers Redis; else the local default 127.0.0.1:6379. Cluster:
//! `NARVIK_TEST_REDIS_CLUSTER_URLS` (scripts/test.sh starts a local one). Nothing found: the
//! test panics saying how to provide one; it never skips.
#![allow(dead_code)]

use narvik_redis::RedisStore;

/// Every test key starts with this, followed by a random per-store part.
pub const TEST_PREFIX_ROOT: &str = "narvik-redis-test";
const LOCAL_DEFAULT: &str = "redis://127.0.0.1:6379";

/// A random lowercase hex string (test namespaces and connection names).
pub fn random_hex() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The single-node server's URL.
pub async fn single_url() -> String {
    if let Ok(url) = std::env::var("NARVIK_TEST_REDIS_URL") {
        return url;
    }
    #[cfg(feature = "containers")]
    if let Some(url) = containers::url().await {
        return url;
    }
    if tokio::net::TcpStream::connect("127.0.0.1:6379")
        .await
        .is_ok()
    {
        return LOCAL_DEFAULT.to_owned();
    }
    panic!(
        "no Redis for narvik-redis's tests: set NARVIK_TEST_REDIS_URL, run scripts/test.sh \
         (starts or installs a local redis-server), enable the `containers` feature with a \
         Docker engine, or start redis-server on 127.0.0.1:6379"
    );
}

/// The cluster's node URLs.
pub fn cluster_urls() -> Vec<String> {
    let urls = std::env::var("NARVIK_TEST_REDIS_CLUSTER_URLS").unwrap_or_else(|_| {
        panic!(
            "no Redis Cluster for narvik-redis's cluster tests: run scripts/test.sh (it starts a \
             local 3-master cluster) or set NARVIK_TEST_REDIS_CLUSTER_URLS to comma-separated \
             redis:// node URLs"
        )
    });
    urls.split(',').map(str::trim).map(str::to_owned).collect()
}

/// A fresh prefix under [`TEST_PREFIX_ROOT`].
pub fn fresh_prefix() -> String {
    format!("{TEST_PREFIX_ROOT}:{}", random_hex())
}

/// A store on the single node, in its own key prefix.
pub async fn fresh_store() -> RedisStore {
    let url = single_url().await;
    RedisStore::builder()
        .prefix(fresh_prefix())
        .connect(url.as_str())
        .await
        .unwrap_or_else(|error| panic!("cannot connect to Redis at {url}: {error}"))
}

/// A store on the cluster, in its own key prefix.
#[cfg(feature = "cluster")]
pub async fn fresh_cluster_store() -> RedisStore {
    let urls = cluster_urls();
    RedisStore::builder()
        .prefix(fresh_prefix())
        .connect_cluster(urls.iter().map(String::as_str))
        .await
        .unwrap_or_else(|error| panic!("cannot connect to the Redis Cluster {urls:?}: {error}"))
}

/// A plain connection to one server, for inspecting and killing.
pub async fn admin(url: &str) -> narvik_redis::redis::aio::MultiplexedConnection {
    narvik_redis::redis::Client::open(url)
        .expect("valid URL")
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|error| panic!("cannot connect to Redis at {url}: {error}"))
}

#[cfg(feature = "containers")]
mod containers {
    use std::sync::OnceLock;

    use testcontainers_modules::redis::{Redis, REDIS_PORT};
    use testcontainers_modules::testcontainers::runners::AsyncRunner;
    use testcontainers_modules::testcontainers::ContainerAsync;

    /// Kept for the whole test binary (testcontainers' reaper removes it afterwards).
    static CONTAINER: OnceLock<ContainerAsync<Redis>> = OnceLock::new();
    static URL: tokio::sync::OnceCell<Option<String>> = tokio::sync::OnceCell::const_new();

    fn docker_reachable() -> bool {
        std::env::var_os("DOCKER_HOST").is_some()
            || std::path::Path::new("/var/run/docker.sock").exists()
    }

    /// A Redis container's URL, or `None` without Docker.
    pub async fn url() -> Option<String> {
        URL.get_or_init(|| async {
            if !docker_reachable() {
                return None;
            }
            let container = Redis::default().start().await.unwrap_or_else(|error| {
                panic!("Docker is reachable but Redis did not start: {error}")
            });
            let host = container.get_host().await.expect("container host");
            let port = container
                .get_host_port_ipv4(REDIS_PORT)
                .await
                .expect("container port");
            let _ = CONTAINER.set(container);
            Some(format!("redis://{host}:{port}"))
        })
        .await
        .clone()
    }
}
