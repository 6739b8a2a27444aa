//! Single-node behaviour beyond the conformance suite: a killed connection replaced before the
//! next call, unreachable servers,
//! the purge's cut-off and count, no revival of an expired record, TTLs on every key, and the
//! number of commands each hot-path call sends.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::shared::{self, record};
use narvik_core::{Error, ManualClock, Narvik, SessionStore};
use narvik_redis::redis::{self, AsyncCommands};
use narvik_redis::RedisStore;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_is_unavailable() {
    // Port 1 on loopback: nothing listens there.
    let result = RedisStore::builder()
        .connection_timeout(Duration::from_millis(500))
        .connect("redis://127.0.0.1:1")
        .await;
    match result {
        Err(Error::Unavailable { source }) => assert!(!source.to_string().is_empty()),
        other => panic!("expected Error::Unavailable, got {other:?}"),
    }
}

/// The ids of the connections logged in as `user`.
async fn connections_of(admin: &mut redis::aio::MultiplexedConnection, user: &str) -> Vec<String> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(admin)
        .await
        .expect("CLIENT LIST");
    let mine = format!("user={user}");
    list.lines()
        .filter(|line| line.split(' ').any(|field| field == mine))
        .filter_map(|line| line.split(' ').next())
        .filter_map(|field| field.strip_prefix("id="))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_connections_are_replaced_before_the_next_call() {
    // The store logs in as its own ACL user, limited to its own prefix, so that CLIENT KILL USER
    // hits its connections and nobody else's on the shared server.
    let url = common::single_url().await;
    let mut admin = common::admin(&url).await;
    let prefix = common::fresh_prefix();
    let user = format!("narvik-kill-{}", common::random_hex());
    let password = common::random_hex();
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(format!(">{password}"))
        .arg(format!("~{prefix}:*"))
        .arg("+@all")
        .query_async(&mut admin)
        .await
        .expect("ACL SETUSER");
    let info = redis::IntoConnectionInfo::into_connection_info(url.as_str()).expect("URL");
    let settings = info
        .redis_settings()
        .clone()
        .set_username(&user)
        .set_password(&password);
    let store = RedisStore::builder()
        .prefix(&prefix)
        .connect(info.set_redis_settings(settings))
        .await
        .expect("connect as the test user");

    let saved = record(&common::random_hex(), "alice", Duration::from_secs(600));
    store.save_session(&saved).await.expect("save");
    assert_eq!(
        store.fetch_session(&saved.id).await.expect("fetch"),
        Some(saved.clone())
    );
    let before = connections_of(&mut admin, &user).await;
    assert_eq!(before.len(), 1, "one shared connection: {before:?}");

    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("USER")
        .arg(&user)
        .query_async(&mut admin)
        .await
        .expect("CLIENT KILL");
    assert_eq!(killed, 1, "the store's connection was killed");

    // No call is made: the store hears the connection close and opens a new one by itself.
    let mut replaced = false;
    for _ in 0..200 {
        let now = connections_of(&mut admin, &user).await;
        if now.len() == 1 && now != before {
            replaced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        replaced,
        "the killed connection was re-established without a call"
    );
    // So the next call, the first since the kill, succeeds; writes too.
    assert_eq!(
        store
            .fetch_session(&saved.id)
            .await
            .expect("the first call after the kill"),
        Some(saved.clone())
    );
    store
        .delete_session(&saved.id)
        .await
        .expect("delete after the kill");
    assert_eq!(store.fetch_session(&saved.id).await.expect("fetch"), None);
    let () = redis::cmd("ACL")
        .arg("DELUSER")
        .arg(&user)
        .query_async(&mut admin)
        .await
        .map(|_: i64| ())
        .expect("ACL DELUSER");
}

#[tokio::test(flavor = "multi_thread")]
async fn purge_cuts_off_at_the_given_now_and_counts_what_it_deleted() {
    let store = common::fresh_store().await;
    let mut raw = common::admin(&common::single_url().await).await;
    shared::purge_cuts_off_at_the_given_now(&store, &mut raw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_record_whose_key_survives_is_not_revived() {
    let store = common::fresh_store().await;
    let mut raw = common::admin(&common::single_url().await).await;
    shared::an_expired_record_whose_key_survives_is_not_revived(&store, &mut raw).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_record_saved_expired_leaves_nothing() {
    let store = common::fresh_store().await;
    let mut expired = record("gone", "alice", Duration::ZERO);
    expired.expires_at -= Duration::from_secs(1);
    store.save_session(&expired).await.expect("save");
    assert_eq!(store.fetch_session("gone").await.expect("fetch"), None);
    assert!(store
        .fetch_sessions_for_user("alice", expired.expires_at - Duration::from_secs(60))
        .await
        .expect("list")
        .is_empty());
    assert!(
        scan_prefix(store.prefix()).await.is_empty(),
        "no key was written"
    );
}

/// Every key under `prefix` (the prefix is ours and random: no user input in the pattern).
async fn scan_prefix(prefix: &str) -> Vec<String> {
    let url = common::single_url().await;
    let mut admin = common::admin(&url).await;
    let mut keys = Vec::new();
    let mut iter: redis::AsyncIter<String> =
        admin.scan_match(format!("{prefix}:*")).await.expect("SCAN");
    while let Some(key) = iter.next_item().await {
        keys.push(key.expect("key"));
    }
    keys
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_workload_every_key_has_a_ttl() {
    let store = common::fresh_store().await;
    shared::ttl_workload(&store).await;
    let keys = scan_prefix(store.prefix()).await;
    assert!(
        keys.len() >= 20,
        "the workload left keys to check: {keys:?}"
    );
    let url = common::single_url().await;
    let mut admin = common::admin(&url).await;
    for key in keys {
        let ttl: i64 = admin.pttl(&key).await.expect("PTTL");
        assert!(ttl > 0, "{key} has no TTL (PTTL {ttl})");
    }
}

/// A loopback TCP proxy in front of the test server that counts the commands sent through it
/// (RESP arrays from the client), so that round trips can be counted exactly.
struct CountingProxy {
    url: String,
    commands: Arc<AtomicUsize>,
}

impl CountingProxy {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let url = format!("redis://{}", listener.local_addr().expect("proxy address"));
        let commands = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&commands);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&upstream)
                    .await
                    .expect("connect upstream");
                let (from_client, to_client) = client.into_split();
                let (from_server, to_server) = server.into_split();
                tokio::spawn(forward(from_server, to_client, None));
                tokio::spawn(forward(from_client, to_server, Some(Arc::clone(&counter))));
            }
        });
        Self { url, commands }
    }

    fn count(&self) -> usize {
        self.commands.load(Ordering::SeqCst)
    }
}

