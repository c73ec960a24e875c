//! The pages for people: the landing page (`/`), one probe's log (`/logs`) and the config in
//! force (`/config`). Each is given what it shows (the config, the recent probes), not the
//! app state, and knows nothing of requests beyond its own query.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::response::Html;

use super::MAX_PARAM_BYTES;
use crate::config::Config;
use crate::history::{History, ProbeRecord};

/// The host of the landing page's example links when there is no real PACS to name.
const EXAMPLE_HOST: &str = "pacs.example";

/// `/`: the modules with an example probe link each, and the recent probes.
/// `example_target` is the PACS the links probe; `None`: each module's `called_aet` at
/// [`EXAMPLE_HOST`].
pub(super) fn landing(
    config: &Config,
    example_target: Option<&str>,
    recent: &[&ProbeRecord],
) -> Html<String> {
    let modules = modules_table(config, example_target);
    let placeholder = if example_target.is_none() {
        format!(
            "<p id=\"placeholder\">The example links probe <code>{EXAMPLE_HOST}</code>, a placeholder: \
             replace it with your PACS' host name or address, and the AE title and port with its own.</p>\n"
        )
    } else {
        String::new()
    };
    let probes = probes_table(recent);
    Html(format!(
        "<!DOCTYPE html>
<html lang=\"en\"><head><meta charset=\"utf-8\"><title>PACS Exporter</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
tr.failed td {{ background: #fde8e8; }}
</style></head><body>
<h1>PACS Exporter</h1>
<p>Version {version}. <a href=\"metrics\">Exporter metrics</a> · <a href=\"config\">Configuration</a></p>
<h2>Modules</h2>
<table id=\"modules\"><tr><th>Module</th><th>Prober</th><th>Timeout</th><th>Example</th></tr>
{modules}</table>
{placeholder}<p>Probe a PACS: <code>/probe?target=AET@host:port&amp;module=NAME</code></p>
<h2>Recent probes</h2>
<table id=\"probes\"><tr><th>Time</th><th>Module</th><th>Target</th><th>Result</th><th>Found</th><th>Duration</th><th>Failure</th><th>Log</th></tr>
{probes}</table>
</body></html>
",
        version = env!("CARGO_PKG_VERSION"),
    ))
}

/// The rows of the modules table: name, prober, timeout and a debug probe link.
fn modules_table(config: &Config, example_target: Option<&str>) -> String {
    config
        .modules
        .iter()
        .map(|(name, module)| {
            // A PACS that exists (the demo's), or the module's called AE title at a placeholder.
            let target = match example_target {
                Some(target) => target.to_string(),
                None => format!("{}@{EXAMPLE_HOST}:104", module.dicom.called_aet.as_str()),
            };
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("module", name)
                .append_pair("target", &target)
                .append_pair("debug", "true")
                .finish();
            format!(
                "<tr><td>{name}</td><td>{prober}</td><td>{timeout}</td>\
                 <td><a href=\"probe?{query}\">debug probe of {target}</a></td></tr>\n",
                name = html_escape(name),
                prober = module.prober.name(),
                timeout = module.timeout,
                query = html_escape(&query),
                target = html_escape(&target),
            )
        })
        .collect()
}

/// The rows of the recent probes table, in the order given.
fn probes_table(recent: &[&ProbeRecord]) -> String {
    recent
        .iter()
        .map(|r| {
            let (result, class) = if r.success() { ("success", "ok") } else { ("failure", "failed") };
            let found = r.summary.map(|s| s.to_string()).unwrap_or_default();
            let reason = r
                .failure
                .as_ref()
                .map(|f| format!("{} / {}", f.stage.as_str(), f.reason.as_str()))
                .unwrap_or_default();
            format!(
                "<tr class=\"{class}\"><td>{time}</td><td>{module}</td><td>{target}</td><td>{result}</td>\
                 <td>{found}</td><td>{duration:.3}s</td><td>{reason}</td><td><a href=\"logs?id={id}\">logs</a></td></tr>\n",
                time = format_time(r.started_at),
                module = html_escape(&r.module),
                target = html_escape(&r.target),
                found = html_escape(&found),
                duration = r.duration.as_secs_f64(),
                reason = html_escape(&reason),
                id = r.id,
            )
        })
        .collect()
}

/// `/config`: the config in force, as YAML.
pub(super) fn config(config: &Config) -> String {
    config.to_yaml()
}

/// Which probe `/logs` shows: `id=N`, or `target=T&module=M` for the latest of those.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LogsQuery {
    Id(u64),
    Latest { target: String, module: String },
}

/// Why a `/logs` query cannot be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum LogsQueryError {
    #[error("parameter {key:?} is longer than {max} bytes", max = MAX_PARAM_BYTES)]
    TooLong { key: String },
    #[error("invalid id {0:?}: expected a number")]
    Id(String),
    #[error("give id=N, or target=T and module=M")]
    Incomplete,
}

impl LogsQuery {
    pub(super) fn parse(query: &str) -> Result<LogsQuery, LogsQueryError> {
        let mut params: HashMap<String, String> = HashMap::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if value.len() > MAX_PARAM_BYTES {
                return Err(LogsQueryError::TooLong {
                    key: key.into_owned(),
                });
            }
            params.insert(key.into_owned(), value.into_owned());
        }
        match (
            params.remove("id"),
            params.remove("target"),
            params.remove("module"),
        ) {
            (Some(id), _, _) => id
                .parse::<u64>()
                .map(LogsQuery::Id)
                .map_err(|_| LogsQueryError::Id(id)),
            (None, Some(target), Some(module)) => Ok(LogsQuery::Latest { target, module }),
            _ => Err(LogsQueryError::Incomplete),
        }
    }

    /// The probe this query names, if the history still has it.
    pub(super) fn find<'h>(&self, history: &'h History) -> Option<&'h ProbeRecord> {
        match self {
            LogsQuery::Id(id) => history.get(*id),
            LogsQuery::Latest { target, module } => history.latest(module, target),
        }
    }
}

/// `/logs`: one probe's log as text, under a line saying what the probe was and how it ended.
pub(super) fn probe_log(record: &ProbeRecord) -> String {
    format!(
        "Probe {} of module {:?} against {:?}, started {}, {} in {:.3}s\n\n{}",
        record.id,
        record.module,
        record.target,
        format_time(record.started_at),
        if record.success() {
            "succeeded"
        } else {
            "failed"
        },
        record.duration.as_secs_f64(),
        record.log.trim_end()
    )
}

/// UTC, to the second: `2026-11-25 12:31:52Z`.
fn format_time(time: SystemTime) -> String {
    let time: chrono::DateTime<chrono::Utc> = time.into();
    time.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_queries() {
        assert_eq!(LogsQuery::parse("id=7"), Ok(LogsQuery::Id(7)));
        assert_eq!(
            LogsQuery::parse("target=A%40h%3A104&module=echo"),
            Ok(LogsQuery::Latest {
                target: "A@h:104".into(),
                module: "echo".into()
            })
        );
        let long = "x".repeat(MAX_PARAM_BYTES + 1);
        let cases = [
            ("id=x", "invalid id \"x\": expected a number"),
            ("target=T", "give id=N, or target=T and module=M"),
            ("", "give id=N, or target=T and module=M"),
            (
                &format!("module={long}")[..],
                "parameter \"module\" is longer than 1024 bytes",
            ),
        ];
        for (query, want) in cases {
            assert_eq!(
                LogsQuery::parse(query).unwrap_err().to_string(),
                want,
                "{query}"
            );
        }
    }
}
