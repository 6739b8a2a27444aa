//! A `redis-server` of the test's own, for what must never happen to the shared server:
//! flushes, freezing, restarts, persistence settings, a cluster of its own.

use std::net::TcpStream;
use std::process::Command;

use narvik_faults::{free_port, ServerProcess};

/// A `redis-server` on a free loopback port with its files in a temporary directory, stopped
/// (and its directory removed) when dropped.
pub struct OwnRedis {
    pub server: ServerProcess,
    _dir: tempfile::TempDir,
}

impl OwnRedis {
    /// Starts `redis-server --port P --bind 127.0.0.1 --save "" --dir D` followed by `extra`
    /// (relative paths among them are in D: Redis changes to its `--dir`), and waits until its
    /// port accepts connections.
    pub fn start(extra: &[&str]) -> Self {
        Self::start_checked(extra, |port| {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    }

    /// As [`OwnRedis::start`], with `ready` telling when the server on the port is up (on
    /// every start, restarts too).
    pub fn start_checked(
        extra: &[&str],
        ready: impl Fn(u16) -> bool + Send + Sync + 'static,
    ) -> Self {
        assert!(
            Command::new("redis-server")
                .arg("--version")
                .output()
                .is_ok(),
            "redis-server is not installed: these tests start Redis instances of their own \
             (scripts/servers/redis.sh installs it)"
        );
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().to_owned();
        let port = free_port();
        let log = path.join("redis.log");
        let extra: Vec<String> = extra.iter().map(|arg| (*arg).to_owned()).collect();
        let command = move || {
            let mut command = Command::new("redis-server");
            command
                .arg("--port")
                .arg(port.to_string())
                .args(["--bind", "127.0.0.1", "--save", ""])
                .arg("--dir")
                .arg(&path)
                .args(&extra);
            command
        };
        let server = ServerProcess::start_with_check("redis-server", port, log, command, ready);
        Self { server, _dir: dir }
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port())
    }
}
