//! The exporter under measurement: the release binary as a child process, driven over HTTP
//! as Prometheus drives it, and read from outside (/proc) for memory and CPU. Linux only.

use std::io;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use hyper::header::HeaderName;
use testkit::http::{Connection, Request};
use testkit::metrics::series_value;
use testkit::peers::free_port;
use testkit::process::Process;

/// Requests that have had no answer this long after their scrape timeout are given up.
pub const GIVE_UP: Duration = Duration::from_secs(15);

/// A child `pacs_exporter` on a free loopback port, killed when dropped.
pub struct Exporter {
    process: Process,
    pub port: u16,
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

/// The exporter's process figures at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    /// Peak resident set since start (VmHWM), kB.
    pub hwm_kb: u64,
    pub fds: usize,
    pub cpu: Cpu,
}

/// A process's CPU time, seconds: in its own code and libraries (`utime`), and in the kernel
/// on its behalf (`stime`: system calls, and the loopback traffic they carry).
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    pub user: f64,
    pub system: f64,
}

impl Cpu {
    pub fn total(self) -> f64 {
        self.user + self.system
    }

    /// Each part divided by `count`.
    pub fn per(self, count: f64) -> Cpu {
        Cpu {
            user: self.user / count,
            system: self.system / count,
        }
    }

    /// "177 µs (70 µs user + 107 µs system)", of a per-item figure.
    pub fn micros(self) -> String {
        format!(
            "{:.0} µs ({:.0} µs user + {:.0} µs system)",
            self.total() * 1e6,
            self.user * 1e6,
            self.system * 1e6
        )
    }
}

impl std::ops::Sub for Cpu {
    type Output = Cpu;

