//! Hostile API clients (issue #11, item 3): what an unauthenticated or misbehaving
//! client can make the server hold is bounded. Every connection count is small and on
//! loopback; every wait is bounded.

mod support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::time::{Duration, Instant};

use support::{connect_from, Server};

/// A server with small connection caps and short timeouts, so the tests stay quick.
fn bounded_server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("tern.toml");
    std::fs::write(
        &config,
        "max_connections = 24\nmax_connections_per_peer = 12\nheader_timeout_secs = 2\nidle_timeout_secs = 3\n",
    )
    .expect("write config");
    let server = Server::start_with(&["--config", config.to_str().expect("utf-8 path")]);
    (server, dir)
}

/// Reads until the server closes the connection (or the read times out); returns what
/// was read and how long the server took to close.
fn read_until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection open: {e}"),
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        started.elapsed(),
    )
}

fn health_from(server: &Server, source: Ipv4Addr) -> String {
    let mut s = connect_from(server, source);
    // A refused connection may already hold its 503 and be closed: the write can then
    // fail (EPIPE), and the answer is still there to read.
    let _ = write!(
        s,
        "GET /tern/v1/health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.host
    );
    read_until_closed(&mut s).0
}

#[test]
fn unsigned_upload_is_refused_before_its_body_is_read() {
    let (server, _dir) = bounded_server();
    let mut s = connect_from(&server, Ipv4Addr::LOCALHOST);
    // Announce a 60 MB body and send none of it: the answer must not wait for it.
    write!(
        s,
        "POST /2015-03-31/functions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 60000000\r\n\r\n",
        server.host
    )
    .expect("write");
    let mut head = [0u8; 512];
    let n = s.read(&mut head).expect("an answer without the body");
    let head = String::from_utf8_lossy(&head[..n]);
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-amzn-errortype: missingauthenticationtokenexception"),
        "{head}"
    );
}

#[test]
fn silent_and_half_sent_connections_are_closed() {
    let (server, _dir) = bounded_server();
    // Silent after connecting.
    let mut silent = connect_from(&server, Ipv4Addr::LOCALHOST);
    // Half a request head, then nothing.
    let mut slow = connect_from(&server, Ipv4Addr::LOCALHOST);
    write!(
        slow,
        "GET /tern/v1/health HTTP/1.1\r\nHost: {}\r\nX-Slow:",
        server.host
    )
    .expect("write");
    let (_, silent_after) = read_until_closed(&mut silent);
    let (_, slow_after) = read_until_closed(&mut slow);
    // idle_timeout_secs = 3 and header_timeout_secs = 2, checked a few times a second.
    assert!(silent_after < Duration::from_secs(8), "{silent_after:?}");
    assert!(slow_after < Duration::from_secs(8), "{slow_after:?}");
    assert!(server.healthy());
}

#[test]
fn connections_over_the_caps_get_a_503_and_others_are_still_served() {
    let (server, _dir) = bounded_server();
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    // The attacker fills its per-peer share (12) with silent connections.
    let held: Vec<TcpStream> = (0..12).map(|_| connect_from(&server, attacker)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut over = connect_from(&server, attacker);
    let (answer, _) = read_until_closed(&mut over);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 1"),
        "{answer}"
    );
    // Another client is served meanwhile.
    let ok = health_from(&server, Ipv4Addr::LOCALHOST);
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    // A second attacker address fills the rest of the total (24): then everyone waits.
    let second = Ipv4Addr::new(127, 0, 0, 3);
    let more: Vec<TcpStream> = (0..12).map(|_| connect_from(&server, second)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let full = health_from(&server, Ipv4Addr::LOCALHOST);
    assert!(full.starts_with("HTTP/1.1 503"), "{full}");
    // Once the silent connections time out, the server serves again.
    drop(held);
    drop(more);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let again = health_from(&server, Ipv4Addr::LOCALHOST);
        if again.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "never served again: {again}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
