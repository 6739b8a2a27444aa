//! Building a [`RedisStore`]: key prefix, connection naming and timeouts.

use std::time::Duration;

use narvik_core::{Error, Result};
use std::sync::Arc;

use redis::{AsyncConnectionConfig, ConnectionInfo, IntoConnectionInfo};

use crate::connection::{Backend, Reconnecting};
use crate::keys::KeySpace;
use crate::store::RedisStore;

/// The key prefix used unless [`RedisStoreBuilder::prefix`] says otherwise.
pub const DEFAULT_PREFIX: &str = "narvik";

/// Configures and connects a [`RedisStore`].
///
/// ```no_run
/// # async fn demo() -> narvik_core::Result<()> {
/// use narvik_redis::RedisStore;
/// use std::time::Duration;
///
/// let store = RedisStore::builder()
///     .prefix("myapp:sessions")
///     .response_timeout(Duration::from_secs(2))
///     .connect("redis://127.0.0.1:6379")
///     .await?;
/// # let _ = store; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RedisStoreBuilder {
    prefix: String,
    connection_timeout: Duration,
    response_timeout: Duration,
}

impl Default for RedisStoreBuilder {
    fn default() -> Self {
        Self {
            prefix: DEFAULT_PREFIX.to_owned(),
            connection_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(5),
        }
    }
}

impl RedisStoreBuilder {
    /// A builder with the defaults: prefix `narvik`, 2 s connect timeout, 5 s response timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// The prefix of every key of this store (default `narvik`). It must not contain `{` or `}`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one connection attempt may take (default 2 s).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.connection_timeout = timeout;
        self
    }

    /// How long a command may wait for its answer (default 5 s); past it the call fails with
    /// [`Error::Unavailable`].
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Connects to one Redis server (`redis://`, `rediss://` with the `tls` feature,
    /// `redis+unix://`) through one multiplexed connection shared by all tasks and replaced in
    /// the background when it breaks: every operation costs its round trips and nothing more. Fails with [`Error::Unavailable`] when the server
    /// cannot be reached.
    pub async fn connect(self, url: impl IntoConnectionInfo) -> Result<RedisStore> {
        let keys = KeySpace::new(&self.prefix)?;
        let client = redis::Client::open(Self::connection_info(url)?)
            .map_err(|error| Error::InvalidConfiguration(error.to_string()))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.connection_timeout))
            .set_response_timeout(Some(self.response_timeout));
        let shared = Reconnecting::connect(client, config).await?;
        Ok(RedisStore::from_parts(
            Backend::Multiplexed(Arc::new(shared)),
            keys,
        ))
    }

    /// Uses a deadpool-redis pool the application already has. Each operation checks out a
    /// connection, and deadpool-redis sends a `PING` when it recycles one: an extra round trip
    /// per operation. Prefer [`RedisStoreBuilder::connect`] for the session hot path.
    pub fn from_pool(self, pool: deadpool_redis::Pool) -> Result<RedisStore> {
        Ok(RedisStore::from_parts(
            Backend::Pool(pool),
            KeySpace::new(&self.prefix)?,
        ))
    }

    /// Connects to a Redis Cluster through the redis crate's async cluster client, given some
    /// of its nodes. See the crate docs for what is atomic on a cluster.
    #[cfg(feature = "cluster")]
    pub async fn connect_cluster<T: IntoConnectionInfo>(
        self,
        nodes: impl IntoIterator<Item = T>,
    ) -> Result<RedisStore> {
        let keys = KeySpace::new(&self.prefix)?;
        let nodes = nodes
            .into_iter()
            .map(Self::connection_info)
            .collect::<Result<Vec<_>>>()?;
        let client = redis::cluster::ClusterClientBuilder::new(nodes)
            .connection_timeout(self.connection_timeout)
            .response_timeout(self.response_timeout)
            .retries(3)
            .build()
            .map_err(|error| Error::InvalidConfiguration(error.to_string()))?;
        let connection = client
            .get_async_connection()
            .await
            .map_err(Error::unavailable)?;
        Ok(RedisStore::from_parts(Backend::Cluster(connection), keys))
    }

    /// Uses a deadpool-redis cluster pool the application already has (a checkout per
    /// operation, as [`RedisStoreBuilder::from_pool`]).
    #[cfg(feature = "cluster")]
    pub fn from_cluster_pool(self, pool: deadpool_redis::cluster::Pool) -> Result<RedisStore> {
        Ok(RedisStore::from_parts(
            Backend::ClusterPool(pool),
            KeySpace::new(&self.prefix)?,
        ))
    }

    fn connection_info(url: impl IntoConnectionInfo) -> Result<ConnectionInfo> {
        url.into_connection_info()
            .map_err(|error| Error::InvalidConfiguration(error.to_string()))
    }
}
