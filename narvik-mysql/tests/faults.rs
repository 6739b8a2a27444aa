//! narvik-mysql under faults: the store built exactly as the README shows (`connect(url)` then
//! `migrate()`, nothing else), against a MariaDB (or MySQL) instance of the test's own on a
//! free loopback port, which the shared scenarios of `narvik-faults` freeze, kill and restart.
//!
//! Every test starts its own instance (`mariadb-install-db` into a temporary directory takes
//! about half a second) and stops it when it ends, also on panic. The binaries are taken from
//! `NARVIK_TEST_MYSQL_BIN_DIR` (holding `mariadbd` or `mysqld`), else the usual places; without
//! them the tests fail, saying so, they never skip. When the tests run as root, the server runs
//! as the `mysql` OS user. The server runs on its defaults (InnoDB,
//! `innodb_flush_log_at_trx_commit = 1`), which the tests check.
//!
//! Run with `--nocapture` to read the `fault figures:` lines quoted in the README.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use narvik_core::deadline::{self, Bound};
use narvik_core::Result;
use narvik_faults::{scenarios, Bounds, ServerProcess};
use narvik_mysql::sqlx::{self, Connection, MySqlConnection};
use narvik_mysql::MySqlStore;

const STORE: &str = "narvik-mysql";

/// Concurrent first calls after a quiet restart: more than the pool's 10 connections.
const QUIET_RESTART_TASKS: usize = 32;

/// The store exactly as the README's set-up builds it, defaults only.
async fn store_as_the_readme_builds_it(url: &str) -> Result<MySqlStore> {
    let store = MySqlStore::connect(url).await?;
    store.migrate().await?;
    Ok(store)
}

/// The first of `names` found in `dirs`.
fn find(dirs: &[PathBuf], names: &[&str]) -> Option<PathBuf> {
    dirs.iter()
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|path| path.is_file())
}

/// The server, its data directory initialiser and its admin client.
struct Binaries {
    server: PathBuf,
    install_db: PathBuf,
    admin: PathBuf,
}

fn binaries() -> Binaries {
    let dirs: Vec<PathBuf> = match std::env::var_os("NARVIK_TEST_MYSQL_BIN_DIR") {
        Some(dir) => vec![PathBuf::from(dir)],
        None => [
            "/usr/sbin",
            "/usr/bin",
            "/usr/local/bin",
            "/usr/local/mysql/bin",
        ]
        .into_iter()
        .map(PathBuf::from)
        .collect(),
    };
    let need = |names: &[&str]| {
        find(&dirs, names).unwrap_or_else(|| {
            panic!(
                "the fault tests start a MariaDB server of their own and need one of {names:?} \
                 in {dirs:?}: install mariadb-server (scripts/servers/mariadb.sh does) or set \
                 NARVIK_TEST_MYSQL_BIN_DIR to the directory holding them"
            )
        })
    };
    Binaries {
        server: need(&["mariadbd", "mysqld"]),
        install_db: need(&["mariadb-install-db", "mysql_install_db"]),
        admin: need(&["mariadb-admin", "mysqladmin"]),
    }
}

/// A server instance of the test's own: its data directory, socket and log in a temporary
/// directory, the server on a free loopback port.
struct Instance {
    // Declared first, dropped first: the server stops before its directory is removed.
    server: ServerProcess,
    url: String,
    dir: tempfile::TempDir,
}

impl Instance {
    async fn start(name: &str) -> Self {
        let bin = binaries();
        let dir = tempfile::Builder::new()
            .prefix(&format!("narvik-mysql-{name}-"))
            .tempdir()
            .expect("a temporary directory");
        let user = server_user(dir.path());
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("give the instance directory to the mysql user");
        }
        let data = dir.path().join("data");
        let mut install = Command::new(&bin.install_db);
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            // The bootstrap's temporary tables in the instance's own directory: instances
            // initialised at once in a shared /tmp collide on their names.
            .arg(format!("--tmpdir={}", dir.path().display()))
            .args([
                "--auth-root-authentication-method=normal",
                "--skip-name-resolve",
                "--skip-test-db",
            ]);
        as_server_user(&mut install, user);
        let output = install.output().expect("run mariadb-install-db");
        assert!(
            output.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );

