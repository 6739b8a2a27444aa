//! The fault scenarios of narvik-faults against Redis, each on a `redis-server` of its own (a
//! free loopback port, its files in a temporary directory; never the shared server), with the
//! store built exactly as the README shows: no timeout of the test's own.
//!
//! Run with `--nocapture` to read the `fault figures:` lines quoted in the README.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::own_server::OwnRedis;
use narvik_core::deadline::{self, Bound};
use narvik_core::{Error, SessionStore};
use narvik_faults::{assert_unavailable_within, scenarios, Bounds, SilentListener};
use narvik_redis::redis::{self, AsyncCommands};
use narvik_redis::{deadpool_redis, RedisStore, STORE_NAME};

/// No persistence: what the shared test server runs, and Redis's default without a config
/// file apart from the RDB snapshots (off here, as `--save ""`).
const NO_PERSISTENCE: &[&str] = &[];
/// Every write on disk before it is acknowledged.
const AOF_ALWAYS: &[&str] = &["--appendonly", "yes", "--appendfsync", "always"];

/// The scenarios time their bounds on a two-core machine: one at a time within this binary.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// The README's construction.
async fn readme_store(url: &str) -> narvik_core::Result<RedisStore> {
    RedisStore::builder()
        .prefix("myapp:sessions")
        .connect(url)
        .await
}

