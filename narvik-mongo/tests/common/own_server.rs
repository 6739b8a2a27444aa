//! A MongoDB server of a test's own: SecantusDB (or a `mongod`) on a free loopback port with
//! storage in a temporary directory, run by the shared fault harness
//! ([`narvik_faults::ServerProcess`]): killed (SIGKILL, as a crash) when the test ends, even
//! on panic, never one of the shared test servers.
//!
//! The binary is `NARVIK_TEST_MONGO_SERVER_BIN` (scripts/servers/mongo.sh exports SecantusDB's
//! `secantusd-py`; a `mongod` works too), else the SecantusDB that script installs under
//! `.build/mongo-venv`. Without either the test fails, with how to provide one: a missing
//! server is never a skip.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use narvik_faults::{free_port, ServerProcess};
use tempfile::TempDir;

const HOW_TO_PROVIDE: &str = "set NARVIK_TEST_MONGO_SERVER_BIN to a `secantusd-py` or `mongod` \
     binary, or run scripts/test.sh (it installs SecantusDB under .build/mongo-venv)";

/// The build directory scripts/test.sh uses (`NARVIK_BUILD_DIR`, else `.build` at the root).
pub fn build_dir() -> PathBuf {
    std::env::var_os("NARVIK_BUILD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.build"))
}

fn server_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NARVIK_TEST_MONGO_SERVER_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.exists(),
            "NARVIK_TEST_MONGO_SERVER_BIN is {}, which does not exist: {HOW_TO_PROVIDE}",
            bin.display()
        );
        return bin;
    }
    let installed = build_dir().join("mongo-venv/bin/secantusd-py");
    if installed.exists() {
        return installed;
    }
    panic!("no MongoDB server binary for a test's own server: {HOW_TO_PROVIDE}.");
}

/// A server instance owned by one test. Field order matters: the process is killed before its
/// storage directory is removed.
pub struct OwnServer {
    /// The running server: freeze, kill and restart it through this.
    pub process: ServerProcess,
    storage: TempDir,
}

impl OwnServer {
    /// Starts a server named `name` (for its log, `.build/mongo-own-<name>.log`) and waits
    /// until it accepts connections.
    pub fn start(name: &str) -> Self {
        Self::start_with_args(name, &[])
    }

    /// [`OwnServer::start`], with `extra` arguments for the server (for SecantusDB,
    /// `--standalone` drops its single-node replica set, as a `mongod` without `--replSet`).
    pub fn start_with_args(name: &str, extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|arg| (*arg).to_owned()).collect();
        let bin = server_bin();
        let storage = tempfile::Builder::new()
            .prefix("narvik-mongo-own-")
            .tempdir()
            .expect("a temporary storage directory");
        let port = free_port();
        let log_dir = build_dir();
        std::fs::create_dir_all(&log_dir).expect("the build directory");
        let log = log_dir.join(format!("mongo-own-{name}.log"));
        let _ = std::fs::remove_file(&log);
        let data = storage.path().join("data");
        std::fs::create_dir_all(&data).expect("the data directory");
        // An explicit empty config stops SecantusDB from reading stray config files.
        let config = storage.path().join("empty.conf");
        std::fs::write(&config, "").expect("an empty config file");
        let is_mongod = bin
            .file_name()
            .is_some_and(|file| file.to_string_lossy().starts_with("mongod"));
        let ready = ready_check(is_mongod, log.clone());
        let command = move || {
            let mut command = Command::new(&bin);
            if is_mongod {
                command
                    .args(["--bind_ip", "127.0.0.1", "--port", &port.to_string()])
                    .arg("--dbpath")
                    .arg(&data);
            } else {
                command
                    .arg("--config")
                    .arg(&config)
                    .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                    .arg("--storage-path")
                    .arg(&data)
                    .args(["--cache-size", "64M"]);
            }
            command.args(&extra);
            command
        };
        let process =
            ServerProcess::start_with_check(&format!("mongo {name}"), port, log, command, ready);
        Self { process, storage }
    }

    /// `mongodb://127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("mongodb://127.0.0.1:{}/{database}", self.process.port())
    }

    /// Where the server keeps its data.
    pub fn storage(&self) -> &Path {
        self.storage.path()
    }
}

/// When the server just started is ready: its port accepts connections and, for SecantusDB,
/// its log has one more "listening on" line than at the last start. The port was free when it
/// was picked, but on a shared machine another process may take it before the server binds it;
/// then the server exits (and `ServerProcess` reports it) instead of the test talking to a
/// stranger's server.
fn ready_check(is_mongod: bool, log: PathBuf) -> impl Fn(u16) -> bool + Send + Sync + 'static {
    let starts_seen = AtomicUsize::new(0);
    move |port| {
        if TcpStream::connect(("127.0.0.1", port)).is_err() {
            return false;
        }
        if is_mongod {
            return true;
        }
        let listening = std::fs::read_to_string(&log)
            .map(|text| {
                text.matches(&format!("listening on 127.0.0.1:{port}"))
                    .count()
            })
            .unwrap_or(0);
        let seen = starts_seen.load(Ordering::SeqCst);
        if listening > seen {
            starts_seen.store(seen + 1, Ordering::SeqCst);
            true
        } else {
            false
        }
    }
}
