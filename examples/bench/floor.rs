//! The socket floor: what an echo probe's socket traffic alone costs this machine, so that the
//! fleet's figures can be read against what the machine can do at all.
//!
//! Blocking threads play the three parts with nothing else to do: no runtime, no parsing, no
//! metrics. A client sends a 124-byte request on a kept-alive connection (as Prometheus
//! scrapes); the "exporter" connects to the "PACS" with `TCP_NODELAY`, makes the echo probe's
//! three round trips with the demo SCP's byte counts (A-ASSOCIATE 250 → 209, C-ECHO 80 → 90,
//! A-RELEASE 10 → 10), asking for a quick ACK after each read as the exporter does, closes,
//! and answers 1,696 bytes. Each part's threads add up their own CPU time.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::process::thread_cpu_seconds;
use crate::report::{thousands, Table};

/// Request and answer sizes of one demo echo probe: HTTP, then the three DICOM round trips.
const REQUEST: usize = 124;
const ROUND_TRIPS: [(usize, usize); 3] = [(250, 209), (80, 90), (10, 10)];
const RESPONSE: usize = 1_696;

/// What the floor measured.
pub struct Floor {
    pub table: Table,
    pub rate: f64,
    /// CPU seconds per probe of the part the exporter plays.
    pub exporter_cpu: f64,
    /// CPU seconds per probe of all three parts.
    pub all_cpu: f64,
}

/// CPU time of one part's threads, in microseconds.
#[derive(Default)]
struct Part(AtomicU64);

impl Part {
    fn add_this_thread(&self) {
        self.0
            .fetch_add((thread_cpu_seconds() * 1e6) as u64, Ordering::Relaxed);
    }

    fn per_probe(&self, probes: f64) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 / 1e6 / probes
    }
}

#[derive(Default)]
struct Parts {
    client: Part,
    exporter: Part,
    pacs: Part,
}

/// `clients` clients for `duration` seconds.
pub fn measure(clients: usize, duration: f64) -> Floor {
    let parts = Arc::new(Parts::default());
    let pacs = TcpListener::bind("127.0.0.1:0").expect("bind the PACS");
    let pacs_address = pacs.local_addr().expect("PACS address");
    let http = TcpListener::bind("127.0.0.1:0").expect("bind the exporter");
    let http_address = http.local_addr().expect("exporter address");
    let done = Arc::new(AtomicBool::new(false));

    let pacs_threads: Vec<_> = (0..clients)
        .map(|_| {
            let (pacs, parts, done) = (
                pacs.try_clone().expect("PACS listener"),
                parts.clone(),
                done.clone(),
            );
            thread::spawn(move || {
                while let Ok((stream, _)) = pacs.accept() {
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    associate(stream);
                }
                parts.pacs.add_this_thread();
            })
        })
        .collect();
    let exporter_parts = parts.clone();
    let exporter = thread::spawn(move || {
        let mut connections = Vec::new();
        for _ in 0..clients {
            let (stream, _) = http.accept().expect("accept a client");
            let parts = exporter_parts.clone();
            connections.push(thread::spawn(move || {
                serve(stream, pacs_address);
                parts.exporter.add_this_thread();
            }));
        }
        for c in connections {
            c.join().expect("exporter thread");
        }
    });

    let probes = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(duration);
    let client_threads: Vec<_> = (0..clients)
        .map(|_| {
            let (parts, probes) = (parts.clone(), probes.clone());
            thread::spawn(move || {
                scrape(http_address, end, &probes);
                parts.client.add_this_thread();
            })
        })
        .collect();
    for c in client_threads {
        c.join().expect("client thread");
    }
    let wall = started.elapsed().as_secs_f64();
    exporter.join().expect("exporter");
    done.store(true, Ordering::Relaxed);
    for _ in &pacs_threads {
        let _ = TcpStream::connect(pacs_address);
    }
    for p in pacs_threads {
        p.join().expect("PACS thread");
    }

    let count = probes.load(Ordering::Relaxed).max(1) as f64;
    let (client, exporter, pacs) = (
        parts.client.per_probe(count),
        parts.exporter.per_probe(count),
        parts.pacs.per_probe(count),
    );
    let micros = |s: f64| format!("{:.0} µs", s * 1e6);
    let mut table = Table::pairs();
    table.pair(
        "load",
        format!("{clients} clients for {duration} s, blocking threads"),
    );
    table.pair("probes/s", thousands((count / wall) as u64));
    table.pair("CPU per probe, all parts", micros(client + exporter + pacs));
    table.pair("… the exporter's part", micros(exporter));
    table.pair("… the PACS's part", micros(pacs));
    table.pair("… the client's part", micros(client));
    Floor {
        table,
        rate: count / wall,
        exporter_cpu: exporter,
        all_cpu: client + exporter + pacs,
    }
}

/// One client: requests on one kept-alive connection until `end`.
fn scrape(address: std::net::SocketAddr, end: Instant, probes: &AtomicUsize) {
    let mut stream = TcpStream::connect(address).expect("connect to the exporter");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let request = [b'G'; REQUEST];
    let mut buffer = vec![0; RESPONSE];
    while Instant::now() < end {
        stream.write_all(&request).expect("send a request");
        stream.read_exact(&mut buffer).expect("read an answer");
        probes.fetch_add(1, Ordering::Relaxed);
    }
}

/// The exporter's part for one client connection: a probe per request.
fn serve(mut client: TcpStream, pacs: std::net::SocketAddr) {
    client.set_nodelay(true).expect("TCP_NODELAY");
    let mut request = [0; REQUEST];
    let response = vec![b'x'; RESPONSE];
    let mut buffer = [0; 512];
    while client.read_exact(&mut request).is_ok() {
        let mut stream = TcpStream::connect(pacs).expect("connect to the PACS");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        for (ask, answer) in ROUND_TRIPS {
            stream.write_all(&buffer[..ask]).expect("send a PDU");
            stream
                .read_exact(&mut buffer[..answer])
                .expect("read a PDU");
            quick_ack(&stream);
        }
        drop(stream);
        client.write_all(&response).expect("answer");
    }
}

/// The PACS's part for one association: answers the three requests, then waits for the close.
fn associate(mut stream: TcpStream) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut buffer = [0; 512];
    for (ask, answer) in ROUND_TRIPS {
        if stream.read_exact(&mut buffer[..ask]).is_err() {
            return;
        }
        quick_ack(&stream);
        if stream.write_all(&buffer[..answer]).is_err() {
            return;
        }
    }
    let _ = stream.read(&mut buffer);
}

fn quick_ack(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_tcp_quickack(true);
}
