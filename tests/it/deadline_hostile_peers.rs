//! Peers that keep a probe busy: a stream of empty P-DATA PDUs, an endless fast C-FIND answer,
//! bytes dripped one at a time, at every step of an association (connect, TLS, associate, the
//! DIMSE exchange, release). Whatever the peer sends or withholds, `/probe` answers by its
//! deadline with `probe_success 0` and reason `timeout`, in the step the peer held it in.
//!
//! The tests run one at a time: each keeps a core busy on purpose, and the margin they check
//! (50 ms past the deadline) is about the exporter, not about a crowded machine.

use std::time::Duration;

use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use testkit::exporter::{Answer, Exporter};
use testkit::scripted::{
    encode_command, encode_dataset, encode_pdu, response_command, study_match, Conn, ScriptedPeer,
    STUDY_ROOT_FIND,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

const CONFIG: &str = "
modules:
  echo:
    prober: echo
    timeout: 10s
  find:
    prober: find
    timeout: 10s
    find:
      # Out of reach within the deadline on any machine (400 million matches a second), so
      # an endless answer is cut by the deadline alone.
      max_matches: 1000000000
  tls_echo:
    prober: echo
    timeout: 10s
    dicom:
      tls:
        insecure_skip_verify: true
";

/// Prometheus' scrape timeout in these tests; the probe deadline is 0.5 s less.
const SCRAPE_TIMEOUT: f64 = 3.0;
const DEADLINE: Duration = Duration::from_millis(2500);
/// How late after its deadline a probe may answer.
const MARGIN: Duration = Duration::from_millis(50);

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Probes `target` with `module` and checks that the answer is a timeout in `stage`, given
/// by the deadline.
async fn assert_timeout(module: &str, target: &str, stage: &str) -> Answer {
    let _turn = ONE_AT_A_TIME.lock().await;
    let answer = Exporter::new(CONFIG)
        .probe(module, target, Some(SCRAPE_TIMEOUT))
        .await;
    assert!(
        answer.elapsed <= DEADLINE + MARGIN,
        "{module} {stage}: answered {:?} after the request, deadline {DEADLINE:?}\n{}",
        answer.elapsed,
        answer.body
    );
    answer.assert_failed(stage, "timeout");
    assert_eq!(answer.metric("probe_timeout_seconds"), 2.5);
    answer
}

/// 64 KiB of P-DATA-TF PDUs that carry no PDV at all.
fn empty_pdata_pdus() -> Vec<u8> {
    [0x04, 0, 0, 0, 0, 0].repeat(64 * 1024 / 6)
}

/// 64 KiB of P-DATA-TF PDUs that each carry one empty, non-final command fragment.
fn empty_pdv_pdus(pc: u8) -> Vec<u8> {
    let pdu = encode_pdu(&Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc,
            value_type: PDataValueType::Command,
            is_last: false,
            data: Vec::new(),
        }],
    });
    pdu.repeat(64 * 1024 / pdu.len())
}

/// One P-DATA-TF PDU with one final PDV.
fn pdv_pdu(pc: u8, value_type: PDataValueType, data: Vec<u8>) -> Vec<u8> {
    encode_pdu(&Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc,
            value_type,
            is_last: true,
            data,
        }],
    })
}

/// Writes `bytes` again and again until the client goes away.
async fn flood(conn: &mut Conn, bytes: &[u8]) {
    while conn.stream.write_all(bytes).await.is_ok() {}
}

