//! The HTTP layer of the real binary: the header-read timeout, a reason in every error answer
//! (including the ones the HTTP stack gives on its own), and SIGTERM with work in flight.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use testkit::binary::Binary;
use testkit::scripted::{Conn, ScriptedPeer};

const ECHO: &str = "modules:\n  echo:\n    prober: echo\n    timeout: 3s\n";

/// Sends `request` as it is and reads the answer until the server closes the connection.
fn raw(port: u16, request: &[u8]) -> (u16, String, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (status, head.to_string(), body.to_string())
}

#[test]
fn every_error_answer_carries_a_one_line_reason() {
    let exporter = Binary::start(ECHO, &[]);
    let long_uri = format!("/probe?target={}", "A".repeat(70_000));
    let many_headers: String = (0..150).map(|i| format!("X-Filler-{i}: x\r\n")).collect();
    let huge_header = format!("X-Huge: {}\r\n", "x".repeat(600_000));
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        (
            b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_vec(),
            404,
            "not found",
        ),
        (
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                .to_vec(),
            405,
            "not allowed",
        ),
        (
            format!("GET {long_uri} HTTP/1.1\r\nHost: x\r\n\r\n").into_bytes(),
            414,
            "URI too long",
        ),
        (
            format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes(),
            431,
            "too large",
        ),
        (
            format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{huge_header}\r\n").into_bytes(),
            431,
            "too large",
        ),
        (b"BLAH\r\n\r\n".to_vec(), 400, "bad request"),
    ];
    for (request, status, reason) in cases {
        let (got, head, body) = raw(exporter.port, &request);
        let what = String::from_utf8_lossy(&request[..40.min(request.len())]).into_owned();
        assert_eq!(got, status, "{what}: {head}\n{body}");
        assert!(body.contains(reason), "{what}: {body:?}");
        assert_eq!(body.lines().count(), 1, "{what}: {body:?}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain"),
            "{what}: {head}"
        );
    }
}

#[test]
fn a_half_sent_request_is_closed_after_the_header_read_timeout() {
    let exporter = Binary::start(ECHO, &["--web.header-read-timeout=1s"]);
    let mut stream = TcpStream::connect(("127.0.0.1", exporter.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let start = Instant::now();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    assert!(read.is_ok(), "the connection was not closed: {read:?}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "closed only after {:?}",
        start.elapsed()
    );
    // The exporter still serves.
    assert_eq!(exporter.get("/-/healthy").0, 200);
}

/// SIGTERM stops accepting, closes a half-sent connection at once, lets the probe in flight
/// answer by its deadline, and exits 0 within the longest module timeout plus a second.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_and_exits_0_promptly() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.accept().await;
        conn.hold().await;
    })
    .await;
    let mut exporter = Binary::start(ECHO, &[]);
    let port = exporter.port;
    let mut half_sent = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    half_sent
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    let path = format!(
        "/probe?module=echo&target={}",
        peer.target("SILENT").replace('@', "%40")
    );
    let in_flight = std::thread::spawn(move || testkit::binary::http(port, "GET", &path));
    std::thread::sleep(Duration::from_millis(500));

    let start = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &exporter.pid().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let code = tokio::task::spawn_blocking(move || {
        let code = exporter.wait_exit(Duration::from_secs(10));
        (code, exporter)
    })
    .await
    .expect("wait");
    let (code, exporter) = code;
    let elapsed = start.elapsed();
    assert_eq!(code, Some(0), "exit status\n{}", exporter.log());
    assert!(
        elapsed < Duration::from_secs(3 + 1 + 1),
        "exited {elapsed:?} after SIGTERM\n{}",
        exporter.log()
    );
    let (status, body) = in_flight
        .join()
        .expect("probe thread")
        .expect("the probe in flight was answered");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("probe_success 0"), "{body}");
    assert!(body.contains("reason=\"timeout\""), "{body}");
}
