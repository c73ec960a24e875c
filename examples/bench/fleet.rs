//! Load: many `/probe` requests at once against the release binary, measured from outside.
//!
//!     cargo build --release
//!     cargo run --release --example load -- [silent|echo|all] [options]
//!
//! It builds nothing: it starts `target/release/pacs_exporter` (or `--binary`) as a child
//! process with a config written to a temporary directory, and prints one Markdown table per
//! case, headed by the machine, the date, the revision and the command, for BENCHMARKS.md.
//!
//! - `silent`: `--requests` (2000) requests at once, each with
//!   `X-Prometheus-Scrape-Timeout-Seconds: --scrape-timeout` (2.5), at distinct targets
//!   (`SILENTnnnn@127.0.0.X:port`) served by `--listeners` loopback listeners that accept TCP and
//!   then say nothing. Run twice: without a bound (`--probe.max-concurrent=0`: every answer is a
//!   200 timeout) and with `--max-concurrent` (100, the exporter's default: the rest queue and
//!   are answered 503 when less than the floor is left).
//! - `echo`: `--clients` (64) clients, each on one kept-alive connection as Prometheus scrapes,
//!   send echo probes for `--duration` seconds (10) over `--targets` (1000) distinct targets
//!   (called AE titles `ECHOnnnn`, which the demo SCP accepts) at the demo SCP of a second
//!   `pacs_exporter --demo` process, so that the exporter's CPU is not mixed with the SCP's.
//!
//! Every case reports answers by status, answers later than the probe's deadline plus 50 ms
//! (the exporter's promise; the deadline is the scrape timeout minus the 0.5 s offset, counted
//! from the moment the request's last byte was written, and also, for information, from before
//! connecting, which adds the time a connection waits to be accepted), what the exporter
//! itself counted as late (`pacs_exporter_probe_deadline_overruns_total`), latency percentiles, and the exporter's peak resident set (VmHWM), open descriptors
//! (`/proc/PID/fd`) and CPU time (`/proc/PID/stat`). Linux only. The load runs on the same
//! machine as the exporter and takes its share of the cores.

use std::collections::BTreeMap;
use std::io;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::client::conn::http1::{handshake, SendRequest};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The exporter's default `--timeout-offset`.
const OFFSET: f64 = 0.5;
/// How late an answer may be after the probe's deadline (README, "Never late").
const GRACE: Duration = Duration::from_millis(50);
/// Requests that have had no answer this long after their deadline are given up.
const GIVE_UP: Duration = Duration::from_secs(15);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Case {
    Silent,
    Echo,
    All,
}

/// Load against the release binary; see the module documentation.
#[derive(Parser, Debug)]
struct Options {
    #[arg(value_enum, default_value = "all")]
    case: Case,
    /// The exporter binary.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/pacs_exporter"))]
    binary: PathBuf,
    /// silent: requests sent at once.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// silent: loopback listeners (127.0.0.2, 127.0.0.3, …) that accept and say nothing.
    #[arg(long, default_value_t = 8)]
    listeners: usize,
    /// silent: `--probe.max-concurrent` of the bounded run.
    #[arg(long, default_value_t = 100)]
    max_concurrent: usize,
    /// X-Prometheus-Scrape-Timeout-Seconds sent with every probe.
    #[arg(long, default_value_t = 2.5)]
    scrape_timeout: f64,
    /// echo: seconds of load.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// echo: concurrent clients, each on one kept-alive connection.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// echo: distinct targets, probed in turn.
    #[arg(long, default_value_t = 1000)]
    targets: usize,
}

impl Options {
    /// The budget each probe runs under (the exporter's rule, with a module timeout of 10 s).
    fn budget(&self) -> Duration {
        let scrape = self.scrape_timeout;
        let budget = if scrape > OFFSET {
            scrape - OFFSET
        } else {
            scrape / 2.0
        };
        Duration::from_secs_f64(budget.min(10.0))
    }
}

/// One answer, seen from the client.
#[derive(Clone, Debug)]
struct Answer {
    /// HTTP status; 0 when there was no answer (connection failed, or given up).
    status: u16,
    /// `probe_success 1` in the body.
    success: bool,
    elapsed: Duration,
    /// From the request's last byte written to the answer's last byte read.
    since_written: Duration,
    /// `probe_duration_seconds` in the body: the probe's time by the exporter's clock.
    probe_seconds: Option<f64>,
}

