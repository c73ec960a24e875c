//! The one guard for every child process the tests start (the PACS peers, Prometheus,
//! Alertmanager, the exporter binary): its output goes to a log file, it is killed (SIGKILL:
//! Orthanc takes seconds to stop on SIGTERM, and test data is disposable) and reaped on drop,
//! and the tail of its log is printed when the test is panicking. Servers that can bind port 0
//! and log the address they got ([`Process::reported_address`]) never race another process for
//! a port.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Lines of a process' log shown when a test panics while it runs.
const LOG_TAIL_LINES: usize = 60;
/// Pause between two looks at a starting process.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A running child process; see the module documentation.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `command` with stdin closed and stdout and stderr appended to `log`; `name` (the
    /// program, its AE title, its port) names it in messages. Panics if it cannot start.
    pub fn spawn(name: impl Into<String>, command: &mut Command, log: PathBuf) -> Process {
        let out = create(&log);
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot duplicate {}: {e}", log.display()));
        Process::spawn_with(name.into(), command.stdout(out).stderr(err), log)
    }

    /// As [`Process::spawn`], with stdout in a file of its own (`stdout`).
    pub fn spawn_apart(
        name: impl Into<String>,
        command: &mut Command,
        stdout: &Path,
        log: PathBuf,
    ) -> Process {
        let err = create(&log);
        Process::spawn_with(
            name.into(),
            command.stdout(create(stdout)).stderr(err),
            log,
        )
    }

    fn spawn_with(name: String, command: &mut Command, log: PathBuf) -> Process {
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Process { name, child, log }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        match fs::read(&self.log) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("(cannot read {}: {e})\n", self.log.display()),
        }
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Kills and reaps it now (it may have ended already).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// How it ended, once it has.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Panics with its log unless it is still running.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.exit_status() {
            let log = self.log_tail(LOG_TAIL_LINES);
            let hint = if log.contains("shutting down") {
                "\n(it logged \"shutting down\": a SIGTERM or SIGINT from outside this test)"
            } else {
                ""
            };
            panic!("{} exited ({}){hint}:\n{log}", self.name, describe(status));
        }
    }

    /// Waits up to `limit` for it to exit on its own; how it ended, `None` if it did not.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// Polls `ready` until it gives a value, the process exits, or `timeout` passes; why not,
    /// in words, otherwise.
    pub fn wait_for<T>(
        &mut self,
        timeout: Duration,
        mut ready: impl FnMut(&mut Process) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return Err(format!("the process exited early ({})", describe(status)));
            }
            if let Some(value) = ready(self) {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                return Err(format!("not ready after {timeout:?}"));
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The addresses its log says it listens on, in the order logged: lines about listening
    /// with an `address=` (logfmt) or `"address":"…"` (JSON) field, port 0 left out (the
    /// address asked for, before the kernel picked a port).
    pub fn reported_addresses(&self) -> Vec<SocketAddr> {
        self.log()
            .lines()
            .filter(|line| line.to_ascii_lowercase().contains("listening"))
            .filter_map(|line| {
                let rest = line
                    .split("address=")
                    .nth(1)
                    .or_else(|| line.split("\"address\":\"").nth(1))?;
                rest.split([' ', '"']).next()?.parse().ok()
            })
            .filter(|address: &SocketAddr| address.port() != 0)
            .collect()
    }

    /// Waits up to `timeout` for the first address it reports listening on (it was started on
    /// port 0); panics with its log if none comes.
    pub fn reported_address(&mut self, timeout: Duration) -> SocketAddr {
        self.wait_for(timeout, |process| {
            process.reported_addresses().first().copied()
        })
        .unwrap_or_else(|why| {
            panic!(
                "{} reported no listening address: {why}\n{}",
                self.name,
                self.log()
            )
        })
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- last {LOG_TAIL_LINES} log lines of {} (the test panicked) ---\n{}\n--- end of log ---",
                self.name,
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        self.stop();
    }
}

fn create(path: &Path) -> File {
    File::create(path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()))
}

/// An exit status in words: its code, or the signal that ended it.
pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}
