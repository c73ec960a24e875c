//! Benchmark: the memory hostile peers can make the exporter hold.
//!
//!     cargo build --release && cargo run --release --example hostile_memory [-- BINARY [PEERS]]
//!
//! Starts PEERS (default 100) scripted peers on loopback. Each answers a C-ECHO-RQ with a
//! C-ECHO-RSP that announces a data set and then sends 40 MiB of one, and a C-FIND-RQ with a
//! pending C-FIND-RSP whose identifier is 40 MiB. Starts the exporter BINARY (default
//! `target/release/pacs_exporter`) as a child process, runs one echo probe per peer, all at
//! once, then one find probe per peer, all at once, and prints the exporter's peak resident
//! set size (VmHWM in /proc/PID/status, Linux only) and how the probes ended.

#[path = "../tests/support/scripted.rs"]
mod scripted;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dicom_dictionary_std::tags;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu};
use scripted::{encode_pdu, response_command, Conn, ScriptedPeer, STUDY_ROOT_FIND};
use tokio::io::AsyncWriteExt;

/// What each peer sends as a data set.
const HOSTILE_BYTES: usize = 40 << 20;
/// The data set is sent in PDVs that fit the exporter's default maximum PDU (16 KiB).
const FRAGMENT: usize = 16_000;

/// Answers one DIMSE request (C-ECHO or C-FIND) with a response carrying 40 MiB.
async fn hostile(mut conn: Conn) {
    if conn.accept().await.is_none() {
        return;
    }
    let Some((pc, rq, _)) = conn.read_message().await else {
        return;
    };
    let field = rq
        .get(tags::COMMAND_FIELD)
        .and_then(|e| e.to_int::<u16>().ok());
    let Some(id) = rq
        .get(tags::MESSAGE_ID)
        .and_then(|e| e.to_int::<u16>().ok())
    else {
        return;
    };
    let rsp = match field {
        Some(0x0030) => response_command(0x8030, id, "1.2.840.10008.1.1", 0x0000, true),
        _ => response_command(0x8020, id, STUDY_ROOT_FIND, 0xFF00, true),
    };
    conn.send_message(pc, &rsp, None).await;
    let fragment = |is_last| {
        encode_pdu(&Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: pc,
                value_type: PDataValueType::Data,
                is_last,
                data: vec![0; FRAGMENT],
            }],
        })
    };
    let (more, last) = (fragment(false), fragment(true));
    let count = HOSTILE_BYTES / FRAGMENT;
    for i in 0..count {
        let bytes = if i + 1 == count { &last } else { &more };
        if conn.stream.write_all(bytes).await.is_err() {
            return;
        }
    }
    conn.hold().await;
}

struct Exporter {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Exporter {
    fn start(binary: &PathBuf) -> Exporter {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("modules.yml");
        std::fs::write(
            &config,
            "modules:\n  echo:\n    prober: echo\n    timeout: 10s\n  find:\n    prober: find\n    timeout: 10s\n",
        )
        .expect("write config");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(binary)
            .arg("--config.file")
            .arg(&config)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let exporter = Exporter {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !exporter.get("/-/healthy").starts_with("HTTP/1.1 200") {
            assert!(Instant::now() < deadline, "the exporter did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        exporter
    }

    /// One GET; the whole response, or "" when the exporter cannot be reached.
    fn get(&self, path: &str) -> String {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return String::new();
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\nConnection: close\r\n\r\n"
        );
        let mut response = String::new();
        if stream.write_all(request.as_bytes()).is_ok() {
            let _ = stream.read_to_string(&mut response);
        }
        response
    }

    /// A line of /proc/PID/status, in kB.
    fn status_kb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc/PID/status (Linux only)");
        status
            .lines()
            .find_map(|l| {
                l.strip_prefix(field)?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
    }
}

/// How the probes ended: `probe_failure_info` series (or success) and their counts.
fn outcomes(answers: &[String]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for answer in answers {
        let outcome = answer
            .lines()
            .find(|l| l.starts_with("probe_failure_info{"))
            .map(|l| l.trim_end_matches(" 1").to_string())
            .unwrap_or_else(|| {
                if answer.contains("\nprobe_success 1") {
                    "success".to_string()
                } else {
                    format!("no answer: {:?}", answer.lines().next().unwrap_or(""))
                }
            });
        *counts.entry(outcome).or_default() += 1;
    }
    counts
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let binary = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/pacs_exporter")
    });
    let peers: usize = args
        .next()
        .map_or(100, |n| n.parse().expect("PEERS: a number"));

    let mut scripted = Vec::new();
    for _ in 0..peers {
        scripted.push(ScriptedPeer::start(hostile).await);
    }
    let targets: Vec<String> = scripted.iter().map(|p| p.target("HOSTILE")).collect();
    let exporter = std::sync::Arc::new(Exporter::start(&binary));
    println!(
        "{peers} peers, each sending {} MiB; exporter {}",
        HOSTILE_BYTES >> 20,
        binary.display()
    );
    println!(
        "exporter resident at start: {} kB",
        exporter.status_kb("VmRSS:")
    );

    for module in ["echo", "find"] {
        let start = Instant::now();
        let probes: Vec<_> = targets
            .iter()
            .map(|target| {
                let exporter = exporter.clone();
                let path = format!(
                    "/probe?module={module}&target={}",
                    target.replace('@', "%40")
                );
                tokio::task::spawn_blocking(move || exporter.get(&path))
            })
            .collect();
        let mut answers = Vec::new();
        for probe in probes {
            answers.push(probe.await.expect("probe thread"));
        }
        println!(
            "{peers} concurrent {module} probes in {:.2}s: {:?}",
            start.elapsed().as_secs_f64(),
            outcomes(&answers)
        );
    }
    let peak = exporter.status_kb("VmHWM:");
    println!(
        "exporter peak resident set (VmHWM): {peak} kB = {:.1} MB",
        peak as f64 / 1000.0
    );
}