    fn sub(self, earlier: Cpu) -> Cpu {
        Cpu {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }
}

impl Exporter {
    /// Starts `binary` with `modules` (YAML) as its config and `flags`, and waits until it is
    /// healthy. With `--demo` among the flags, the demo's source and destination targets and
    /// the path of its modules file are read from its output and returned.
    pub async fn start(binary: &Path, modules: &str, flags: &[String]) -> (Exporter, Vec<String>) {
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
        let stdout = dir.path().join("stdout");
        let mut process = Process::spawn_apart(
            "pacs_exporter",
            Command::new(binary).args(&args),
            &stdout,
            dir.path().join("exporter.log"),
        );
        let mut printed = String::new();
        if demo {
            // The demo prints its targets at start, the source first.
            let started = process.wait_for(Duration::from_secs(20), |_| {
                printed = std::fs::read_to_string(&stdout).unwrap_or_default();
                printed.contains("destination:").then_some(())
            });
            if let Err(why) = started {
                panic!("the demo did not start: {why}\n{printed}");
            }
        }
        let targets = ["source:", "destination:", "modules:"]
            .iter()
            .filter_map(|key| {
                printed
                    .lines()
                    .find_map(|l| l.trim().strip_prefix(key)?.split_whitespace().next())
                    .map(str::to_string)
            })
            .collect();
        let exporter = Exporter {
            process,
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
        (exporter, targets)
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Writes `modules` to the config file at `path` (the demo's) and has the exporter reload
    /// it; panics unless the reload succeeds.
    pub async fn reload_with(&self, path: &str, modules: &str) {
        std::fs::write(path, modules).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
        let answer = testkit::http::send_async(self.port, Request::post("/-/reload"))
            .await
            .expect("the exporter answers /-/reload");
        assert_eq!(answer.status, 200, "reload refused: {}", answer.text());
    }

    pub fn sample(&self) -> Sample {
        let pid = self.pid();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("/proc/PID/fd")
            .count();
        Sample {
            hwm_kb: status_kb(pid, "VmHWM:"),
            fds,
            cpu: cpu_seconds(pid),
        }
    }

    /// Resident set now, kB.
    pub fn rss_kb(&self) -> u64 {
        status_kb(self.pid(), "VmRSS:")
    }

    /// The command line, without the temporary config path and the port.
    pub fn command(&self) -> String {
        let args: Vec<&str> = self
            .args
            .iter()
            .filter(|a| !a.starts_with("--config.file") && !a.starts_with("--web.listen"))
            .map(String::as_str)
            .collect();
        format!("pacs_exporter {}", args.join(" "))
    }

    /// One probe on a connection of its own: the answer and its body.
    pub async fn probe(&self, module: &str, target: &str) -> (Answer, String) {
        probe_at(self.port, module, target).await
    }
}

/// One probe of the exporter on `port`, on a connection of its own: the answer and its body.
pub async fn probe_at(port: u16, module: &str, target: &str) -> (Answer, String) {
    let start = Instant::now();
    let path = probe_path(module, target);
    let Some(mut connection) = connect(port).await else {
        return (Answer::none(start), String::new());
    };
    match fetch(&mut connection, &path, None, start).await {
        Ok(answer) => answer,
        Err(_) => (Answer::none(start), String::new()),
    }
}

/// A line of /proc/PID/status, in kB.
pub fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
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
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// The CPU time of a process.
pub fn cpu_seconds(pid: u32) -> Cpu {
    cpu_seconds_in(&format!("/proc/{pid}/stat"))
}

/// utime + stime of the calling thread, in seconds.
pub fn thread_cpu_seconds() -> f64 {
    cpu_seconds_in("/proc/thread-self/stat").total()
}

/// utime and stime from a `/proc` stat file.
fn cpu_seconds_in(path: &str) -> Cpu {
    let stat = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // Fields after the command name, which is in parentheses and may hold spaces; the first
    // of them is field 3 (state), so utime (14) and stime (15) are at 11 and 12.
    let after_name = stat.rfind(')').map_or("", |i| &stat[i + 2..]);
    let fields: Vec<u64> = after_name
        .split(' ')
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let seconds = |field: usize| fields.get(field).copied().unwrap_or(0) as f64 / clock_ticks();
    Cpu {
        user: seconds(11),
        system: seconds(12),
    }
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

pub fn probe_path(module: &str, target: &str) -> String {
    format!(
        "/probe?module={module}&target={}",
        target.replace('@', "%40")
    )
}

/// One answer, seen from the client.
#[derive(Clone, Debug)]
pub struct Answer {
    /// HTTP status; 0 when there was no answer (connection failed, or given up).
    pub status: u16,
    /// `probe_success 1` in the body.
    pub success: bool,
    pub elapsed: Duration,
    /// From the request's last byte written to the answer's last byte read.
    pub since_written: Duration,
    /// `probe_duration_seconds` in the body: the probe's time by the exporter's clock.
    pub probe_seconds: Option<f64>,
}

impl Answer {
    pub fn none(start: Instant) -> Answer {
        Answer {
            status: 0,
            success: false,
            elapsed: start.elapsed(),
            since_written: start.elapsed(),
            probe_seconds: None,
        }
    }
}

/// Sends one GET on `connection`; the answer, timed from `start`, and its body.
pub async fn fetch(
    connection: &mut Connection,
    path: &str,
    scrape_timeout: Option<f64>,
    start: Instant,
) -> io::Result<(Answer, String)> {
    let mut request = Request::get(path);
    if let Some(seconds) = scrape_timeout {
        request = request.header(
            HeaderName::from_static("x-prometheus-scrape-timeout-seconds"),
            seconds.to_string(),
        );
    }
    let (response, since_written) = connection.send(request).await?;
    let body = response.text();
    let answer = Answer {
        status: response.status,
        success: body.lines().any(|l| l == "probe_success 1"),
        elapsed: start.elapsed(),
        since_written,
        probe_seconds: series_value(&body, "probe_duration_seconds"),
    };
    Ok((answer, body))
}

/// Sends one GET on `connection`; the answer, timed from `start`.
pub async fn send(
    connection: &mut Connection,
    path: &str,
    scrape_timeout: Option<f64>,
    start: Instant,
) -> io::Result<Answer> {
    Ok(fetch(connection, path, scrape_timeout, start).await?.0)
}

/// Opens a kept-alive connection to the exporter.
pub async fn connect(port: u16) -> Option<Connection> {
    Connection::open(port).await.ok()
}

/// One GET on a connection of its own, timed from before the connection is opened.
pub async fn get(port: u16, path: &str, scrape_timeout: Option<f64>) -> Answer {
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
pub async fn exporter_metric(port: u16, name: &str) -> f64 {
    let start = Instant::now();
    let text = async {
        let mut connection = connect(port).await?;
        Some(
            fetch(&mut connection, "/metrics", None, start)
                .await
                .ok()?
                .1,
        )
    };
    series_value(&text.await.unwrap_or_default(), name).unwrap_or(0.0)
}
