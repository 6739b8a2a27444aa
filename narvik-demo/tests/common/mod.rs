//! Shared by the integration tests that talk to a served demo over real TCP: a minimal
//! HTTP/1.1 client that can send from any loopback address (127.0.0.0/8), so that a test can
//! be an attacker at one client address and the account's owner at another.

#![allow(dead_code)] // each test binary uses its own part

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use narvik_core::ManualClock;
use narvik_demo::{Argon2Params, Demo, DemoBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::task::JoinHandle;

/// A loopback client address: `127.0.0.<last>`.
pub fn loopback(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A response as read off the wire.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn retry_after(&self) -> Option<u64> {
        self.header("retry-after")?.parse().ok()
    }

    /// The `name=value` of the `Set-Cookie` header, as a browser sends it back.
    pub fn cookie(&self) -> Option<String> {
        self.header("set-cookie")?
            .split(';')
            .next()
            .map(str::to_owned)
    }
}

/// Sends one request from `from` to `server` with `Connection: close` and reads the reply.
pub async fn send(
    server: SocketAddr,
    from: IpAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket
        .bind(SocketAddr::new(from, 0))
        .unwrap_or_else(|error| panic!("bind {from}: {error}"));
    let mut stream = socket.connect(server).await.expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write the request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read the reply");
    parse(&raw)
}

/// Parses a whole HTTP/1.1 response (as read until the server closed the connection).
pub fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .expect("a header block");
    let head = std::str::from_utf8(&raw[..split]).expect("an ASCII header block");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status in {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_owned(), value.trim_matches([' ', '\t']).to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8(body).expect("a UTF-8 body"),
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = rest
            .windows(2)
            .position(|window| window == b"\r\n")
            .expect("a chunk size line");
        let size_text = std::str::from_utf8(&rest[..line_end]).expect("ASCII");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or(""), 16)
            .expect("a hex chunk size");
        rest = &rest[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// A form `POST` with the `Origin` the origin check wants.
pub async fn post_form(
    server: SocketAddr,
    from: IpAddr,
    path: &str,
    cookie: Option<&str>,
    form: &str,
) -> Reply {
    let origin = format!("http://{server}");
    let mut headers = vec![
        ("Origin", origin.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    if let Some(cookie) = cookie {
        headers.push(("Cookie", cookie));
    }
    send(server, from, "POST", path, &headers, form).await
}

pub async fn sign_in(server: SocketAddr, from: IpAddr, username: &str, password: &str) -> Reply {
    post_form(
        server,
        from,
        "/sign-in",
        None,
        &format!("username={username}&password={password}"),
    )
    .await
}

/// The demo served in this process on a free loopback port, with connect info; stopped when
/// dropped.
pub struct Served {
    pub addr: SocketAddr,
    pub clock: Arc<ManualClock>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Served {
    /// Serves `configure(builder)` on a [`ManualClock`], with the served origin allowed, and
    /// cheap Argon2 parameters (64 KiB, one pass): these tests are about what the demo answers,
    /// not what a hash costs (tests/memory.rs runs the real parameters), and each check with
    /// the real ones takes about half a second in a debug build.
    pub async fn start(configure: impl FnOnce(DemoBuilder) -> DemoBuilder) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free port");
        let addr = listener.local_addr().expect("addr");
        let clock = Arc::new(ManualClock::starting_now());
        let builder = Demo::builder()
            .clock(clock.clone())
            .argon2_params(Argon2Params::new(64, 1, 1, None).expect("valid parameters"))
            .origin(format!("http://{addr}"));
        let demo = configure(builder).build().expect("demo");
        let task = tokio::spawn(demo.serve(listener));
        Self { addr, clock, task }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The demo binary, killed and reaped when dropped (also when the test panics).
pub struct DemoProcess {
    pub child: Child,
    pub addr: SocketAddr,
    pub permits: u64,
}

impl DemoProcess {
    /// Starts the demo binary on a free port with `args` and waits until it prints its URL and
    /// its sign-in bound.
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_narvik-demo"))
            .args(["--port", "0"])
            .args(args)
            .env_remove("NARVIK_DEMO_PORT")
            .env_remove("PORT")
            .env_remove("NARVIK_DEMO_STORE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the demo binary");
        let stdout = child.stdout.take().expect("piped stdout");
        // Every line goes through the channel, read until the end, so the demo never blocks
        // on a full pipe.
        let (lines_tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut process = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            permits: 0,
        };
        loop {
            let line = lines
                .recv_timeout(Duration::from_secs(60))
                .expect("the demo prints its URL and bound within 60 s");
            if let Some(url) = line.strip_prefix("narvik demo listening on http://") {
                process.addr = url.parse().expect("host:port");
            }
            if let Some(bound) = line.trim_start_matches(' ').strip_prefix("sign-in bound: ") {
                process.permits = bound
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("the number of permits");
                break;
            }
        }
        assert_ne!(process.addr.port(), 0, "the URL comes before the bound");
        std::thread::spawn(move || for _ in lines {});
        process
    }

    pub fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/<pid>/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim_matches([' ', '\t']).strip_suffix(" kB"))
            .and_then(|kib| kib.parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
    }

    /// Resets the peak (VmHWM) to the current resident set, where the kernel allows it; if it
    /// does not, the peak still includes start-up and the growth is only overstated.
    pub fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5").is_ok()
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