/// Accepts and answers the C-ECHO-RQ with success; whether the client got that far.
async fn echo_then(conn: &mut Conn) -> bool {
    conn.accept().await.is_some() && conn.echo_response(0x0000).await.is_some()
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_pdata_pdus_during_the_echo() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.accept().await;
        if conn.read_message().await.is_some() {
            flood(&mut conn, &empty_pdata_pdus()).await;
        }
    })
    .await;
    assert_timeout("echo", &peer.target("X"), "echo").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_command_fragments_during_the_echo() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.accept().await;
        if let Some((pc, _, _)) = conn.read_message().await {
            flood(&mut conn, &empty_pdv_pdus(pc)).await;
        }
    })
    .await;
    assert_timeout("echo", &peer.target("X"), "echo").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_drip_of_the_echo_response() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.accept().await;
        let Some((pc, rq, _)) = conn.read_message().await else {
            return;
        };
        let id = rq
            .get(dicom_dictionary_std::tags::MESSAGE_ID)
            .and_then(|e| e.to_int::<u16>().ok())
            .unwrap_or(1);
        let rsp = response_command(0x8030, id, "1.2.840.10008.1.1", 0, false);
        let pdu = pdv_pdu(pc, PDataValueType::Command, encode_command(&rsp));
        // About 100 bytes, one every 50 ms: complete only after the deadline.
        conn.drip(&pdu, Duration::from_millis(50)).await;
    })
    .await;
    assert_timeout("echo", &peer.target("X"), "echo").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn endless_fast_find_answer() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        conn.accept().await;
        let Some((pc, id, _)) = conn.read_find().await else {
            return;
        };
        let rsp = response_command(0x8020, id, STUDY_ROOT_FIND, 0xFF00, true);
        let data = encode_dataset(&study_match("1.2.3", "20240101", "120000", Some(1)));
        // Many pending responses in one write, again and again.
        let mut burst = Vec::new();
        for _ in 0..64 {
            burst.extend(pdv_pdu(pc, PDataValueType::Command, encode_command(&rsp)));
            burst.extend(pdv_pdu(pc, PDataValueType::Data, data.clone()));
        }
        flood(&mut conn, &burst).await;
    })
    .await;
    assert_timeout("find", &peer.target("X"), "find").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_pdata_pdus_during_the_release() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        if echo_then(&mut conn).await {
            if let Some(Pdu::ReleaseRQ) = conn.read_pdu().await {
                flood(&mut conn, &empty_pdata_pdus()).await;
            }
        }
    })
    .await;
    assert_timeout("echo", &peer.target("X"), "release").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_drip_of_the_release_response() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        if echo_then(&mut conn).await {
            if let Some(Pdu::ReleaseRQ) = conn.read_pdu().await {
                let rp = encode_pdu(&Pdu::ReleaseRP);
                conn.drip(&rp, Duration::from_millis(400)).await;
            }
        }
    })
    .await;
    assert_timeout("echo", &peer.target("X"), "release").await;
}

/// An A-ASSOCIATE-AC announcing the most a control PDU may carry, one byte every 2 ms.
#[tokio::test(flavor = "multi_thread")]
async fn fast_drip_of_a_long_accept() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        if conn.read_request().await.is_some() {
            let mut bytes = vec![0x02, 0x00, 0x00, 0x01, 0x00, 0x00];
            bytes.resize(6 + 0x1_0000, 0);
            conn.drip(&bytes, Duration::from_millis(2)).await;
        }
    })
    .await;
    assert_timeout("echo", &peer.target("X"), "associate").await;
}

/// A TLS peer that accepts TCP, reads the ClientHello and drips a ServerHello record.
#[tokio::test(flavor = "multi_thread")]
async fn slow_drip_of_the_tls_handshake() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        let mut hello = [0u8; 5];
        if tokio::io::AsyncReadExt::read_exact(&mut conn.stream, &mut hello)
            .await
            .is_err()
        {
            return;
        }
        // A handshake record of 512 bytes that begins a ServerHello, one byte every 20 ms.
        let mut record = vec![
            0x16, 0x03, 0x03, 0x02, 0x00, 0x02, 0x00, 0x01, 0xFC, 0x03, 0x03,
        ];
        record.resize(5 + 512, 0x42);
        conn.drip(&record, Duration::from_millis(20)).await;
    })
    .await;
    assert_timeout("tls_echo", &peer.target("X"), "tls").await;
}

/// A listener whose accept queue is full: the kernel drops our SYN and the connect hangs.
#[tokio::test(flavor = "multi_thread")]
async fn connect_to_a_full_accept_queue() {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let address: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
    socket.bind(&address.into()).expect("bind loopback");
    socket.listen(0).expect("listen");
    let address = socket
        .local_addr()
        .expect("local address")
        .as_socket()
        .expect("IP address");
    // Fill the queue; nobody accepts.
    let mut queued = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(address),
        )
        .await
        {
            Ok(Ok(stream)) => queued.push(stream),
            _ => break,
        }
    }
    assert_timeout("echo", &format!("X@{address}"), "connect").await;
    drop(socket);
}