async fn store_on(redis: &OwnRedis) -> RedisStore {
    readme_store(&redis.url())
        .await
        .expect("connect to the test's own server")
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_listener() {
    let _turn = one_at_a_time().await;
    scenarios::silent_listener(STORE_NAME, Bounds::default(), |address| async move {
        readme_store(&format!("redis://{address}")).await
    })
    .await;
}

/// Connecting to a listener that never answers fails with the connect bound, named in one
/// short line, with the driver's error as the source.
#[tokio::test(flavor = "multi_thread")]
async fn a_silent_listener_fails_with_a_short_message_naming_the_bound() {
    let _turn = one_at_a_time().await;
    let listener = SilentListener::start();
    let error = readme_store(&format!("redis://{}", listener.address()))
        .await
        .expect_err("nothing answers");
    assert_eq!(deadline::bound_hit(&error), Some(Bound::Connect));
    assert_eq!(
        error.to_string(),
        "the session store is unavailable: narvik-redis connect: no answer within 2s (connect \
         timeout)"
    );
    let fault = deadline::fault_of(&error).expect("a store fault");
    assert_eq!(fault.store(), STORE_NAME);
    assert!(
        std::error::Error::source(fault).is_some(),
        "the driver error"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn freeze_and_resume() {
    let _turn = one_at_a_time().await;
    let redis = OwnRedis::start(NO_PERSISTENCE);
    let store = store_on(&redis).await;
    scenarios::freeze_and_resume(STORE_NAME, Bounds::default(), &redis.server, &store).await;
}

/// A frozen server: the first call hits the call deadline, named as such.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_server_fails_with_the_call_deadline_named() {
    let _turn = one_at_a_time().await;
    let redis = OwnRedis::start(NO_PERSISTENCE);
    let store = store_on(&redis).await;
    assert_eq!(store.fetch_session("nobody").await.expect("fetch"), None);
    redis.server.freeze();
    let error = store
        .fetch_session("nobody")
        .await
        .expect_err("a frozen server answers nothing");
    redis.server.resume();
    assert_eq!(deadline::bound_hit(&error), Some(Bound::Call), "{error}");
    assert_eq!(
        error.to_string(),
        "the session store is unavailable: narvik-redis fetch_session: no answer within 5s (call \
         deadline)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_and_restart() {
    let _turn = one_at_a_time().await;
    let mut redis = OwnRedis::start(NO_PERSISTENCE);
    let store = store_on(&redis).await;
    scenarios::kill_and_restart(
        STORE_NAME,
        Bounds::default(),
        &mut redis.server,
        &store,
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_and_restart_with_aof_always_keeps_what_was_acknowledged() {
    let _turn = one_at_a_time().await;
    let mut redis = OwnRedis::start(AOF_ALWAYS);
    let store = store_on(&redis).await;
    scenarios::kill_and_restart(
        STORE_NAME,
        Bounds::default(),
        &mut redis.server,
        &store,
        true,
    )
    .await;
}

/// With `appendfsync always` every acknowledged write is on disk: no logout is undone and no
/// create is lost.
#[tokio::test(flavor = "multi_thread")]
async fn logouts_survive_crash_with_aof_always() {
    let _turn = one_at_a_time().await;
    let mut redis = OwnRedis::start(AOF_ALWAYS);
    let store = store_on(&redis).await;
    scenarios::logouts_survive_crash(
        STORE_NAME,
        Bounds::default(),
        &mut redis.server,
        &store,
        true,
    )
    .await;
}

/// Without persistence a crash loses everything: no logout can come back, but every session
/// is gone (users are signed out), so the store is not durable.
#[tokio::test(flavor = "multi_thread")]
async fn logouts_survive_crash_without_persistence() {
    let _turn = one_at_a_time().await;
    let mut redis = OwnRedis::start(NO_PERSISTENCE);
    let store = store_on(&redis).await;
    scenarios::logouts_survive_crash(
        STORE_NAME,
        Bounds::default(),
        &mut redis.server,
        &store,
        false,
    )
    .await;
}

/// After a restart with no traffic, the first call of each of 8 tasks succeeds: the closed
/// connection was re-established when it closed.
#[tokio::test(flavor = "multi_thread")]
async fn quiet_restart() {
    let _turn = one_at_a_time().await;
    let mut redis = OwnRedis::start(NO_PERSISTENCE);
    let store = Arc::new(store_on(&redis).await);
    scenarios::quiet_restart(STORE_NAME, Bounds::default(), &mut redis.server, store, 8).await;
}

/// The server closes the store's connection (`CLIENT KILL`) while nobody calls: the store has
/// a new connection before any call, so the next call is the first on it and succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_the_server_closes_is_replaced_before_the_next_call() {
    let _turn = one_at_a_time().await;
    let redis = OwnRedis::start(NO_PERSISTENCE);
    let store = store_on(&redis).await;
    let mut admin = redis::Client::open(redis.url())
        .expect("URL")
        .get_multiplexed_async_connection()
        .await
        .expect("admin connection");
    let before = others(&mut admin).await;
    assert_eq!(
        before.len(),
        1,
        "the store holds one connection: {before:?}"
    );
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut admin)
        .await
        .expect("CLIENT KILL");
    assert_eq!(killed, 1);
    let started = Instant::now();
    let replaced = loop {
        let now = others(&mut admin).await;
        if now.len() == 1 && now != before {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no new connection {:?} after the kill: {now:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    eprintln!(
        "fault figures: {STORE_NAME} connection closed by the server: replaced after {} ms, no call made",
        replaced.as_millis()
    );
    assert_eq!(store.fetch_session("nobody").await.expect("fetch"), None);
    let _: () = admin.ping().await.expect("PING");
}

/// The ids of the clients other than `admin` itself.
async fn others(admin: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let own: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(admin)
        .await
        .expect("CLIENT ID");
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("normal")
        .query_async(admin)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .filter_map(|line| line.split(' ').next())
        .filter_map(|field| field.strip_prefix("id="))
        .filter(|id| *id != own.to_string())
        .map(str::to_owned)
        .collect()
}

/// A deadpool-redis pool, made as the README shows, whose server never answers: calls fail
/// within the acquire bound instead of waiting on the pool.
async fn pool_store(address: std::net::SocketAddr) -> narvik_core::Result<RedisStore> {
    let pool = deadpool_redis::Config::from_url(format!("redis://{address}"))
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .map_err(|error| Error::InvalidConfiguration(error.to_string()))?;
    RedisStore::builder()
        .prefix("myapp:sessions")
        .from_pool(pool)
}

#[tokio::test(flavor = "multi_thread")]
async fn pool_silent_listener() {
    let _turn = one_at_a_time().await;
    scenarios::silent_listener(STORE_NAME, Bounds::default(), pool_store).await;
}

/// The pool's own connect timeout (the redis crate's default, 1 s) ends the call, named as
/// the connect bound with the time waited.
#[tokio::test(flavor = "multi_thread")]
async fn a_pool_that_cannot_connect_fails_with_the_connect_bound_named() {
    let _turn = one_at_a_time().await;
    let listener = SilentListener::start();
    let store = pool_store(listener.address()).await.expect("a pool store");
    let error = store
        .fetch_session("nobody")
        .await
        .expect_err("no connection");
    assert_eq!(deadline::bound_hit(&error), Some(Bound::Connect), "{error}");
    assert_eq!(
        error.to_string(),
        "the session store is unavailable: narvik-redis fetch_session: no answer within 1s \
         (connect timeout)"
    );
}

/// Every connection of the application's pool is checked out elsewhere: a call waits at most
/// the acquire timeout, whatever the pool's own wait (none, by default: forever).
#[tokio::test(flavor = "multi_thread")]
async fn an_exhausted_pool_fails_within_the_acquire_bound() {
    let _turn = one_at_a_time().await;
    let redis = OwnRedis::start(NO_PERSISTENCE);
    let mut config = deadpool_redis::Config::from_url(redis.url());
    config.pool = Some(deadpool_redis::PoolConfig::new(1));
    let pool = config
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .expect("a pool");
    let store = RedisStore::builder()
        .prefix("myapp:sessions")
        .from_pool(pool.clone())
        .expect("a pool store");
    assert_eq!(store.fetch_session("nobody").await.expect("fetch"), None);
    let held = pool.get().await.expect("the pool's one connection");
    let bounds = Bounds::default();
    let waited = assert_unavailable_within(
        "fetch_session from an exhausted pool",
        bounds.connect + bounds.margin,
        store.fetch_session("nobody"),
    )
    .await;
    let error = store
        .fetch_session("nobody")
        .await
        .expect_err("no connection");
    assert_eq!(deadline::bound_hit(&error), Some(Bound::Acquire), "{error}");
    assert_eq!(
        error.to_string(),
        "the session store is unavailable: narvik-redis fetch_session: no answer within 2s (pool \
         acquire timeout)"
    );
    drop(held);
    assert_eq!(store.fetch_session("nobody").await.expect("fetch"), None);
    eprintln!(
        "fault figures: {STORE_NAME} exhausted pool: time to error {} ms",
        waited.as_millis()
    );
}

#[cfg(feature = "cluster")]
mod cluster {
    use super::*;

    /// How the cluster rows are named in the figures.
    const CLUSTER: &str = "narvik-redis (cluster)";

    /// The cluster client has the same bounds: connecting to a listener that never answers
    /// fails within the connect bound.
    #[tokio::test(flavor = "multi_thread")]
    async fn cluster_silent_listener() {
        let _turn = one_at_a_time().await;
        scenarios::silent_listener(CLUSTER, Bounds::default(), |address| async move {
            RedisStore::builder()
                .prefix("myapp:sessions")
                .connect_cluster([format!("redis://{address}")])
                .await
        })
        .await;
    }

    /// Whether the node on `port` serves the cluster: a restarted node answers
    /// `CLUSTERDOWN` for a while (Redis's rejoin delay), and only then is it back.
    fn cluster_ok(port: u16) -> bool {
        let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}")) else {
            return false;
        };
        let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_millis(200))
        else {
            return false;
        };
        redis::cmd("CLUSTER")
            .arg("INFO")
            .query::<String>(&mut connection)
            .is_ok_and(|info| info.contains("cluster_state:ok"))
    }

    /// A one-node cluster of the test's own, holding every slot (kept in its `nodes.conf`
    /// across restarts).
    async fn own_cluster() -> OwnRedis {
        let assigned = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let slots = Arc::clone(&assigned);
        let redis = OwnRedis::start_checked(
            &[
                NO_PERSISTENCE,
                &["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"],
            ]
            .concat(),
            move |port| {
                if slots.load(std::sync::atomic::Ordering::SeqCst) {
                    cluster_ok(port)
                } else {
                    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                }
            },
        );
        let mut admin = redis::Client::open(redis.url())
            .expect("URL")
            .get_multiplexed_async_connection()
            .await
            .expect("admin connection");
        let () = redis::cmd("CLUSTER")
            .arg("ADDSLOTSRANGE")
            .arg(0)
            .arg(16383)
            .query_async(&mut admin)
            .await
            .expect("CLUSTER ADDSLOTSRANGE");
        let started = Instant::now();
        loop {
            let info: String = redis::cmd("CLUSTER")
                .arg("INFO")
                .query_async(&mut admin)
                .await
                .expect("CLUSTER INFO");
            if info.contains("cluster_state:ok") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the cluster is not ok: {info}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assigned.store(true, std::sync::atomic::Ordering::SeqCst);
        redis
    }

    /// A frozen cluster node: calls fail within the call deadline, and work again after it
    /// resumes.
    #[tokio::test(flavor = "multi_thread")]
    async fn cluster_freeze_and_resume() {
        let _turn = one_at_a_time().await;
        let redis = own_cluster().await;
        let store = own_cluster_store(&redis).await;
        scenarios::freeze_and_resume(CLUSTER, Bounds::default(), &redis.server, &store).await;
    }

    async fn own_cluster_store(redis: &OwnRedis) -> RedisStore {
        RedisStore::builder()
            .prefix("myapp:sessions")
            .connect_cluster([redis.url()])
            .await
            .expect("connect to the test's own cluster")
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn cluster_kill_and_restart() {
        let _turn = one_at_a_time().await;
        let mut redis = own_cluster().await;
        let store = own_cluster_store(&redis).await;
        scenarios::kill_and_restart(CLUSTER, Bounds::default(), &mut redis.server, &store, false)
            .await;
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn cluster_quiet_restart() {
        let _turn = one_at_a_time().await;
        let mut redis = own_cluster().await;
        let store = Arc::new(own_cluster_store(&redis).await);
        scenarios::quiet_restart(CLUSTER, Bounds::default(), &mut redis.server, store, 8).await;
    }
}
