//! The log of one probe.
//!
//! Every line is kept, whatever `--log.level` says, so that `debug=true` and `/logs` can show
//! the whole story of a probe; each line also goes to the process log through `tracing`, where
//! the level filter applies. The story's steps go there at debug whatever their level in the
//! story: at info, the process log has one line per failed probe (its outcome, with stage,
//! reason and side) and nothing for a probe that succeeded. Lines never carry patient names or
//! IDs at info level or above.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tracing::Level;

#[derive(Clone, Debug)]
pub struct LogLine {
    /// Time since the probe started.
    pub elapsed: Duration,
    pub level: Level,
    pub message: String,
}

pub struct ProbeLog {
    started: Instant,
    module: String,
    target: String,
    /// A route's destination, named by the request.
    destination: Option<String>,
    lines: Mutex<Vec<LogLine>>,
}

impl ProbeLog {
    pub fn new(module: &str, target: &str) -> ProbeLog {
        ProbeLog {
            started: Instant::now(),
            module: module.to_string(),
            target: target.to_string(),
            destination: None,
            lines: Mutex::new(Vec::new()),
        }
    }

    /// The same log, whose process log lines also name a route's destination.
    pub fn with_destination(mut self, destination: Option<&str>) -> ProbeLog {
        self.destination = destination.map(str::to_string);
        self
    }

    pub fn debug(&self, message: impl Into<String>) {
        self.push(Level::DEBUG, Level::DEBUG, message.into());
    }

    /// A step worth reading in the probe's story; the process log has it at debug.
    pub fn info(&self, message: impl Into<String>) {
        self.push(Level::INFO, Level::DEBUG, message.into());
    }

    /// A fault of the exporter itself, at error in both logs.
    pub fn error(&self, message: impl Into<String>) {
        self.push(Level::ERROR, Level::ERROR, message.into());
    }

    /// How the probe ended, at `level` in both logs.
    pub fn outcome(&self, level: Level, message: impl Into<String>) {
        self.push(level, level, message.into());
    }

    /// Keeps `message` at `level` and writes it to the process log at `process`.
    fn push(&self, level: Level, process: Level, message: String) {
        let (module, target) = (&self.module, &self.target);
        // Absent unless the request named a destination.
        let destination = self.destination.as_deref();
        match process {
            Level::ERROR => tracing::error!(module, target, destination, "{message}"),
            Level::WARN => tracing::warn!(module, target, destination, "{message}"),
            Level::INFO => tracing::info!(module, target, destination, "{message}"),
            Level::DEBUG => tracing::debug!(module, target, destination, "{message}"),
            Level::TRACE => tracing::trace!(module, target, destination, "{message}"),
        }
        let line = LogLine {
            elapsed: self.started.elapsed(),
            level,
            message,
        };
        if let Ok(mut lines) = self.lines.lock() {
            lines.push(line);
        }
    }

    /// The log as text, one line per entry: `+0.012s level message`.
    pub fn render(&self) -> String {
        use std::fmt::Write as _;
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        let mut text = String::with_capacity(lines.iter().map(|l| l.message.len() + 16).sum());
        for l in lines.iter() {
            let level = match l.level {
                Level::ERROR => "error",
                Level::WARN => "warn",
                Level::INFO => "info",
                Level::DEBUG => "debug",
                Level::TRACE => "trace",
            };
            let _ = writeln!(
                text,
                "+{:.3}s {level:<5} {}",
                l.elapsed.as_secs_f64(),
                l.message
            );
        }
        text
    }
}
