//! A listener that accepts connections and never answers: the worst kind of dead server.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Accepts every connection on a loopback port and holds it open without reading or writing,
/// until dropped.
pub struct SilentListener {
    address: SocketAddr,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SilentListener {
    /// Starts listening on a free loopback port.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let address = listener.local_addr().expect("the listener's address");
        let stopping = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&stopping);
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    held.push(stream);
                }
            }
        });
        Self {
            address,
            stopping,
            thread: Some(thread),
        }
    }

    /// The address to point a store at.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The port to point a store at.
    pub fn port(&self) -> u16 {
        self.address.port()
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // One more connection wakes the accept loop so that it sees the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
