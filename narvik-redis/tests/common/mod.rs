//! Test servers and fresh stores for narvik-redis's tests.
//!
//! Single node: `NARVIK_TEST_REDIS_URL`; else (`NARVIK_TEST_CONTAINERS=1`, Docker reachable)
//! a testcontainers Redis; else the local default 127.0.0.1:6379. Cluster:
//! `NARVIK_TEST_REDIS_CLUSTER_URLS` (scripts/test.sh starts a local one). Nothing found: the
//! test panics saying how to provide one; it never skips.
#![allow(dead_code)]

use narvik_redis::RedisStore;

pub mod own_server;

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
    if containers::requested() {
        if let Some(url) = containers::url().await {
            return url;
        }
    }
    if tokio::net::TcpStream::connect("127.0.0.1:6379")
        .await
        .is_ok()
    {
        return LOCAL_DEFAULT.to_owned();
    }
    panic!(
        "no Redis for narvik-redis's tests: set NARVIK_TEST_REDIS_URL, run scripts/test.sh \
         (starts or installs a local redis-server), set NARVIK_TEST_CONTAINERS=1 with a \
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

mod containers {
    use std::sync::OnceLock;

    use testcontainers_modules::redis::{Redis, REDIS_PORT};
    use testcontainers_modules::testcontainers::runners::AsyncRunner;
    use testcontainers_modules::testcontainers::ContainerAsync;

    /// Kept for the whole test binary (testcontainers' reaper removes it afterwards).
    static CONTAINER: OnceLock<ContainerAsync<Redis>> = OnceLock::new();
    static URL: tokio::sync::OnceCell<Option<String>> = tokio::sync::OnceCell::const_new();

    /// Whether the run asks for a testcontainers server (`NARVIK_TEST_CONTAINERS=1`): opt-in,
    /// so that a machine with Docker still tests against its local server by default.
    pub fn requested() -> bool {
        std::env::var_os("NARVIK_TEST_CONTAINERS").is_some_and(|value| value == "1")
    }

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

/// Helpers shared by the single-node and cluster tests: a workload over every write path, and
/// checks run on both deployments. Each takes a plain connection (`raw`) for looking at keys.
pub mod shared {
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::Duration;

    use narvik_core::{SessionRecord, SessionStore};
    use narvik_redis::redis::{self, aio::ConnectionLike};
    use narvik_redis::RedisStore;
    use time::OffsetDateTime;

    /// Wall-clock now, to the millisecond (as stored).
    pub fn now() -> OffsetDateTime {
        narvik_core::time_util::truncate_to_millis(OffsetDateTime::now_utc())
    }

    /// A record created now and expiring `expires_in` from now.
    pub fn record(id: &str, user_id: &str, expires_in: Duration) -> SessionRecord {
        let now = now();
        SessionRecord {
            id: id.to_owned(),
            user_id: user_id.to_owned(),
            expires_at: now + expires_in,
            created_at: now,
            data: serde_json::json!({ "theme": "dark", "n": 1 }).into(),
            lifetime: None,
            data_version: 0,
        }
    }

    /// Lowercase hex of a user id, as in the index key names.
    pub fn hex(text: &str) -> String {
        hex::encode(text)
    }

    /// The index key of a user (the layout the README documents).
    pub fn index_key(store: &RedisStore, user_id: &str) -> String {
        format!("{}:u:{{{}}}", store.prefix(), hex(user_id))
    }

    /// The record key of a session.
    pub fn record_key(store: &RedisStore, session_id: &str) -> String {
        format!("{}:s:{session_id}", store.prefix())
    }

    /// The expiry-queue member of a session.
    pub fn queue_member(user_id: &str, session_id: &str) -> String {
        format!("{}:{session_id}", hex(user_id))
    }

    /// A key's `PEXPIRETIME`.
    pub async fn expire_time(raw: &mut impl ConnectionLike, key: &str) -> i64 {
        redis::cmd("PEXPIRETIME")
            .arg(key)
            .query_async(raw)
            .await
            .expect("PEXPIRETIME")
    }

    /// Unix ms.
    pub fn ms(at: OffsetDateTime) -> i64 {
        (at.unix_timestamp_nanos() / 1_000_000) as i64
    }

    /// Every expiry-queue entry of the store, member to score.
    pub async fn queue(store: &RedisStore, raw: &mut impl ConnectionLike) -> BTreeMap<String, i64> {
        let mut all = BTreeMap::new();
        for bucket in 0..16 {
            let key = format!("{}:x:{{{bucket:x}}}", store.prefix());
            let entries: Vec<(String, f64)> = redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(raw)
                .await
                .expect("ZRANGE queue");
            all.extend(entries.into_iter().map(|(m, s)| (m, s as i64)));
        }
        all
    }

    /// The ids in a user's index.
    pub async fn index_ids(
        store: &RedisStore,
        raw: &mut impl ConnectionLike,
        user_id: &str,
    ) -> BTreeSet<String> {
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(index_key(store, user_id))
            .arg(0)
            .arg(-1)
            .query_async(raw)
            .await
            .expect("ZRANGE index");
        ids.into_iter().collect()
    }

    /// Every write path of the store, on awkward user ids: saves (short and long), extensions
    /// and shortenings through both update calls, a move into the past, updates of unknown
    /// ids, deletes, a per-user delete, listings, and purges at the wall clock and far ahead
    /// of it. Leaves some keys behind (the caller checks their TTLs).
    pub async fn ttl_workload(store: &RedisStore) {
        let users = ["alice", "{bob}", "carol*", "ünï", "d\0e"];
        let mut saved = Vec::new();
        for n in 0..60 {
            let user = users[n % users.len()];
            let lifetime = match n % 6 {
                0 => Duration::from_millis(200),
                1 => Duration::from_secs(3600),
                _ => Duration::from_secs(3 * 24 * 3600),
            };
            let record = record(&format!("s{n}{{{}}}", n % 3), user, lifetime);
            store.save_session(&record).await.expect("save");
            saved.push(record);
        }
        let later = now() + Duration::from_secs(5 * 24 * 3600);
        let sooner = now() + Duration::from_secs(1800);
        for record in saved.iter().step_by(3) {
            store
                .update_record_expiry(record, later)
                .await
                .expect("extend");
        }
        for record in saved.iter().skip(1).step_by(4) {
            store
                .update_record_expiry(record, sooner)
                .await
                .expect("shorten");
        }
        for record in saved.iter().skip(2).step_by(5) {
            store
                .update_session_expiry(&record.id, later)
                .await
                .expect("extend by id");
            store
                .update_session_expiry(&record.id, sooner)
                .await
                .expect("shorten by id");
        }
        // Moved into the past: Redis drops the record at once.
        store
            .update_session_expiry(&saved[7].id, now() - Duration::from_secs(5))
            .await
            .expect("expire");
        store
            .update_session_expiry("nope", later)
            .await
            .expect("no-op");
        let ghost = record("ghost", "alice", Duration::from_secs(60));
        store
            .update_record_expiry(&ghost, later)
            .await
            .expect("no-op");
        for record in saved.iter().step_by(7) {
            store.delete_session(&record.id).await.expect("delete");
        }
        store
            .delete_sessions_for_user("carol*")
            .await
            .expect("delete user");
        for user in users {
            store
                .fetch_sessions_for_user(user, now())
                .await
                .expect("list");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        store
            .delete_all_expired_sessions(now())
            .await
            .expect("purge now");
        // Deletes the 1 h and 30 min ones ahead of Redis, and requeues the rest.
        store
            .delete_all_expired_sessions(now() + Duration::from_secs(2 * 3600))
            .await
            .expect("purge ahead");
        for user in users {
            store
                .fetch_sessions_for_user(user, now() + Duration::from_secs(4 * 24 * 3600))
                .await
                .expect("list ahead");
        }
    }

    /// `delete_all_expired_sessions(now)` deletes exactly what is expired at `now`, ahead of
    /// Redis too, and counts the records it deleted (not those Redis removed first); indexes
    /// and queue are left holding exactly the live sessions.
    pub async fn purge_cuts_off_at_the_given_now(
        store: &RedisStore,
        raw: &mut impl ConnectionLike,
    ) {
        let hour = Duration::from_secs(3600);
        let days = Duration::from_secs(3 * 24 * 3600);
        let start = now();
        for n in 0..5 {
            store
                .save_session(&record(&format!("h{n}"), &format!("u{}", n % 2), hour))
                .await
                .expect("save");
        }
        // Shortened from 3 days to 1 hour, by id and through the record: due in the queue.
        store
            .save_session(&record("shortened", "u0", days))
            .await
            .expect("save");
        store
            .update_session_expiry("shortened", start + hour)
            .await
            .expect("shorten");
        let shortened = record("shortened-r", "u1", days);
        store.save_session(&shortened).await.expect("save");
        store
            .update_record_expiry(&shortened, start + hour)
            .await
            .expect("shorten");
        // Extended from 1 hour to 3 days: requeued, not deleted.
        let extended = record("extended", "u1", hour);
        store.save_session(&extended).await.expect("save");
        store
            .update_record_expiry(&extended, start + days)
            .await
            .expect("extend");
        let extended_ms = ms(start + days);
        // Deleted: its queue entry points at nothing, not counted.
        store
            .save_session(&record("deleted", "u1", hour))
            .await
            .expect("save");
        store.delete_session("deleted").await.expect("delete");
        let live = record("live", "u0", days);
        store.save_session(&live).await.expect("save");
        // Expired by Redis itself before any purge: cleaned up, not counted.
        store
            .save_session(&record("native", "u0", Duration::from_millis(300)))
            .await
            .expect("save");
        tokio::time::sleep(Duration::from_millis(450)).await;

        assert_eq!(
            store
                .delete_all_expired_sessions(now())
                .await
                .expect("purge now"),
            0,
            "nothing was expired at the wall clock but what Redis had removed itself"
        );
        assert!(!index_ids(store, raw, "u0").await.contains("native"));
        let ahead = now() + 2 * hour;
        assert_eq!(
            store
                .delete_all_expired_sessions(ahead)
                .await
                .expect("purge ahead"),
            7,
            "the five 1 h records and the two shortened ones"
        );
        assert_eq!(
            store
                .delete_all_expired_sessions(ahead)
                .await
                .expect("purge again"),
            0
        );
        for id in [
            "h0",
            "h1",
            "h2",
            "h3",
            "h4",
            "shortened",
            "shortened-r",
            "native",
        ] {
            assert_eq!(store.fetch_session(id).await.expect("fetch"), None, "{id}");
        }
        assert_eq!(
            store.fetch_session("live").await.expect("fetch").as_ref(),
            Some(&live)
        );
        let fetched = store
            .fetch_session("extended")
            .await
            .expect("fetch")
            .expect("extended is live");
        assert_eq!(ms(fetched.expires_at), extended_ms);
        assert_eq!(
            index_ids(store, raw, "u0").await,
            BTreeSet::from(["live".to_owned()])
        );
        assert_eq!(
            index_ids(store, raw, "u1").await,
            BTreeSet::from(["extended".to_owned()])
        );
        let entries = queue(store, raw).await;
        assert_eq!(
            entries,
            BTreeMap::from([
                (queue_member("u0", "live"), ms(live.expires_at)),
                (queue_member("u1", "extended"), extended_ms),
            ]),
            "the queue holds the live sessions, the extended one requeued at its expiry"
        );
        // Far ahead: everything goes, and nothing is left behind.
        assert_eq!(
            store
                .delete_all_expired_sessions(now() + 2 * days)
                .await
                .expect("purge all"),
            2
        );
        for user in ["u0", "u1"] {
            let exists: i64 = redis::cmd("EXISTS")
                .arg(index_key(store, user))
                .query_async(raw)
                .await
                .expect("EXISTS");
            assert_eq!(exists, 0, "the index of {user} is gone");
        }
        assert!(queue(store, raw).await.is_empty(), "the queue is empty");
    }

    /// A record whose stored `expires_at` has passed while its key is still there (its TTL
    /// moved later behind the store's back) is not revived by either update call, not fetched
    /// and not listed.
    pub async fn an_expired_record_whose_key_survives_is_not_revived(
        store: &RedisStore,
        raw: &mut impl ConnectionLike,
    ) {
        let record = record("stale", "alice", Duration::from_secs(3600));
        store.save_session(&record).await.expect("save");
        let key = record_key(store, "stale");
        let past = format!("{:016x}", ms(now() - Duration::from_secs(10)));
        let _: i64 = redis::cmd("SETRANGE")
            .arg(&key)
            .arg(2)
            .arg(&past)
            .query_async(raw)
            .await
            .expect("SETRANGE");
        let ttl_before = expire_time(raw, &key).await;
        let later = now() + Duration::from_secs(24 * 3600);
        store
            .update_session_expiry("stale", later)
            .await
            .expect("update by id");
        store
            .update_record_expiry(&record, later)
            .await
            .expect("update record");
        let header: Vec<u8> = redis::cmd("GETRANGE")
            .arg(&key)
            .arg(2)
            .arg(17)
            .query_async(raw)
            .await
            .expect("GETRANGE");
        assert_eq!(header, past.as_bytes(), "the stored expiry did not move");
        assert_eq!(
            expire_time(raw, &key).await,
            ttl_before,
            "the key's TTL did not move"
        );
        assert_eq!(store.fetch_session("stale").await.expect("fetch"), None);
        assert!(store
            .fetch_sessions_for_user("alice", now())
            .await
            .expect("list")
            .is_empty());
    }
}

/// Helpers of the invalidation tests (single node and cluster): waiting on a subscription with
/// bounds, finding the listener's connections by name, and an ACL user of the test's own.
pub mod push {
    use std::time::{Duration, Instant};

    use narvik_core::invalidation::{Invalidation, InvalidationSubscription};
    use narvik_redis::redis::{self, aio::ConnectionLike};

    /// How long an invalidation may take to reach another instance, and a listener to
    /// subscribe again after a loss (the brief's bound).
    pub const WITHIN: Duration = Duration::from_secs(2);

    /// A listener name of the test's own: tests running at once never kill each other's.
    pub fn listener_name() -> String {
        format!("narvik-test-listener-{}", super::random_hex())
    }

    /// The next message within `limit`, or `None`.
    pub async fn next(
        subscription: &mut InvalidationSubscription,
        limit: Duration,
    ) -> Option<Invalidation> {
        tokio::time::timeout(limit, subscription.recv()).await.ok()
    }

    /// Waits (at most `limit`) for the next `Subscribed` and returns its epoch. Session
    /// invalidations before it are skipped (a resubscription may follow writes); a `Lost`
    /// or `Everything` before it is fine too (a flush is what a loss means anyway).
    pub async fn subscribed(subscription: &mut InvalidationSubscription, limit: Duration) -> u64 {
        let started = Instant::now();
        loop {
            let left = limit.saturating_sub(started.elapsed());
            match next(subscription, left).await {
                Some(Invalidation::Subscribed { epoch }) => {
                    assert!(subscription.is_healthy(), "healthy once subscribed");
                    return epoch;
                }
                Some(_) => {}
                None => panic!("not subscribed within {limit:?}"),
            }
        }
    }

    /// Waits until every id of `ids` was invalidated, at most [`WITHIN`], and returns how long
    /// it took. Other sessions' invalidations are skipped (saves are pushed too); a loss or a
    /// flush fails the test: nothing here should cost one.
    pub async fn expect_ids(subscription: &mut InvalidationSubscription, ids: &[&str]) -> Duration {
        let started = Instant::now();
        let mut missing: Vec<&str> = ids.to_vec();
        while !missing.is_empty() {
            let left = WITHIN.saturating_sub(started.elapsed());
            match next(subscription, left).await {
                Some(Invalidation::Sessions(got)) => {
                    missing.retain(|id| !got.iter().any(|got| got == id));
                }
                Some(other) => panic!("expected invalidations of {missing:?}, got {other:?}"),
                None => panic!("no invalidation of {missing:?} within {WITHIN:?}"),
            }
        }
        started.elapsed()
    }

    /// The `CLIENT LIST` lines of the connections named `name` on one server.
    pub async fn connections_named(raw: &mut impl ConnectionLike, name: &str) -> Vec<String> {
        let list: String = redis::cmd("CLIENT")
            .arg("LIST")
            .query_async(raw)
            .await
            .expect("CLIENT LIST");
        let field = format!("name={name}");
        list.lines()
            .filter(|line| line.split(' ').any(|part| part == field))
            .map(str::to_owned)
            .collect()
    }

    /// The value of `field` in one `CLIENT LIST` line.
    pub fn field<'l>(line: &'l str, field: &str) -> Option<&'l str> {
        line.split(' ')
            .find_map(|part| part.strip_prefix(field)?.strip_prefix('='))
    }

    /// Closes every connection named `name` on one server (`CLIENT KILL ID`: there is no
    /// filter by name) and returns how many there were.
    pub async fn kill_named(raw: &mut impl ConnectionLike, name: &str) -> usize {
        let lines = connections_named(raw, name).await;
        for line in &lines {
            let id = field(line, "id").expect("an id");
            let killed: i64 = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .query_async(raw)
                .await
                .expect("CLIENT KILL ID");
            assert_eq!(killed, 1, "connection {id} killed");
        }
        lines.len()
    }

    /// Polls (at most `limit`) until no connection named `name` is left on the server.
    pub async fn wait_gone(raw: &mut impl ConnectionLike, name: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if connections_named(raw, name).await.is_empty() {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "the listener {name} is still connected after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// An ACL user of the test's own, limited to `prefix`, that the test can switch off (new
    /// logins fail, open connections keep working) and on again.
    pub struct AclUser {
        /// The user name.
        pub name: String,
        /// Its password.
        pub password: String,
    }

    impl AclUser {
        /// A fresh user on nobody's name.
        pub fn fresh() -> Self {
            Self {
                name: format!("narvik-push-{}", super::random_hex()),
                password: super::random_hex(),
            }
        }

        /// Creates (or switches on) the user on one server.
        pub async fn on(&self, raw: &mut impl ConnectionLike, prefix: &str) {
            let () = redis::cmd("ACL")
                .arg("SETUSER")
                .arg(&self.name)
                .arg("on")
                .arg(format!(">{}", self.password))
                .arg(format!("~{prefix}:*"))
                .arg("+@all")
                .query_async(raw)
                .await
                .expect("ACL SETUSER on");
        }

        /// Refuses new logins of the user on one server.
        pub async fn off(&self, raw: &mut impl ConnectionLike) {
            let () = redis::cmd("ACL")
                .arg("SETUSER")
                .arg(&self.name)
                .arg("off")
                .query_async(raw)
                .await
                .expect("ACL SETUSER off");
        }

        /// Removes the user from one server.
        pub async fn delete(&self, raw: &mut impl ConnectionLike) {
            let _: i64 = redis::cmd("ACL")
                .arg("DELUSER")
                .arg(&self.name)
                .query_async(raw)
                .await
                .expect("ACL DELUSER");
        }

        /// `url`, logging in as this user.
        pub fn login(&self, url: &str) -> redis::ConnectionInfo {
            let info = redis::IntoConnectionInfo::into_connection_info(url).expect("URL");
            let settings = info
                .redis_settings()
                .clone()
                .set_username(&self.name)
                .set_password(&self.password);
            info.set_redis_settings(settings)
        }
    }
}
