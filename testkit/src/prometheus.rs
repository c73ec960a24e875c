//! The real Prometheus for end-to-end tests, and waiting for `/-/ready`, which Alertmanager
//! answers too.
//!
//! Prometheus runs as a [`Process`] on 127.0.0.1, port 0: it binds a port the kernel picks and
//! logs it, so no other process can take it first. Its configuration, data and log are in the
//! test's temporary directory. A missing binary fails the test
//! (see [`require_binary`]); nothing is skipped. Only `127.0.0.1` is ever contacted.


use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use hyper::header::ACCEPT;

use crate::http;
use crate::peers::require_binary;
use crate::process::Process;

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
        let mut process = Process::spawn(
            "prometheus",
            Command::new(binary)
                .arg(format!("--config.file={}", config_path.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("prometheus-data").display()
                ))
                .arg("--web.listen-address=127.0.0.1:0")
                .args(extra_args),
            dir.join("prometheus.log"),
        );
        let port = process.reported_address(READY_TIMEOUT).port();
        wait_ready(&mut process, port, READY_TIMEOUT);
        Prometheus { process, port }
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
    let what = format!("{} to answer /-/ready on 127.0.0.1:{port}", process.name());
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