impl Answer {
    fn none(start: Instant) -> Answer {
        Answer {
            status: 0,
            success: false,
            elapsed: start.elapsed(),
            since_written: start.elapsed(),
            probe_seconds: None,
        }
    }
}

/// The exporter's process figures at one moment.
#[derive(Clone, Copy, Debug)]
struct Sample {
    hwm_kb: u64,
    fds: usize,
    cpu: f64,
}

/// A child `pacs_exporter` on a free loopback port, killed when dropped.
struct Exporter {
    child: Child,
    port: u16,
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Exporter {
    /// Starts `binary` with `modules` (YAML) as its config and `flags`, and waits until it is
    /// healthy. With `--demo` among the flags, the demo's targets are read from its output.
    async fn start(binary: &Path, modules: &str, flags: &[String]) -> (Exporter, String) {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("modules.yml");
        std::fs::write(&config, modules).expect("write config");
        let port = free_port();
        let mut args = vec![
            format!("--config.file={}", config.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
            "--log.level=error".to_string(),
        ];
        args.extend_from_slice(flags);
        let demo = flags.iter().any(|f| f == "--demo");
        let mut child = Command::new(binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(if demo { Stdio::piped() } else { Stdio::null() })
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut stdout = String::new();
        if demo {
            // The demo prints its targets at start, the source first.
            let mut pipe = std::io::BufReader::new(child.stdout.take().expect("stdout"));
            while !stdout.contains("source:") {
                let n = pipe.read_line(&mut stdout).expect("demo output");
                assert!(n > 0, "the demo exited: {stdout}");
            }
            // The rest is read and dropped: a closed pipe would end the demo at its next line.
            std::thread::spawn(move || std::io::copy(&mut pipe, &mut std::io::sink()));
        }
        let exporter = Exporter {
            child,
            port,
            args,
            _dir: dir,
        };
        let started = Instant::now();
        while get(port, "/-/healthy", None).await.status != 200 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the exporter did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (exporter, stdout)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn sample(&self) -> Sample {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .expect("/proc/PID/status (Linux only)");
        let hwm_kb = status
            .lines()
            .find_map(|l| {
                l.strip_prefix("VmHWM:")?
                    .trim()
                    .strip_suffix("kB")?
                    .trim()
                    .parse()
                    .ok()
            })
            .expect("VmHWM in /proc/PID/status");
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("/proc/PID/fd")
            .count();
        Sample {
            hwm_kb,
            fds,
            cpu: cpu_seconds(pid),
        }
    }

    /// The command line, without the temporary config path.
    fn command(&self) -> String {
        let args: Vec<&str> = self
            .args
            .iter()
            .filter(|a| !a.starts_with("--config.file") && !a.starts_with("--web.listen"))
            .map(String::as_str)
            .collect();
        format!("pacs_exporter {}", args.join(" "))
    }
}

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name, which is in parentheses and may hold spaces; the first
    // of them is field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat") + 2..]
        .split(' ')
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / clock_ticks()
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn probe_path(module: &str, target: &str) -> String {
    format!(
        "/probe?module={module}&target={}",
        target.replace('@', "%40")
    )
}

/// Sends one GET on `connection`; the answer, timed from `start`.
async fn send(
    connection: &mut Connection,
    path: &str,
    scrape_timeout: Option<f64>,
    start: Instant,
) -> Result<Answer, hyper::Error> {
    let mut request = Request::get(path).header("host", "127.0.0.1");
    if let Some(seconds) = scrape_timeout {
        request = request.header("x-prometheus-scrape-timeout-seconds", seconds.to_string());
    }
    let response = connection
        .sender
        .send_request(request.body(Empty::new()).expect("request"))
        .await?;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    let body = String::from_utf8_lossy(&body);
    let written = *connection.written.lock().expect("lock");
    Ok(Answer {
        status,
        success: body.lines().any(|l| l == "probe_success 1"),
        elapsed: start.elapsed(),
        since_written: written.elapsed(),
        probe_seconds: body
            .lines()
            .find_map(|l| l.strip_prefix("probe_duration_seconds ")?.parse().ok()),
    })
}

/// A connection to the exporter that notes when a request's bytes were last written to it,
/// so that the time the exporter took can be told from the time the request took to get
/// there.
struct Timed {
    stream: TcpStream,
    written: Arc<Mutex<Instant>>,
}

impl AsyncRead for Timed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Timed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(_)) = result {
            *this.written.lock().expect("lock") = Instant::now();
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// A kept-alive connection to the exporter.
struct Connection {
    sender: SendRequest<Empty<Bytes>>,
    written: Arc<Mutex<Instant>>,
}

/// Opens a connection to the exporter.
async fn connect(port: u16) -> Option<Connection> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    let written = Arc::new(Mutex::new(Instant::now()));
    let timed = Timed {
        stream,
        written: written.clone(),
    };
    let (sender, connection) = handshake(TokioIo::new(timed)).await.ok()?;
    tokio::spawn(connection);
    Some(Connection { sender, written })
}

/// One GET on a connection of its own, timed from before the connection is opened.
async fn get(port: u16, path: &str, scrape_timeout: Option<f64>) -> Answer {
    let start = Instant::now();
    let answer = async {
        let mut connection = connect(port).await?;
        send(&mut connection, path, scrape_timeout, start)
            .await
            .ok()
    };
    let limit = Duration::from_secs_f64(scrape_timeout.unwrap_or(10.0)) + GIVE_UP;
    match tokio::time::timeout(limit, answer).await {
        Ok(Some(answer)) => answer,
        _ => Answer::none(start),
    }
}

/// A series of the exporter's `/metrics`, 0 when absent.
async fn exporter_metric(port: u16, name: &str) -> f64 {
    let text = async {
        let mut connection = connect(port).await?;
        let request = Request::get("/metrics")
            .header("host", "127.0.0.1")
            .body(Empty::new())
            .expect("request");
        let response = connection.sender.send_request(request).await.ok()?;
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some(String::from_utf8_lossy(&body).into_owned())
    };
    text.await
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Listeners on 127.0.0.2, 127.0.0.3, … that accept connections and never write; each
/// connection is read (and discarded) until the exporter closes it. Dropped with the runtime.
async fn silent_listeners(count: usize) -> Vec<String> {
    let mut addresses = Vec::new();
    for i in 0..count {
        let listener = TcpListener::bind((format!("127.0.0.{}", i + 2), 0))
            .await
            .expect("bind a loopback address");
        addresses.push(listener.local_addr().expect("address").to_string());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut sink = [0u8; 1024];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
        });
    }
    addresses
}

/// The largest amount by which a 10 ms sleep overslept in this process while it ran: how
/// late this load generator itself was to read answers.
struct TimerLag {
    task: tokio::task::JoinHandle<()>,
    worst_us: Arc<std::sync::atomic::AtomicU64>,
}

impl TimerLag {
    fn start() -> TimerLag {
        let worst_us = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let worst = worst_us.clone();
        let task = tokio::spawn(async move {
            loop {
                let before = Instant::now();
                tokio::time::sleep(Duration::from_millis(10)).await;
                let over = before.elapsed().saturating_sub(Duration::from_millis(10));
                worst.fetch_max(over.as_micros() as u64, Ordering::Relaxed);
            }
        });
        TimerLag { task, worst_us }
    }

    fn stop(self) -> Duration {
        self.task.abort();
        Duration::from_micros(self.worst_us.load(Ordering::Relaxed))
    }
}

/// Figures of one case, printed as a table.
struct Report {
    title: String,
    load_average: String,
    exporter_command: String,
    rows: Vec<(String, String)>,
}

impl Report {
    fn new(title: &str, exporter: &Exporter) -> Report {
        Report {
            title: title.to_string(),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
            exporter_command: exporter.command(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, name: &str, value: impl ToString) {
        self.rows.push((name.to_string(), value.to_string()));
    }

    /// Statuses, lateness and latency of `answers`, for probes that ran under `budget`.
    fn answers(&mut self, answers: &[Answer], budget: Duration, scrape_timeout: f64) {
        let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
        for a in answers {
            *statuses.entry(a.status).or_default() += 1;
        }
        let count = |s: u16| statuses.get(&s).copied().unwrap_or(0);
        let other: Vec<String> = statuses
            .iter()
            .filter(|(s, _)| ![200, 503].contains(*s))
            .map(|(s, n)| match s {
                0 => format!("{n} without an answer"),
                s => format!("{n} × {s}"),
            })
            .collect();
        let successes = answers.iter().filter(|a| a.success).count();
        let limit = budget + GRACE;
        let late = answers.iter().filter(|a| a.since_written > limit).count();
        let late_from_start = answers.iter().filter(|a| a.elapsed > limit).count();
        let scrape = Duration::from_secs_f64(scrape_timeout);
        let dropped = answers.iter().filter(|a| a.elapsed > scrape).count();
        self.row("requests", answers.len());
        self.row(
            "200",
            format!("{} ({successes} with `probe_success 1`)", count(200)),
        );
        self.row("503", count(503));
        self.row(
            "other statuses",
            if other.is_empty() {
                "0".to_string()
            } else {
                other.join(", ")
            },
        );
        let verdict = if late == 0 { "" } else { " **FAIL**" };
        self.row(
            &format!(
                "answers after deadline + 50 ms ({:.2} s after the request was sent)",
                limit.as_secs_f64()
            ),
            format!("{late}{verdict}"),
        );
        self.row(
            "… counted from before connecting (includes waiting to be accepted)",
            late_from_start,
        );
        self.row(
            &format!("answers after the scrape timeout ({scrape_timeout} s, counted from before connecting)"),
            dropped,
        );
        let mut times: Vec<Duration> = answers.iter().map(|a| a.elapsed).collect();
        times.sort();
        let at =
            |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
        if !times.is_empty() {
            self.row(
                "latency p50 / p99 / max (from before connecting)",
                format!("{} / {} / {}", ms(at(0.5)), ms(at(0.99)), ms(at(1.0))),
            );
        }
        self.outside_the_probe(answers);
    }

    /// How long the probes ran by the exporter's clock, and what the answers took beyond that
    /// (waiting to be read, queued for a slot, written back, read by this client).
    fn outside_the_probe(&mut self, answers: &[Answer]) {
        let ran: Vec<(f64, f64)> = answers
            .iter()
            .filter_map(|a| Some((a.probe_seconds?, a.since_written.as_secs_f64())))
            .collect();
        if ran.is_empty() {
            return;
        }
        let slowest = ran.iter().map(|r| r.0).fold(0.0, f64::max);
        let mut outside: Vec<f64> = ran.iter().map(|(probe, seen)| seen - probe).collect();
        outside.sort_by(f64::total_cmp);
        let p99 = outside[(outside.len() * 99).div_ceil(100).max(1) - 1];
        self.row(
            "slowest `probe_duration_seconds` (exporter's clock)",
            format!("{:.0} ms", slowest * 1000.0),
        );
        self.row(
            "answer time minus `probe_duration_seconds`, p99 / max",
            format!(
                "{:.0} ms / {:.0} ms",
                p99 * 1000.0,
                outside.last().copied().unwrap_or(0.0) * 1000.0
            ),
        );
    }

    /// Memory, descriptors and CPU of the exporter between `before`, `after` and `settled`.
    fn process(&mut self, before: Sample, after: Sample, settled: Sample) {
        self.row(
            "exporter peak RSS (VmHWM) before → after",
            format!("{:.1} MB → {:.1} MB", mb(before.hwm_kb), mb(after.hwm_kb)),
        );
        self.row(
            "exporter open fds before → after → 2 s later",
            format!("{} → {} → {}", before.fds, after.fds, settled.fds),
        );
    }

    /// What the exporter itself counted as late.
    async fn overruns(&mut self, exporter: &Exporter) {
        let name = "pacs_exporter_probe_deadline_overruns_total";
        let count = exporter_metric(exporter.port, name).await;
        self.row(&format!("`{name}`"), count);
    }

    fn print(&self, header: &str) {
        println!("### {}\n\n{header}", self.title);
        println!(
            "Exporter: `{}`. Load average at start (1, 5, 15 min): {}.\n",
            self.exporter_command, self.load_average
        );
        println!("| | |\n|---|---|");
        for (name, value) in &self.rows {
            println!("| {name} | {value} |");
        }
        println!();
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1000.0
}

/// `silent`: all requests at once at peers that never answer.
async fn silent(options: &Options, bound: usize, header: &str) -> bool {
    let peers = silent_listeners(options.listeners.max(1)).await;
    let modules = "modules:\n  echo:\n    prober: echo\n    timeout: 10s\n";
    let flags = vec![
        format!("--probe.max-concurrent={bound}"),
        // Every request in flight at once, none waiting in the listen backlog.
        format!("--web.max-connections={}", options.requests.max(512) + 16),
    ];
    let (exporter, _) = Exporter::start(&options.binary, modules, &flags).await;
    let before = exporter.sample();
    let port = exporter.port;
    let scrape = options.scrape_timeout;
    let lag = TimerLag::start();
    let started = Instant::now();
    let requests: Vec<_> = (0..options.requests)
        .map(|i| {
            let target = format!("SILENT{i:04}@{}", peers[i % peers.len()]);
            tokio::spawn(async move { get(port, &probe_path("echo", &target), Some(scrape)).await })
        })
        .collect();
    let mut answers = Vec::with_capacity(requests.len());
    for request in requests {
        answers.push(request.await.expect("request task"));
    }
    let wall = started.elapsed();
    let lag = lag.stop();
    let after = exporter.sample();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = exporter.sample();

    let title = match bound {
        0 => "Load: silent peers, no bound".to_string(),
        n => format!("Load: silent peers, `--probe.max-concurrent={n}`"),
    };
    let mut report = Report::new(&title, &exporter);
    report.row(
        "load",
        format!(
            "{} requests at once, scrape timeout {scrape} s (probe budget {:.1} s), {} distinct targets on {} silent listeners",
            options.requests,
            options.budget().as_secs_f64(),
            options.requests,
            peers.len()
        ),
    );
    report.answers(&answers, options.budget(), scrape);
    report.overruns(&exporter).await;
    report.row("this load generator's timer lag, max", ms(lag));
    report.row("all answered after", ms(wall));
    report.process(before, after, settled);
    report.row("exporter CPU", format!("{:.2} s", after.cpu - before.cpu));
    report.print(header);
    answers
        .iter()
        .all(|a| a.since_written <= options.budget() + GRACE)
}

/// `echo`: clients on kept-alive connections probe the demo SCP of another process in turn.
async fn echo(options: &Options, header: &str) -> bool {
    let modules = "modules:\n  echo:\n    prober: echo\n    timeout: 10s\n";
    let (demo, printed) = Exporter::start(&options.binary, modules, &["--demo".to_string()]).await;
    let source = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("source:"))
        .and_then(|s| s.trim().split_once('@'))
        .map(|(_, address)| address.to_string())
        .expect("the demo's source address");
    let flags = vec!["--probe.max-concurrent=0".to_string()];
    let (exporter, _) = Exporter::start(&options.binary, modules, &flags).await;
    let targets: Arc<Vec<String>> = Arc::new(
        (0..options.targets)
            .map(|i| probe_path("echo", &format!("ECHO{i:04}@{source}")))
            .collect(),
    );
    let before = exporter.sample();
    let demo_before = demo.sample();
    let load_before = cpu_seconds(std::process::id());
    let lag = TimerLag::start();
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(options.duration);
    let next = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..options.clients)
        .map(|_| {
            let (targets, next) = (targets.clone(), next.clone());
            let (port, scrape) = (exporter.port, options.scrape_timeout);
            tokio::spawn(async move { echo_client(port, scrape, end, &targets, &next).await })
        })
        .collect();
    let mut answers = Vec::new();
    for client in clients {
        answers.extend(client.await.expect("client task"));
    }
    let wall = started.elapsed();
    let lag = lag.stop();
    let after = exporter.sample();
    let demo_after = demo.sample();
    let load_cpu = cpu_seconds(std::process::id()) - load_before;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = exporter.sample();

    let probes = answers.len().max(1) as f64;
    let mut report = Report::new("Load: echo probes at the demo SCP", &exporter);
    report.row(
        "load",
        format!(
            "{} clients on kept-alive connections for {} s, {} distinct targets (called AE titles) at the demo SCP of a second process (`pacs_exporter --demo`), scrape timeout {} s",
            options.clients, options.duration, options.targets, options.scrape_timeout
        ),
    );
    report.row(
        "probes/s",
        format!("{:.0}", answers.len() as f64 / wall.as_secs_f64()),
    );
    report.answers(&answers, options.budget(), options.scrape_timeout);
    report.overruns(&exporter).await;
    report.row("this load generator's timer lag, max", ms(lag));
    let five_xx = answers.iter().filter(|a| a.status >= 500).count();
    report.row("5xx", five_xx);
    report.row(
        "exporter CPU per probe",
        format!("{:.0} µs", (after.cpu - before.cpu) / probes * 1e6),
    );
    report.row(
        "demo SCP CPU per probe (its own process)",
        format!(
            "{:.0} µs",
            (demo_after.cpu - demo_before.cpu) / probes * 1e6
        ),
    );
    let share = |cpu: f64| format!("{:.0}%", 100.0 * cpu / wall.as_secs_f64());
    report.row(
        "CPU over the run: exporter / demo SCP / load generator (100% = one core)",
        format!(
            "{} / {} / {}",
            share(after.cpu - before.cpu),
            share(demo_after.cpu - demo_before.cpu),
            share(load_cpu)
        ),
    );
    report.process(before, after, settled);
    report.print(header);
    five_xx == 0
        && answers
            .iter()
            .all(|a| a.since_written <= options.budget() + GRACE)
}

/// One client: probes the targets in turn (shared with the other clients) until `end`,
/// reconnecting when the exporter closes its connection.
async fn echo_client(
    port: u16,
    scrape: f64,
    end: Instant,
    targets: &[String],
    next: &AtomicUsize,
) -> Vec<Answer> {
    let mut answers = Vec::new();
    let mut connection = None;
    while Instant::now() < end {
        let path = &targets[next.fetch_add(1, Ordering::Relaxed) % targets.len()];
        let start = Instant::now();
        if connection.is_none() {
            connection = connect(port).await;
        }
        let answer = match connection.as_mut() {
            Some(s) => send(s, path, Some(scrape), start).await.ok(),
            None => None,
        };
        match answer {
            Some(answer) => answers.push(answer),
            None => {
                connection = None;
                answers.push(Answer::none(start));
            }
        }
    }
    answers
}

/// Machine, date, revision and command: the lines above every table.
fn header(binary: &Path) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| Some(l.strip_prefix("model name")?.split_once(':')?.1.trim()))
        .unwrap_or("unknown CPU");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    let revision = git(&["rev-parse", "--short", "HEAD"]);
    let dirty = git(&["status", "--porcelain", "--", "src"]);
    let dirty: Vec<&str> = dirty
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    let revision = if dirty.is_empty() {
        revision
    } else {
        format!(
            "{revision} with uncommitted changes to {}",
            dirty.join(", ")
        )
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = format!("cargo run --release --example load -- {}", args.join(" "));
    format!(
        "Machine: {cores} × {model} (nproc {cores}), shared with the load generator. Date: {}. Revision: {revision}. Binary: `{}`.\n\nCommand: `{}`\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"),
        binary.display(),
        command.trim_end()
    )
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let options = Options::parse();
    if !options.binary.is_file() {
        eprintln!(
            "{} not found: build it first with `cargo build --release` (this example builds nothing itself)",
            options.binary.display()
        );
        return std::process::ExitCode::from(2);
    }
    let header = header(&options.binary);
    let mut kept = true;
    if matches!(options.case, Case::Silent | Case::All) {
        kept &= silent(&options, 0, &header).await;
        kept &= silent(&options, options.max_concurrent, &header).await;
    }
    if matches!(options.case, Case::Echo | Case::All) {
        kept &= echo(&options, &header).await;
    }
    if kept {
        std::process::ExitCode::SUCCESS
    } else {
        println!(
            "FAIL: answers after their deadline + 50 ms, or 5xx without a bound (see the tables)"
        );
        std::process::ExitCode::FAILURE
    }
}
