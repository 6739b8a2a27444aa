//! The harness itself, on a server that is not a database: a Python HTTP server stands in, so
//! that freezing, killing and restarting are seen to do what the scenarios rely on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use narvik_faults::{free_port, ServerProcess, SilentListener};

fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream
        .write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut first = [0u8; 4];
    stream.read_exact(&mut first).is_ok() && &first == b"HTTP"
}

fn http_server(port: u16) -> ServerProcess {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("http.log");
    // The directory must outlive the server; it is small, so it is leaked into the OS temp dir.
    let dir = dir.keep();
    ServerProcess::start_with_check(
        "python http.server",
        port,
        log,
        move || {
            let mut command = Command::new("python3");
            command
                .args([
                    "-m",
                    "http.server",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                ])
                .current_dir(&dir);
            command
        },
        answers,
    )
}

#[test]
fn freeze_kill_and_restart_do_what_they_say() {
    let port = free_port();
    let mut server = http_server(port);
    assert!(answers(port));
    server.freeze();
    assert!(!answers(port), "a frozen server answered");
    server.resume();
    assert!(answers(port), "a resumed server did not answer");
    server.kill();
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "a killed server still accepts connections"
    );
    server.start_again();
    assert!(answers(port), "the restarted server did not answer");
    drop(server);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "dropping the handle left the server running"
    );
}

#[test]
fn a_silent_listener_accepts_and_never_answers() {
    let listener = SilentListener::start();
    let mut stream = TcpStream::connect(listener.address()).expect("it accepts");
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    stream.write_all(b"PING\r\n").expect("it takes bytes");
    let mut buffer = [0u8; 1];
    match stream.read(&mut buffer) {
        Err(error) => assert!(
            matches!(
                error.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{error}"
        ),
        Ok(read) => panic!("a silent listener answered {read} bytes"),
    }
}
