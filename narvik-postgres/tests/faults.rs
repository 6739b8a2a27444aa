//! narvik-postgres under faults: the store built exactly as the README shows (`connect(url)`
//! then `migrate()`, nothing else), against a Postgres instance of the test's own on a free
//! loopback port, which the shared scenarios of `narvik-faults` freeze, kill and restart.
//!
//! Every test starts its own instance (`initdb` into a temporary directory takes about half a
//! second) and stops it when it ends, also on panic. The server binaries are taken from
//! `NARVIK_TEST_POSTGRES_BIN_DIR`, else `/usr/lib/postgresql/15/bin`; without them the tests
//! fail, saying so, they never skip. When the tests run as root, the server runs as the
//! `postgres` OS user (Postgres refuses to run as root).
//!
//! Run with `--nocapture` to read the `fault figures:` lines quoted in the README.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use narvik_conformance::harness::{live_record, random_user_id};
use narvik_core::deadline::{self, Bound};
use narvik_core::invalidation::{Invalidation, InvalidationSubscription};
use narvik_core::{Error, Result, SessionStore};
use narvik_faults::{recover_within, scenarios, Bounds, ServerProcess};
use narvik_postgres::sqlx::{self, Connection, PgConnection};
use narvik_postgres::PostgresStore;
use serde_json::json;

const STORE: &str = "narvik-postgres";

/// Where the Postgres binaries are unless `NARVIK_TEST_POSTGRES_BIN_DIR` says otherwise.
const DEFAULT_BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

/// Concurrent first calls after a quiet restart: more than the pool's 10 connections.
const QUIET_RESTART_TASKS: usize = 32;

/// The store exactly as the README's set-up builds it, defaults only.
async fn store_as_the_readme_builds_it(url: &str) -> Result<PostgresStore> {
    let store = PostgresStore::connect(url).await?;
    store.migrate().await?;
    Ok(store)
}

/// A Postgres instance of the test's own: its data directory, socket and log in a temporary
/// directory, the server on a free loopback port.
struct Instance {
    // Declared first, dropped first: the server stops before its directory is removed.
    server: ServerProcess,
    url: String,
    _dir: tempfile::TempDir,
}

impl Instance {
    fn start(name: &str) -> Self {
        let bin = std::env::var_os("NARVIK_TEST_POSTGRES_BIN_DIR")
            .map_or_else(|| PathBuf::from(DEFAULT_BIN_DIR), PathBuf::from);
        for tool in ["initdb", "postgres", "pg_isready"] {
            assert!(
                bin.join(tool).is_file(),
                "the fault tests start a Postgres server of their own and need {}: install \
                 PostgreSQL 15 (scripts/servers/postgres.sh does) or set \
                 NARVIK_TEST_POSTGRES_BIN_DIR to the directory holding initdb, postgres and \
                 pg_isready",
                bin.join(tool).display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("narvik-postgres-{name}-"))
            .tempdir()
            .expect("a temporary directory");
        let user = server_user(dir.path());
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("give the instance directory to the postgres user");
        }
        let data = dir.path().join("data");

        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C"])
            // Skips initdb's own final fsync only; the server runs with fsync on.
            .arg("--no-sync");
        as_server_user(&mut initdb, user);
        let output = initdb.output().expect("run initdb");
        assert!(
            output.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );

        let port = narvik_faults::free_port();
        let postgres = bin.join("postgres");
        let socket_dir = dir.path().to_owned();
        let data_dir = data.clone();
        let server = ServerProcess::start_with_check(
            &format!("postgres ({name})"),
            port,
            dir.path().join("server.log"),
            move || {
                wait_until_the_old_instance_is_gone(&data_dir);
                let mut command = Command::new(&postgres);
                command
                    .arg("-D")
                    .arg(&data_dir)
                    .args(["-p", &port.to_string(), "-k"])
                    .arg(&socket_dir)
                    .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=on"])
                    .args(["-c", "shared_buffers=16MB", "-c", "max_connections=50"]);
                as_server_user(&mut command, user);
                command
            },
            // Ready means accepting sessions: not merely listening, not in crash recovery.
            move |port| {
                Command::new(bin.join("pg_isready"))
                    .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string(), "-t", "1"])
                    .status()
                    .is_ok_and(|status| status.success())
            },
        );
        Self {
            server,
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            _dir: dir,
        }
    }
}

