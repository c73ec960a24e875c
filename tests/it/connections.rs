//! The HTTP layer of the real binary: the header-read timeout, a reason in every error answer
//! (including the ones the HTTP stack gives on its own), SIGTERM with work in flight, and who
//! keeps a connection when they run short. Clients are told apart by address: each test's
//! clients connect from addresses of their own in 127.0.0.0/8.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use hyper::header::HeaderName;
use testkit::binary::Binary;
use testkit::http::{connect_from, send_from, Connection, Request};
use testkit::metrics::series_value;
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

/// The scrape timeout the connection tests announce unless they say otherwise: probes get
/// 1 s (the offset is 0.5 s).
const SCRAPE_TIMEOUT: &str = "1.5";

fn client(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// A PACS that accepts the TCP connection and never says a word.
async fn silent_pacs() -> ScriptedPeer {
    ScriptedPeer::start(|mut conn: Conn| async move { conn.hold().await }).await
}

/// Asserts a probe answer failed with a timeout while waiting for the A-ASSOCIATE-AC.
fn assert_timed_out_waiting_for_the_pacs(text: &str) {
    let failure = text
        .lines()
        .find(|line| line.starts_with("probe_failure_info{"))
        .unwrap_or_else(|| panic!("no failure reason:\n{text}"));
    assert!(
        failure.contains(r#"stage="associate""#) && failure.contains(r#"reason="timeout""#),
        "{text}"
    );
}

/// `/probe` of the echo module against `target`, as Prometheus sends it with `scrape_timeout`.
fn probe_request(target: &str, scrape_timeout: &str) -> Request {
    Request::get(&format!(
        "/probe?module=echo&target={}",
        target.replace('@', "%40")
    ))
    .header(
        HeaderName::from_static("x-prometheus-scrape-timeout-seconds"),
        scrape_timeout,
    )
}

/// Kept-alive connections from one address that asked for `/-/healthy` once and now sit idle
/// (as a client that polls every 50 s does) fill every connection: a scrape from another
/// address still gets through, at once, and one idle connection was closed for it.
#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_of_one_client_give_way_to_another_clients_scrape() {
    let exporter = Binary::start(
        ECHO,
        &[
            "--web.max-connections=16",
            "--web.max-connections-per-client=16",
        ],
    );
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut connection = Connection::open_from(client(2), exporter.port)
            .await
            .expect("connect");
        let (answer, _) = connection
            .send(Request::get("/-/healthy"))
            .await
            .expect("healthy");
        assert_eq!(answer.status, 200);
        held.push(connection);
    }
    let scrape = send_from(client(3), exporter.port, Request::get("/metrics"))
        .await
        .expect("the scrape was answered");
    assert_eq!(scrape.status, 200, "{}", scrape.text());
    assert_eq!(
        series_value(
            &scrape.text(),
            "pacs_exporter_http_connections_evicted_total"
        ),
        Some(1.0),
        "{}",
        scrape.text()
    );
}

