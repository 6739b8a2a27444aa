//! Free loopback ports for servers a test starts itself.

use std::net::TcpListener;

/// A loopback port nobody listens on right now (the OS picks it; it is released at once, so a
/// server started on it a moment later almost always gets it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("the OS hands out a loopback port")
}