impl Drop for Instance {
    /// On a failed test, shows the end of the server's log before its directory goes.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self._dir.path().join("server.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            eprintln!("the test's own postgres logged, at the end:\n{tail}");
        }
    }
}

/// Before a restart after kill -9: waits (up to 10 s) until no process of the killed instance
/// is attached to its shared memory any more, since a postmaster that finds the old segment
/// still in use refuses to start. SIGKILL reaches every process at once, but each takes its
/// moment to exit.
fn wait_until_the_old_instance_is_gone(data: &Path) {
    // Line 7 of postmaster.pid: the shared memory segment's key and id.
    let Some(segment) = std::fs::read_to_string(data.join("postmaster.pid"))
        .ok()
        .and_then(|lock| {
            lock.lines()
                .nth(6)
                .and_then(|line| line.split_whitespace().nth(1).map(str::to_owned))
        })
    else {
        return; // a first start
    };
    let attached = || {
        // /proc/sysvipc/shm: key shmid perms size cpid lpid nattch ...
        std::fs::read_to_string("/proc/sysvipc/shm")
            .unwrap_or_default()
            .lines()
            .filter_map(|row| {
                let fields: Vec<&str> = row.split_whitespace().collect();
                (fields.get(1) == Some(&segment.as_str()))
                    .then(|| fields.get(6).and_then(|n| n.parse::<u64>().ok()))
                    .flatten()
            })
            .next()
            .unwrap_or(0)
    };
    let started = Instant::now();
    while attached() > 0 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// `Some((uid, gid))` of the `postgres` OS user when the tests run as root (the directory they
/// just created is root's), `None` to run the server as the current user.
fn server_user(created: &Path) -> Option<(u32, u32)> {
    let owner = std::fs::metadata(created)
        .expect("the directory's owner")
        .uid();
    if owner != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let output = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        assert!(
            output.status.success(),
            "the tests run as root and Postgres will not: they need a `postgres` OS user"
        );
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .next()
            .and_then(|number| number.parse().ok())
            .expect("a numeric id")
    };
    Some((id("-u"), id("-g")))
}

/// Runs `command` as the server's user. Set on the command itself rather than through
/// `runuser`, so that the postmaster is the test's own child, which `ServerProcess` reaps when
/// it kills it: a restart never finds the old postmaster's pid (in `postmaster.pid`) still
/// taken by an unreaped zombie.
fn as_server_user(command: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
}