        let port = narvik_faults::free_port();
        let socket = dir.path().join("mysqld.sock");
        let pid_file = dir.path().join("mysqld.pid");
        let tmp = dir.path().to_owned();
        let server_bin = bin.server.clone();
        let server = ServerProcess::start_with_check(
            &format!("mariadbd ({name})"),
            port,
            dir.path().join("server.log"),
            move || {
                let mut command = Command::new(&server_bin);
                command
                    .arg("--no-defaults")
                    .arg(format!("--datadir={}", data.display()))
                    .arg(format!("--port={port}"))
                    .arg("--bind-address=127.0.0.1")
                    .arg(format!("--socket={}", socket.display()))
                    .arg(format!("--pid-file={}", pid_file.display()))
                    .arg(format!("--tmpdir={}", tmp.display()))
                    .args([
                        "--skip-name-resolve",
                        "--innodb-buffer-pool-size=32M",
                        "--max-connections=60",
                    ]);
                as_server_user(&mut command, user);
                command
            },
            // Ready means answering the protocol (after crash recovery), not merely listening.
            move |port| {
                Command::new(&bin.admin)
                    .args(["--no-defaults", "--protocol=tcp", "-h", "127.0.0.1"])
                    .args(["-P", &port.to_string(), "-u", "root", "--connect-timeout=1"])
                    .arg("ping")
                    .output()
                    .is_ok_and(|output| output.status.success())
            },
        );
        let base = format!("mysql://root@127.0.0.1:{port}");
        let mut admin = MySqlConnection::connect(&base)
            .await
            .expect("an admin connection to the test's own server");
        sqlx::raw_sql("CREATE DATABASE IF NOT EXISTS test")
            .execute(&mut admin)
            .await
            .expect("create the test database");
        let flush: String =
            sqlx::query_scalar("SELECT CAST(@@innodb_flush_log_at_trx_commit AS CHAR)")
                .fetch_one(&mut admin)
                .await
                .expect("read innodb_flush_log_at_trx_commit");
        assert_eq!(flush, "1", "the server's default durability");
        admin.close().await.expect("close the admin connection");
        Self {
            server,
            url: format!("{base}/test"),
            dir,
        }
    }
}

impl Drop for Instance {
    /// On a failed test, shows the end of the server's log before its directory goes.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            eprintln!("the test's own mariadbd logged, at the end:\n{tail}");
        }
    }
}

/// `Some((uid, gid))` of the `mysql` OS user when the tests run as root (the directory they
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
            .args([flag, "mysql"])
            .output()
            .expect("run id");
        assert!(
            output.status.success(),
            "the tests run as root and will not run the server as root: they need a `mysql` \
             OS user"
        );
        String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .next()
            .and_then(|number| number.parse().ok())
            .expect("a numeric id")
    };
    Some((id("-u"), id("-g")))
}

/// Runs `command` as the server's user, set on the command itself so that the server is the
/// test's own child, which `ServerProcess` reaps when it kills it.
fn as_server_user(command: &mut Command, user: Option<(u32, u32)>) {
    if let Some((uid, gid)) = user {
        command.uid(uid).gid(gid);
    }
}

async fn instance_and_store(name: &str) -> (Instance, MySqlStore) {
    let instance = Instance::start(name).await;
    let store = store_as_the_readme_builds_it(&instance.url)
        .await
        .expect("the store on a healthy server");
    (instance, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_never_answers_fails_the_connect_within_its_bound() {
    scenarios::silent_listener(STORE, Bounds::default(), |address| async move {
        store_as_the_readme_builds_it(&format!("mysql://root@{address}/test")).await
    })
    .await;

    // And the error says which bound: the connect, whose handshake never got an answer.
    let listener = narvik_faults::SilentListener::start();
    let error = MySqlStore::connect(&format!("mysql://root@{}/test", listener.address()))
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