/// Connections from one address that send nothing fill every connection (with a header-read
/// timeout far beyond the test's patience): another address's scrape is answered, as the
/// holder of many gives way to a client with few; the holder's own next connection is not
/// let in by closing one of its own that has not sent its request, and is told why.
#[tokio::test(flavor = "multi_thread")]
async fn connections_that_send_nothing_give_way_to_a_scraper() {
    let exporter = Binary::start(
        ECHO,
        &[
            "--web.max-connections=16",
            "--web.max-connections-per-client=16",
            "--web.header-read-timeout=120s",
        ],
    );
    let mut silent = Vec::new();
    for _ in 0..16 {
        silent.push(
            connect_from(client(2), exporter.port)
                .await
                .expect("connect"),
        );
    }
    // The last of them is accepted before the scrape's connection.
    let own = send_from(client(2), exporter.port, Request::get("/-/healthy"))
        .await
        .expect("the holder's own request was answered");
    assert_eq!(own.status, 503, "{}", own.text());
    assert!(
        own.text().contains("--web.max-connections"),
        "{}",
        own.text()
    );

    let scrape = send_from(client(3), exporter.port, Request::get("/metrics"))
        .await
        .expect("the scrape was answered");
    assert_eq!(scrape.status, 200, "{}", scrape.text());
    let text = scrape.text();
    assert_eq!(
        series_value(
            &text,
            "pacs_exporter_http_connections_refused_total{reason=\"client_limit\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series_value(&text, "pacs_exporter_http_connections_evicted_total"),
        Some(1.0),
        "{text}"
    );
}

/// Connections handling requests are never closed to make room. One address holding its share
/// (three quarters) of busy connections is refused more with the per-client reason, while
/// other addresses still get the rest; once every connection is busy a newcomer is refused
/// at once with the reason, and every request of the burst is answered: a 503 with its reason
/// or the probe's failure, never a reset or silence.
#[tokio::test(flavor = "multi_thread")]
async fn busy_connections_leave_room_for_other_clients_and_the_rest_are_told_why() {
    let pacs = silent_pacs().await;
    let exporter = Binary::start(ECHO, &["--web.max-connections=8"]);
    let port = exporter.port;
    let probes: Vec<_> = (0..6)
        .map(|i| {
            let request = probe_request(&pacs.target(&format!("BUSY{i}")), "3.5");
            tokio::spawn(send_from(client(2), port, request))
        })
        .collect();
    // Another address watches the six become busy.
    let started = Instant::now();
    loop {
        let metrics = send_from(client(3), port, Request::get("/metrics"))
            .await
            .expect("answered");
        if series_value(&metrics.text(), "pacs_exporter_probes_in_flight") == Some(6.0) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{}",
            metrics.text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let over = send_from(
        client(2),
        port,
        probe_request(&pacs.target("OVER"), SCRAPE_TIMEOUT),
    )
    .await
    .expect("answered");
    assert_eq!(over.status, 503, "{}", over.text());
    assert!(
        over.text().contains("--web.max-connections-per-client"),
        "{}",
        over.text()
    );
    let scrape = send_from(client(3), port, Request::get("/metrics"))
        .await
        .expect("answered");
    assert_eq!(scrape.status, 200, "{}", scrape.text());

    // A burst from many addresses: two fit, the others are refused at once with the reason.
    let burst: Vec<_> = (10..30)
        .map(|last| {
            let request = probe_request(&pacs.target(&format!("BURST{last}")), SCRAPE_TIMEOUT);
            tokio::spawn(send_from(client(last), port, request))
        })
        .collect();
    let (mut failed, mut refused) = (0, 0);
    for answer in probes.into_iter().chain(burst) {
        let answer = answer
            .await
            .expect("task")
            .expect("every request is answered");
        match answer.status {
            200 => {
                assert!(
                    answer.text().contains("probe_success 0"),
                    "{}",
                    answer.text()
                );
                failed += 1;
            }
            503 => {
                assert!(
                    answer
                        .text()
                        .contains("all 8 connections are handling requests"),
                    "{}",
                    answer.text()
                );
                refused += 1;
            }
            other => panic!("{other}: {}", answer.text()),
        }
    }
    assert!(failed >= 6, "{failed} probe answers, {refused} refusals");
    assert!(refused >= 1, "{failed} probe answers, {refused} refusals");
    assert_eq!(failed + refused, 26);
}

/// 120 PACS of one site go silent at once, more than the 100 probes the exporter once ran at
/// a time: with the default flags every one of them reads as `probe_success 0` with its
/// reason, none as a 503.
#[tokio::test(flavor = "multi_thread")]
async fn an_outage_of_many_pacs_reads_as_that_many_probe_failures() {
    let pacs = silent_pacs().await;
    let exporter = Binary::start(ECHO, &[]);
    let port = exporter.port;
    let answers: Vec<_> = (0..120)
        .map(|i| {
            tokio::spawn(send_from(
                client(1),
                port,
                probe_request(&pacs.target(&format!("SITE{i}")), SCRAPE_TIMEOUT),
            ))
        })
        .collect();
    for answer in answers {
        let answer = answer.await.expect("task").expect("answered");
        let text = answer.text();
        assert_eq!(answer.status, 200, "{text}");
        assert_eq!(series_value(&text, "probe_success"), Some(0.0), "{text}");
        assert_timed_out_waiting_for_the_pacs(&text);
    }
}

/// A probe's budget counts from its request's arrival, not from the connect: a client that
/// connects ahead (as browsers preconnect) and asks 1.5 s later still gets the second it
/// asked for, by the exporter's own clock.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_opened_ahead_does_not_shorten_the_budget() {
    let pacs = silent_pacs().await;
    let exporter = Binary::start(ECHO, &[]);
    let stream = connect_from(client(5), exporter.port)
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let host = format!("127.0.0.1:{}", exporter.port);
    let answer = testkit::http::exchange(
        stream,
        &host,
        probe_request(&pacs.target("AHEAD"), SCRAPE_TIMEOUT),
    )
    .await
    .expect("answered");
    let text = answer.text();
    assert_eq!(series_value(&text, "probe_success"), Some(0.0), "{text}");
    assert_eq!(
        series_value(&text, "probe_timeout_seconds"),
        Some(1.0),
        "{text}"
    );
    // Had the 1.5 s wait counted, the deadline would have passed before the probe began (a
    // timeout at `resolve`, after no time at all). It connected and waited for the PACS
    // instead, for its budget less what handling the request took, which depends on the
    // machine's load; half the budget separates the two on any machine.
    assert_timed_out_waiting_for_the_pacs(&text);
    let ran = series_value(&text, "probe_duration_seconds").expect("a duration");
    assert!(
        ran >= 0.5,
        "the probe ran {ran} s of its 1 s budget:\n{text}"
    );
}

/// A kept-alive connection is closed once it has been idle for `--web.idle-timeout`, but
/// never while its request is handled, however much longer than both limits that takes.
#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_are_closed_but_busy_ones_never() {
    let pacs = silent_pacs().await;
    let exporter = Binary::start(
        ECHO,
        &["--web.idle-timeout=1s", "--web.header-read-timeout=1s"],
    );
    let mut stream = TcpStream::connect(("127.0.0.1", exporter.port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    // A probe with a 2.5 s budget: busy for longer than either limit.
    let path = format!(
        "/probe?module=echo&target={}",
        pacs.target("BUSY").replace('@', "%40")
    );
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nX-Prometheus-Scrape-Timeout-Seconds: 3\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("write");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !String::from_utf8_lossy(&answer).contains("probe_timeout_seconds 2.5") {
        let n = stream
            .read(&mut chunk)
            .expect("the answer, not a closed connection");
        assert!(
            n > 0,
            "closed while busy: {}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&chunk[..n]);
    }
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    // Now idle: closed by the server (end of stream), not by the read timeout.
    let closed = stream.read(&mut chunk);
    assert!(
        matches!(closed, Ok(0)),
        "the idle connection was not closed: {closed:?}"
    );
}
