//! The demo's peak memory under 64 concurrent failed sign-ins (issue 12: unbounded, they grew
//! it by 1.2 GiB). The demo binary runs as its own process on a free port; its resident set is
//! read from `/proc/<pid>/status` before and after 64 wrong-password POSTs sent at once, each
//! from its own loopback address and for its own (unknown) user name, so that the throttle lets
//! every one of them through to the sign-in bound. Memory, not time, is asserted: the growth of
//! the peak over the resident set before the burst stays within permits × Argon2 m_cost plus a
//! fixed slack for the 64 connections and the blocking threads.

#![cfg(target_os = "linux")]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::DemoProcess;
use std::sync::Arc;
use std::time::Duration;

use narvik_demo::ARGON2_MEMORY_BYTES;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

const MIB: u64 = 1024 * 1024;
const BURST: usize = 64;
/// Everything but Argon2 that 64 connections may add: hyper's buffers and tasks, a few
/// blocking threads (their stacks and malloc arenas), the throttle's entries. Measured here at
/// about 2 MiB; kept below one Argon2 area (19 MiB), so that a single area beyond the bound
/// fails the test.
const SLACK: u64 = 16 * MIB;

/// 64 wrong-password sign-ins, all connected first and then sent at once; the statuses.
async fn burst(server: SocketAddr) -> Vec<u16> {
    let start = Arc::new(tokio::sync::Barrier::new(BURST));
    let tasks: Vec<_> = (0..BURST)
        .map(|i| {
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                let last = u8::try_from(i + 1).expect("< 256");
                let from = IpAddr::V4(Ipv4Addr::new(127, 0, 1, last));
                let socket = TcpSocket::new_v4().expect("socket");
                socket.bind(SocketAddr::new(from, 0)).expect("bind");
                let mut stream = socket.connect(server).await.expect("connect");
                let body = format!("username=nobody{i}&password=wrong-{i}");
                let request = format!(
                    "POST /sign-in HTTP/1.1\r\nHost: {server}\r\nOrigin: http://{server}\r\n\
                     Content-Type: application/x-www-form-urlencoded\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                start.wait().await;
                stream.write_all(request.as_bytes()).await.expect("send");
                let mut raw = Vec::new();
                stream.read_to_end(&mut raw).await.expect("reply");
                common::parse(&raw)
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        let reply = task.await.expect("no panic");
        if reply.status == 503 {
            assert_eq!(reply.retry_after(), Some(1), "503 carries Retry-After");
        }
        statuses.push(reply.status);
    }
    statuses
}

struct Measured {
    before: u64,
    peak: u64,
    growth: u64,
    statuses: Vec<u16>,
    reset: bool,
    permits: u64,
}

async fn measure(permits: usize) -> Measured {
    let demo = DemoProcess::start(&["--sign-in-permits", &permits.to_string()]);
    let reset = demo.reset_peak();
    let before = demo.status_kib("VmRSS") * 1024;
    let statuses = tokio::time::timeout(Duration::from_secs(50), burst(demo.addr))
        .await
        .expect("the burst is answered within 50 s");
    let peak = demo.status_kib("VmHWM") * 1024;
    Measured {
        before,
        peak,
        growth: peak.saturating_sub(before),
        statuses,
        reset,
        permits: demo.permits,
    }
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|&&s| s == status).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_memory_under_64_concurrent_failed_sign_ins_stays_within_the_bound() {
    let measured = measure(narvik_demo::DEFAULT_SIGN_IN_PERMITS).await;
    let argon2 = u64::try_from(ARGON2_MEMORY_BYTES).expect("fits");
    let bound = measured.permits * argon2 + SLACK;
    println!(
        "peak RSS growth under {BURST} concurrent failed sign-ins: {:.1} MiB \
         (bound: {} permits × {} MiB + {} MiB slack = {} MiB; {} answered 401, {} 503; \
         RSS before {:.1} MiB, peak {:.1} MiB, peak reset before the burst: {})",
        measured.growth as f64 / MIB as f64,
        measured.permits,
        argon2 / MIB,
        SLACK / MIB,
        bound / MIB,
        count(&measured.statuses, 401),
        count(&measured.statuses, 503),
        measured.before as f64 / MIB as f64,
        measured.peak as f64 / MIB as f64,
        measured.reset,
    );
    assert_eq!(measured.permits, 4, "the default bound");
    assert!(
        measured
            .statuses
            .iter()
            .all(|&status| status == 401 || status == 503),
        "every attempt is a failure or a busy refusal: {:?}",
        measured.statuses
    );
    assert!(
        count(&measured.statuses, 401) >= 4,
        "the bound's permits were used"
    );
    assert!(
        measured.growth <= bound,
        "grew {} MiB, bound {} MiB",
        measured.growth / MIB,
        bound / MIB
    );
}

/// The same burst with 16 permits grows past the 4-permit bound: the measurement above sees
/// Argon2 memory, and would fail if the bound stopped holding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_burst_with_more_permits_grows_past_the_default_bound() {
    let measured = measure(16).await;
    let argon2 = u64::try_from(ARGON2_MEMORY_BYTES).expect("fits");
    let default_bound = 4 * argon2 + SLACK;
    println!(
        "peak RSS growth with 16 permits: {:.1} MiB ({} answered 401, {} 503)",
        measured.growth as f64 / MIB as f64,
        count(&measured.statuses, 401),
        count(&measured.statuses, 503),
    );
    assert!(
        measured.growth <= 16 * argon2 + SLACK,
        "within its own bound"
    );
    assert!(
        measured.growth > default_bound,
        "grew only {} MiB with 16 permits",
        measured.growth / MIB
    );
}
