//! modules.yml for tests, written in one place: a send_check module over the window the
//! scenarios are built for (24 hours back, 10 minutes of grace), with what a test changes.
//!
//!     let config = SendCheck::to("ARCHIVE@127.0.0.1:11112").strategy("auto").config();

use std::fmt::Write;

/// A send_check module named `check` (by default) from the probe's target to `destination`.
#[derive(Clone, Debug)]
pub struct SendCheck {
    name: String,
    timeout: String,
    destination: String,
    strategy: Option<String>,
    labels: Option<String>,
    extra: String,
}

impl SendCheck {
    /// To `destination` (`AET@host:port`), `timeout: 20s`, the exporter's default strategy.
    pub fn to(destination: impl Into<String>) -> SendCheck {
        SendCheck {
            name: "check".to_string(),
            timeout: "20s".to_string(),
            destination: destination.into(),
            strategy: None,
            labels: None,
            extra: String::new(),
        }
    }

    /// The module's name in modules.yml.
    pub fn named(mut self, name: &str) -> SendCheck {
        self.name = name.to_string();
        self
    }

    /// The module's `timeout` (`30s`).
    pub fn timeout(mut self, timeout: &str) -> SendCheck {
        self.timeout = timeout.to_string();
        self
    }

    /// `destination_query`.
    pub fn strategy(mut self, strategy: &str) -> SendCheck {
        self.strategy = Some(strategy.to_string());
        self
    }

    /// `labels`, as the inside of the YAML list (`patient_name, accession_number`).
    pub fn labels(mut self, labels: &str) -> SendCheck {
        self.labels = Some(labels.to_string());
        self
    }

    /// More keys of the `send_check` block, each line indented by six spaces.
    pub fn extra(mut self, lines: &str) -> SendCheck {
        self.extra.push_str(lines);
        if !self.extra.is_empty() && !self.extra.ends_with('\n') {
            self.extra.push('\n');
        }
        self
    }

    /// The module as an entry of `modules:` (indented by two spaces).
    pub fn module(&self) -> String {
        let mut yaml = format!(
            "  {}:\n    prober: send_check\n    timeout: {}\n    send_check:\n      \
             destination: {}\n      lookback: 24h\n      grace: 10m\n",
            self.name, self.timeout, self.destination
        );
        if let Some(strategy) = &self.strategy {
            let _ = writeln!(yaml, "      destination_query: {strategy}");
        }
        if let Some(labels) = &self.labels {
            let _ = writeln!(yaml, "      labels: [{labels}]");
        }
        yaml.push_str(&self.extra);
        yaml
    }

    /// A whole modules.yml with this module alone.
    pub fn config(&self) -> String {
        format!("modules:\n{}", self.module())
    }
}
