//! The real Prometheus for end-to-end tests, and the plumbing its tests share with the other
//! servers they start (Alertmanager, the exporter binary): a child process killed on drop, and
//! waiting for `/-/ready`.
//!
//! Prometheus runs as a child process on a free loopback port, with its configuration, data and
//! log in the test's temporary directory; it is killed with SIGKILL when its handle is dropped,
//! and the tail of its log is printed if the test is panicking. A missing binary fails the test
//! (see [`require_binary`]); nothing is skipped. Only `127.0.0.1` is ever contacted.


use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use hyper::header::ACCEPT;

use crate::http;
use crate::peers::{free_port, require_binary};

/// How long Prometheus may take to answer `/-/ready`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);

/// A running Prometheus.
pub struct Prometheus {
    pub process: Process,
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
}

impl Prometheus {
    /// Writes `config` to `prometheus.yml` in `dir` and starts Prometheus on it, with its data
    /// and log in `dir` and `extra_args` after the usual ones, on a free port; waits until it
    /// answers `/-/ready` and panics with its log if it does not.
    pub fn start(config: &str, dir: &Path, extra_args: &[&str]) -> Prometheus {
        let binary = require_binary("prometheus", "prometheus");
        let config_path = dir.join("prometheus.yml");
        fs::write(&config_path, config)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", config_path.display()));
        let port = free_port();
        let mut process = Process::spawn(
            "prometheus",
            Command::new(binary)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("prometheus-data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .args(extra_args),
            dir.join("prometheus.log"),
        );
        wait_ready(&mut process, port, READY_TIMEOUT);
        Prometheus { process, port }
    }
}

/// A child process killed (SIGKILL) and reaped on drop; its log's tail is printed if the test
/// is panicking.
pub struct Process {
    pub name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `command` with stdin closed and stdout and stderr in `log`.
    pub fn spawn(name: &'static str, command: &mut Command, log: PathBuf) -> Process {
        let out = File::create(&log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
        let err = out.try_clone().expect("clone the log file handle");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process { name, child, log }
    }

    /// The last 40 lines of its log.
    pub fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Panics unless the process is still running.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            let log = self.log_tail();
            let hint = if log.contains("shutting down") {
                "\n(it logged \"shutting down\": a SIGTERM or SIGINT from outside this test)"
            } else {
                ""
            };
            panic!("{} exited ({status}){hint}:\n{log}", self.name);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "--- last lines of {}'s log:\n{}",
                self.name,
                self.log_tail()
            );
        }
    }
}

/// `GET path` on 127.0.0.1:port, asking for JSON: (status, body).
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let request = http::Request::get(path).header(ACCEPT, "application/json");
    let answer = http::send(port, request)?;
    Ok((answer.status, answer.text()))
}

/// Polls `check` until it returns `Some`, at most `wait`; then panics with `what`, the last
/// thing `check` saw (via `last`) and the processes' logs (printed by their drop).
pub fn wait_for<T>(
    what: &str,
    wait: Duration,
    mut check: impl FnMut(&mut String) -> Option<T>,
) -> T {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        if let Some(value) = check(&mut last) {
            return value;
        }
        if start.elapsed() > wait {
            panic!("waited {wait:?} for {what}; last seen:\n{last}");
        }
        thread::sleep(POLL);
    }
}

/// Waits, at most `wait`, until `process` answers 200 on `/-/ready` at 127.0.0.1:`port`;
/// panics at once if it exits.
pub fn wait_ready(process: &mut Process, port: u16, wait: Duration) {
    let what = format!("{} to answer /-/ready on 127.0.0.1:{port}", process.name);
    wait_for(&what, wait, |last| {
        process.assert_running();
        match http_get(port, "/-/ready") {
            Ok((200, _)) => Some(()),
            Ok((status, body)) => {
                *last = format!("{status} {body}");
                None
            }
            Err(e) => {
                *last = e.to_string();
                None
            }
        }
    })
}