async fn instance_and_store(name: &str) -> (Instance, PostgresStore) {
    let instance = Instance::start(name);
    let store = store_as_the_readme_builds_it(&instance.url)
        .await
        .expect("the store on a healthy server");
    (instance, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_never_answers_fails_the_connect_within_its_bound() {
    scenarios::silent_listener(STORE, Bounds::default(), |address| async move {
        store_as_the_readme_builds_it(&format!("postgres://postgres@{address}/postgres")).await
    })
    .await;

    // And the error says which bound: the connect, whose handshake never got an answer.
    let listener = narvik_faults::SilentListener::start();
    let error = PostgresStore::connect(&format!(
        "postgres://postgres@{}/postgres",
        listener.address()
    ))
    .await
    .expect_err("nothing answers");
    assert_eq!(deadline::bound_hit(&error), Some(Bound::Connect), "{error}");
    let fault = deadline::fault_of(&error).expect("a store fault");
    assert_eq!((fault.store(), fault.operation()), (STORE, "connect"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_fails_calls_within_the_bounds_and_is_used_again_on_resume() {
    let (instance, store) = instance_and_store("freeze").await;
    scenarios::freeze_and_resume(STORE, Bounds::default(), &instance.server, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_fails_calls_fast_and_is_used_again_once_restarted() {
    let (mut instance, store) = instance_and_store("kill").await;
    scenarios::kill_and_restart(STORE, Bounds::default(), &mut instance.server, &store, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_logouts_survive_a_crash_right_after() {
    let (mut instance, store) = instance_and_store("crash").await;
    scenarios::logouts_survive_crash(STORE, Bounds::default(), &mut instance.server, &store, true)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_calls_after_a_quiet_restart_succeed() {
    let (mut instance, store) = instance_and_store("quiet").await;
    scenarios::quiet_restart(
        STORE,
        Bounds::default(),
        &mut instance.server,
        Arc::new(store),
        QUIET_RESTART_TASKS,
    )
    .await;
}

/// The "frozen server, call in flight": a fetch is waiting on the server (for a lock
/// another session holds) when the server freezes. It fails at the call deadline, naming it,
/// and its connection is closed rather than returned to the pool; after the resume the store
/// answers within the recovery bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_in_flight_when_the_server_freezes_ends_at_the_call_deadline() {
    let bounds = Bounds::default();
    let (instance, store) = instance_and_store("in-flight").await;
    let record = live_record(&random_user_id("in-flight"), json!({}));
    store.save_session(&record).await.expect("save");

    let mut admin = PgConnection::connect(&instance.url)
        .await
        .expect("an admin connection");
    sqlx::raw_sql("BEGIN; LOCK TABLE public.narvik_sessions IN ACCESS EXCLUSIVE MODE")
        .execute(&mut admin)
        .await
        .expect("lock the table");
    // Once every connection is back in the pool, idle, the fetch takes one of them.
    let settling = Instant::now();
    while usize::try_from(store.pool().size()).ok() != Some(store.pool().num_idle())
        && settling.elapsed() < Duration::from_secs(2)
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let pooled = store.pool().size();
    assert!(pooled > 0 && usize::try_from(pooled).ok() == Some(store.pool().num_idle()));
    let started = Instant::now();
    let call = tokio::spawn({
        let store = store.clone();
        let id = record.id.clone();
        async move { store.fetch_session(&id).await }
    });
    // Wait until the fetch is on the server, queued behind the lock.
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
        )
        .fetch_one(&mut admin)
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "the fetch never reached the lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    instance.server.freeze();

    let outcome = call.await.expect("the call's task");
    let elapsed = started.elapsed();
    let error = outcome.expect_err("the server is frozen");
    assert!(matches!(error, Error::Unavailable { .. }), "{error:?}");
    assert_eq!(deadline::bound_hit(&error), Some(Bound::Call), "{error}");
    let limit = store.call_timeout() + bounds.margin;
    assert!(
        elapsed <= limit,
        "the call failed after {elapsed:?}, over {limit:?}"
    );
    // Its connection is closed, not handed to the next call: the pool is one connection short.
    let closing = Instant::now();
    while store.pool().size() >= pooled && closing.elapsed() < Duration::from_secs(1) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        store.pool().size(),
        pooled - 1,
        "the cancelled connection is still in the pool"
    );
    eprintln!(
        "fault figures: {STORE} call in flight at the freeze: time to error {} ms",
        elapsed.as_millis()
    );

    instance.server.resume();
    admin.close().await.expect("release the lock");
    let since = Instant::now();
    let recovered = recover_within(
        "fetch_session after the resume",
        since,
        bounds.recover + bounds.margin,
        || store.fetch_session(&record.id),
    )
    .await;
    assert!(store
        .fetch_session(&record.id)
        .await
        .expect("fetch after the resume")
        .is_some());
    eprintln!(
        "fault figures: {STORE} call in flight at the freeze: time to recover {} ms",
        recovered.as_millis()
    );
}

/// A subscription of `store` once its channel is healthy (the listener connects in the
/// background).
async fn healthy_subscription(store: &PostgresStore) -> InvalidationSubscription {
    let mut subscription = store
        .subscribe_invalidations()
        .expect("the store pushes invalidations");
    expect_message(
        &mut subscription,
        Duration::from_secs(5),
        "the first Subscribed",
        |message| matches!(message, Invalidation::Subscribed { .. }),
    )
    .await;
    subscription
}

/// Receives one message within `bound` and checks it; returns how long it took.
async fn expect_message(
    subscription: &mut InvalidationSubscription,
    bound: Duration,
    what: &str,
    check: impl Fn(&Invalidation) -> bool,
) -> Duration {
    let started = Instant::now();
    match tokio::time::timeout(bound, subscription.recv()).await {
        Ok(message) if check(&message) => started.elapsed(),
        Ok(message) => panic!("expected {what}, got {message:?}"),
        Err(_) => panic!("{what} did not come within {bound:?}"),
    }
}

/// A logout on `store` that `subscription` must hear of.
async fn a_logout_is_heard(store: &PostgresStore, subscription: &mut InvalidationSubscription) {
    let record = live_record(&random_user_id("heard"), json!({}));
    store.save_session(&record).await.expect("save");
    store.delete_session(&record.id).await.expect("delete");
    let id = record.id.clone();
    expect_message(
        subscription,
        Duration::from_secs(2),
        "the logout",
        |message| *message == Invalidation::Sessions(vec![id.clone()]),
    )
    .await;
}

/// A frozen server leaves the listener's socket open and silent: the heartbeat (a query after
/// 1 s of silence, 1 s to answer) finds out, so every cache stops trusting the channel within
/// about 2 s; after the resume the listener is back within the back-off cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_server_loses_the_channel_within_the_heartbeat_and_it_is_back_on_resume() {
    let (instance, store) = instance_and_store("inv-freeze").await;
    let mut subscription = healthy_subscription(&store).await;

    instance.server.freeze();
    let lost = expect_message(
        &mut subscription,
        // One heartbeat interval and one deadline, and room for a loaded machine.
        Duration::from_secs(3),
        "Lost while the server is frozen",
        |message| *message == Invalidation::Lost,
    )
    .await;
    assert!(!subscription.is_healthy());

    instance.server.resume();
    let back = expect_message(
        &mut subscription,
        Duration::from_secs(4),
        "Subscribed after the resume",
        |message| matches!(message, Invalidation::Subscribed { .. }),
    )
    .await;
    a_logout_is_heard(&store, &mut subscription).await;
    eprintln!(
        "fault figures: {STORE} invalidation channel, frozen server: lost after {} ms, \
         subscribed again {} ms after SIGCONT",
        lost.as_millis(),
        back.as_millis()
    );
}

/// A killed server closes the listener's socket: the channel is lost at once, and back within
/// the back-off cap (1 s) of the server accepting again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_loses_the_channel_at_once_and_it_is_back_after_the_restart() {
    let (mut instance, store) = instance_and_store("inv-kill").await;
    let mut subscription = healthy_subscription(&store).await;

    let killed = Instant::now();
    instance.server.kill();
    expect_message(
        &mut subscription,
        Duration::from_secs(1),
        "Lost after the kill",
        |message| *message == Invalidation::Lost,
    )
    .await;
    let lost_after_kill = killed.elapsed();
    assert!(!subscription.is_healthy());

    let ready = instance.server.start_again();
    expect_message(
        &mut subscription,
        Duration::from_secs(3),
        "Subscribed after the restart",
        |message| matches!(message, Invalidation::Subscribed { .. }),
    )
    .await;
    let after_ready = ready.elapsed();
    a_logout_is_heard(&store, &mut subscription).await;
    eprintln!(
        "fault figures: {STORE} invalidation channel, kill -9: lost within {} ms of the \
         SIGKILL, subscribed again {} ms after the server was ready",
        lost_after_kill.as_millis(),
        after_ready.as_millis()
    );
}

/// In a SQL_ASCII database anyone may NOTIFY the channel bytes that are not UTF-8. The server
/// checks them on the way to the listener's UTF-8 connection and ends that connection (FATAL
/// "invalid byte sequence"), so sqlx never sees them: the channel is lost (caches flush and
/// bypass), the listener is back at once, and nothing worse happens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_that_is_not_utf8_costs_a_resubscription_and_nothing_worse() {
    let instance = Instance::start("inv-ascii");
    let mut admin = PgConnection::connect(&instance.url)
        .await
        .expect("an admin connection");
    sqlx::raw_sql(
        "CREATE DATABASE ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' \
         TEMPLATE template0",
    )
    .execute(&mut admin)
    .await
    .expect("a SQL_ASCII database");
    let url = format!(
        "{}/ascii",
        instance
            .url
            .strip_suffix("/postgres")
            .expect("the instance's URL names its database")
    );
    let store = store_as_the_readme_builds_it(&url)
        .await
        .expect("the store on the SQL_ASCII database");
    let mut subscription = healthy_subscription(&store).await;
    let mut tool = PgConnection::connect(&url).await.expect("another tool");
    sqlx::query("SELECT pg_notify($1, E'\\xff\\xfe')")
        .bind(store.invalidation_channel())
        .execute(&mut tool)
        .await
        .expect("NOTIFY bytes that are not UTF-8");
    expect_message(
        &mut subscription,
        Duration::from_secs(2),
        "Lost (the server ends the listener's connection)",
        |message| *message == Invalidation::Lost,
    )
    .await;
    expect_message(
        &mut subscription,
        Duration::from_secs(2),
        "Subscribed again",
        |message| matches!(message, Invalidation::Subscribed { .. }),
    )
    .await;
    a_logout_is_heard(&store, &mut subscription).await;
}