/// Copies bytes from `from` to `to` until either side closes, counting the commands on the way
/// when given a counter. (By hand: tokio's `io-util` is not among this crate's features.)
async fn forward(from: OwnedReadHalf, to: OwnedWriteHalf, counter: Option<Arc<AtomicUsize>>) {
    let mut pending = Vec::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        if from.readable().await.is_err() {
            return;
        }
        let read = match from.try_read(&mut buffer) {
            Ok(0) => return,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return,
        };
        if let Some(counter) = &counter {
            pending.extend_from_slice(&buffer[..read]);
            while let Some(length) = resp_command_length(&pending) {
                counter.fetch_add(1, Ordering::SeqCst);
                pending.drain(..length);
            }
        }
        let mut rest = &buffer[..read];
        while !rest.is_empty() {
            if to.writable().await.is_err() {
                return;
            }
            match to.try_write(rest) {
                Ok(written) => rest = &rest[written..],
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    }
}

/// The length of the first complete command (`*N` then N bulk strings) in `bytes`, if any.
fn resp_command_length(bytes: &[u8]) -> Option<usize> {
    fn line(bytes: &[u8], at: usize, tag: u8) -> Option<(usize, usize)> {
        if *bytes.get(at)? != tag {
            panic!("unexpected RESP from the client at byte {at}");
        }
        let end = at + bytes[at..].windows(2).position(|pair| pair == b"\r\n")?;
        let number = std::str::from_utf8(&bytes[at + 1..end])
            .ok()?
            .parse()
            .ok()?;
        Some((number, end + 2))
    }
    let (count, mut at) = line(bytes, 0, b'*')?;
    for _ in 0..count {
        let (length, start) = line(bytes, at, b'$')?;
        at = start + length + 2;
        if at > bytes.len() {
            return None;
        }
    }
    Some(at)
}

#[tokio::test(flavor = "multi_thread")]
async fn each_call_on_the_hot_paths_is_one_command() {
    let url = common::single_url().await;
    let Some(address) = url.strip_prefix("redis://") else {
        panic!("this test needs a plain redis:// URL, got {url}");
    };
    let proxy = CountingProxy::start(address.trim_end_matches('/').to_owned()).await;
    let store = RedisStore::builder()
        .prefix(common::fresh_prefix())
        .connect(proxy.url.as_str())
        .await
        .expect("connect through the proxy");
    let mut raw = common::admin(&url).await;
    let later = |hours: u64| shared::now() + Duration::from_secs(hours * 3600);
    // Warm up: a script's first use may cost a SCRIPT LOAD.
    let warm = record("warm", "alice", Duration::from_secs(3600));
    store.save_session(&warm).await.expect("save");
    store
        .update_record_expiry(&warm, later(2))
        .await
        .expect("warm");
    store
        .update_session_expiry("warm", later(3))
        .await
        .expect("warm");
    store.delete_session("warm").await.expect("warm");

    let saved = record("one", "alice", Duration::from_secs(3600));
    store.save_session(&saved).await.expect("save");
    let calls: [(&str, usize); 4] = [
        ("fetch_session", 1),
        ("update_record_expiry", 1),
        ("update_session_expiry", 1),
        ("delete_session", 1),
    ];
    for (call, expected) in calls {
        let at = later(if call == "update_record_expiry" { 5 } else { 7 });
        let before = proxy.count();
        match call {
            "fetch_session" => {
                assert_eq!(
                    store.fetch_session("one").await.expect("fetch"),
                    Some(saved.clone())
                );
            }
            "update_record_expiry" => {
                store
                    .update_record_expiry(&saved, at)
                    .await
                    .expect("extend");
            }
            "update_session_expiry" => {
                store
                    .update_session_expiry("one", at)
                    .await
                    .expect("extend by id");
            }
            _ => store.delete_session("one").await.expect("delete"),
        }
        assert_eq!(proxy.count() - before, expected, "commands sent by {call}");
        match call {
            "update_record_expiry" | "update_session_expiry" => {
                let fetched = store
                    .fetch_session("one")
                    .await
                    .expect("fetch")
                    .expect("still there");
                assert_eq!(fetched.expires_at, at, "{call} moved the expiry");
                let score: f64 = redis::cmd("ZSCORE")
                    .arg(shared::index_key(&store, "alice"))
                    .arg("one")
                    .query_async(&mut raw)
                    .await
                    .expect("ZSCORE");
                assert_eq!(score as i64, shared::ms(at), "{call} moved the index entry");
                let key_expiry =
                    shared::expire_time(&mut raw, &shared::record_key(&store, "one")).await;
                assert_eq!(key_expiry, shared::ms(at), "{call} moved the key's TTL");
            }
            "delete_session" => {
                assert_eq!(store.fetch_session("one").await.expect("fetch"), None);
                assert!(shared::index_ids(&store, &mut raw, "alice")
                    .await
                    .is_empty());
            }
            _ => {}
        }
    }

    // The engine: a validation that extends is the GET and the extension, nothing else.
    let clock = Arc::new(ManualClock::starting_now());
    let narvik: Narvik<serde_json::Value> = Narvik::builder(Arc::new(store.clone()))
        .session_lifetime(time::Duration::hours(1))
        .clock(clock.clone())
        .build()
        .expect("engine");
    let created = narvik
        .create_session("bob", serde_json::json!({"a": 1}))
        .await
        .expect("create");
    clock.advance(time::Duration::minutes(40));
    let before = proxy.count();
    let validated = narvik
        .validate_session(created.token.as_str())
        .await
        .expect("validate")
        .expect("live");
    assert_eq!(proxy.count() - before, 2, "GET and the extension");
    assert!(validated.extended);
    let stored = store
        .fetch_session(&validated.id)
        .await
        .expect("fetch")
        .expect("live");
    assert_eq!(
        stored.expires_at, validated.expires_at,
        "the extension landed"
    );
}

/// With `tls`, rustls has a crypto provider: a `rediss://` URL to a plain-text server fails the
/// handshake as a typed error instead of panicking for want of a provider.
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread")]
async fn tls_handshake_failure_is_unavailable_not_a_panic() {
    let url = common::single_url().await;
    let Some(address) = url.strip_prefix("redis://") else {
        panic!("this test needs a plain redis:// URL, got {url}");
    };
    let result = RedisStore::builder()
        .connection_timeout(Duration::from_secs(1))
        .connect(format!("rediss://{address}").as_str())
        .await;
    assert!(
        matches!(result, Err(Error::Unavailable { .. })),
        "expected Error::Unavailable, got {result:?}"
    );
}
