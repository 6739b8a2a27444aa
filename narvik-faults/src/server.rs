//! A server instance a test owns: started on its own port, frozen, killed and restarted at will,
//! and always stopped when the test ends, even on panic.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// How long a server may take to open its port (a Postgres crash recovery, a Python server's
/// start-up on a loaded machine).
const START_LIMIT: Duration = Duration::from_secs(60);

/// How long every thread of a server may take to stop after SIGSTOP (a thread in an
/// uninterruptible disk wait stops when the wait ends).
const FREEZE_LIMIT: Duration = Duration::from_secs(10);

type MakeCommand = Box<dyn Fn() -> Command + Send + Sync>;
type ReadyCheck = Box<dyn Fn(u16) -> bool + Send + Sync>;

/// A server process in a process group of its own, so that freezing or killing it reaches
/// every process of the instance (a Postgres postmaster and its backends alike).
pub struct ServerProcess {
    name: String,
    port: u16,
    log: PathBuf,
    command: MakeCommand,
    ready: ReadyCheck,
    child: Option<Child>,
}

impl ServerProcess {
    /// Starts the server that `command` describes (it must listen on 127.0.0.1:`port`) and waits
    /// until it accepts TCP connections. Its output goes to `log`.
    pub fn start(
        name: &str,
        port: u16,
        log: PathBuf,
        command: impl Fn() -> Command + Send + Sync + 'static,
    ) -> Self {
        Self::start_with_check(name, port, log, command, |port| {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
    }

    /// As [`ServerProcess::start`], with `ready` telling when the server is up (for servers
    /// that open their port before they answer, such as Postgres during crash recovery).
    pub fn start_with_check(
        name: &str,
        port: u16,
        log: PathBuf,
        command: impl Fn() -> Command + Send + Sync + 'static,
        ready: impl Fn(u16) -> bool + Send + Sync + 'static,
    ) -> Self {
        let mut server = Self {
            name: name.to_owned(),
            port,
            log,
            command: Box::new(command),
            ready: Box::new(ready),
            child: None,
        };
        server.start_again();
        server
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts the server again (after [`ServerProcess::kill`]) and returns the moment it was
    /// seen ready: the start of the recovery clock.
    pub fn start_again(&mut self) -> Instant {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the server log");
        let mut command = (self.command)();
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .process_group(0);
        let child = command
            .spawn()
            .unwrap_or_else(|error| panic!("start {}: {error}", self.name));
        self.child = Some(child);
        self.wait_until_ready()
    }

    fn wait_until_ready(&mut self) -> Instant {
        let started = Instant::now();
        loop {
            // Whether our process is still alive comes first: if it died (its port taken by
            // another test's server, say), the port may well answer, but not as our server.
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    self.child = None;
                    panic!(
                        "{} exited ({status}) before it was ready; see {}",
                        self.name,
                        self.log.display()
                    );
                }
            }
            if (self.ready)(self.port) {
                return Instant::now();
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "{} was not ready on port {} within {START_LIMIT:?}; see {}",
                self.name,
                self.port,
                self.log.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The main process and every process descended from it. Descendants are found through
    /// /proc rather than the process group: Postgres backends call `setsid()` and leave the
    /// group. The main process comes first, so that a stopped or killed server forks nothing
    /// new while the rest are reached.
    fn processes(&self) -> Vec<i32> {
        let Some(child) = &self.child else {
            return Vec::new();
        };
        let main = i32::try_from(child.id()).expect("a pid fits in i32");
        let mut processes = vec![main];
        processes.extend(descendants_of(main));
        processes
    }

    fn signal_all(processes: &[i32], signal: Signal) {
        for &pid in processes {
            // A process may have exited since the walk; that is not an error.
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
        }
        if let Some(&main) = processes.first() {
            let _ = killpg(Pid::from_raw(main), signal);
        }
    }

    fn signal(&self, signal: Signal) {
        Self::signal_all(&self.processes(), signal);
    }

    /// Freezes every process of the server (SIGSTOP): connections stay open and nothing answers.
    ///
    /// Returns only once every thread of every process is seen stopped. `kill` returns as soon
    /// as the signal is queued, and the kernel wakes one thread of a process to take it: on a
    /// loaded machine another thread, woken by a request that arrives meanwhile, can still
    /// answer it (SecantusDB runs a thread per connection), and a test that sends its call right
    /// after `freeze` would see it succeed.
    pub fn freeze(&self) {
        let processes = self.processes();
        Self::signal_all(&processes, Signal::SIGSTOP);
        let started = Instant::now();
        while !processes.iter().all(|&pid| is_stopped(pid)) {
            assert!(
                started.elapsed() < FREEZE_LIMIT,
                "{} did not stop within {FREEZE_LIMIT:?} of SIGSTOP",
                self.name
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Lets a frozen server run again (SIGCONT).
    pub fn resume(&self) {
        self.signal(Signal::SIGCONT);
    }

    /// Kills every process of the server at once (SIGKILL), as a crash would, and waits for
    /// the main process to be gone.
    pub fn kill(&mut self) {
        let processes = self.processes();
        Self::signal_all(&processes, Signal::SIGKILL);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        // Orphaned descendants are reaped by init a moment later; a restart must not meet
        // them still holding the port or the server's shared memory.
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10)
            && (processes.iter().any(|&pid| is_alive(pid))
                || TcpStream::connect(("127.0.0.1", self.port)).is_ok())
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server and starts it again on the same port and storage; returns the moment
    /// it was seen ready.
    pub fn restart(&mut self) -> Instant {
        self.kill();
        self.start_again()
    }
}

/// The state letter of `/proc/<path>/stat` ("R", "S", "T", "Z", ...), if it can be read.
fn state_of(path: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{path}/stat")).ok()?;
    let end = stat.rfind(')')?;
    stat[end + 1..].split_whitespace().next().map(str::to_owned)
}

/// Whether `pid` is still running (a zombie counts as gone: it holds no port or memory).
fn is_alive(pid: i32) -> bool {
    state_of(&pid.to_string()).is_some_and(|state| state != "Z" && state != "X")
}

/// Whether every thread of `pid` is stopped by a signal ("T"), or the process is gone (an
/// exited process answers nothing either).
fn is_stopped(pid: i32) -> bool {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    threads.flatten().all(|thread| {
        let path = format!("{pid}/task/{}", thread.file_name().to_string_lossy());
        state_of(&path).is_none_or(|state| matches!(state.as_str(), "T" | "Z" | "X"))
    })
}

/// Every live process below `root`, read from /proc (parent links in `/proc/<pid>/stat`).
fn descendants_of(root: i32) -> Vec<i32> {
    let mut parents = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // The command name is in parentheses and may hold spaces or parentheses itself;
            // the fields after the last ')' are "state ppid ...".
            let Some(after_name) = stat.rfind(')').map(|end| &stat[end + 1..]) else {
                continue;
            };
            if let Some(parent) = after_name
                .split_whitespace()
                .nth(1)
                .and_then(|field| field.parse::<i32>().ok())
            {
                parents.push((pid, parent));
            }
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, of) in &parents {
            if of == parent && !found.contains(&pid) {
                found.push(pid);
                frontier.push(pid);
            }
        }
    }
    found
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill();
        }
    }
}
