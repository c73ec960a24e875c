//! The pages for people: the landing page (`/`), one probe's log (`/logs`) and the config in
//! force (`/config`). Each is given what it shows (the config, the recent probes), not the
//! app state, and knows nothing of requests beyond its own query.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::response::Html;

use super::MAX_PARAM_BYTES;
use crate::config::Config;
use crate::history::{History, ProbeRecord};

/// `/`: a form to probe a PACS, the modules, and the recent probes as `filter` selects them.
/// `example_target` is a PACS that exists (the demo's): the form starts with it and each
/// module gets an example link; without one the form starts empty.
pub(super) fn landing(
    config: &Config,
    example_target: Option<&str>,
    recent: &[&ProbeRecord],
    filter: &Filter,
) -> Html<String> {
    let modules = modules_table(config, example_target);
    let form = probe_form(config, example_target);
    let shown: Vec<&ProbeRecord> = recent.iter().copied().filter(|r| filter.keeps(r)).collect();
    let hint = match (recent.is_empty(), shown.is_empty()) {
        (true, _) => "<p id=\"hint\">No probe has run yet. Probe a PACS with the form above, or \
                      point Prometheus at <code>/probe</code> (see prometheus-example.yml).</p>\n"
            .to_string(),
        (false, true) => "<p id=\"hint\">No recent probe matches the filter.</p>\n".to_string(),
        (false, false) => String::new(),
    };
    let filters = filter_form(config, recent, filter);
    let probes = probes_table(&shown);
    let example_header = if example_target.is_some() {
        "<th>Example</th>"
    } else {
        ""
    };
    Html(format!(
        "<!DOCTYPE html>
<html lang=\"en\"><head><meta charset=\"utf-8\"><title>PACS Exporter</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
tr.failed td {{ background: #fde8e8; }}
tr.finding td {{ background: #fff3cd; }}
form {{ margin: 0.5em 0 1em; }}
</style></head><body>
<h1>PACS Exporter</h1>
<p>Version {version}. <a href=\"metrics\">Exporter metrics</a> · <a href=\"config\">Configuration</a></p>
<h2>Probe a PACS</h2>
{form}<p>Or ask for <code>/probe?target=AET@host:port&amp;module=NAME</code>, as Prometheus does.</p>
<h2>Modules</h2>
<table id=\"modules\"><tr><th>Module</th><th>Prober</th><th>Timeout</th><th>Destination</th>{example_header}</tr>
{modules}</table>
<h2>Recent probes</h2>
{filters}<table id=\"probes\"><tr><th>Time</th><th>Module</th><th>Target</th><th>Destination</th><th>Result</th><th>Found</th><th>Duration</th><th>Failure</th><th>Log</th></tr>
{probes}</table>
{hint}</body></html>
",
        version = env!("CARGO_PKG_VERSION"),
    ))
}

/// The form that runs one debug probe: a module, a target and, for a route, a destination
/// (left empty otherwise: an empty parameter is no parameter).
fn probe_form(config: &Config, example_target: Option<&str>) -> String {
    let options: String = config
        .modules
        .keys()
        .map(|name| {
            let name = html_escape(name);
            format!("<option value=\"{name}\">{name}</option>")
        })
        .collect();
    format!(
        "<form id=\"probe\" action=\"probe\" method=\"get\">\
         <label>Module <select name=\"module\">{options}</select></label> \
         <label>Target <input name=\"target\" size=\"40\" placeholder=\"AET@host:port\" \
         value=\"{target}\" required></label> \
         <label>Destination <input name=\"destination\" size=\"40\" \
         placeholder=\"routes only (destination: from_request)\"></label>\
         <input type=\"hidden\" name=\"debug\" value=\"true\"> \
         <button type=\"submit\">Probe</button></form>\n",
        target = html_escape(example_target.unwrap_or_default()),
    )
}

/// The rows of the modules table: name, prober, timeout, a transfer check's destination and,
/// with a PACS to name, a debug probe link.
fn modules_table(config: &Config, example_target: Option<&str>) -> String {
    config
        .modules
        .iter()
        .map(|(name, module)| {
            let destination = module
                .send_check()
                .map(|check| check.destination.to_string())
                .unwrap_or_default();
            // A route's destination is the request's: no link can name one.
            let example = match example_target {
                Some(_) if module.takes_destination() => {
                    "<td>give a destination in the form</td>".to_string()
                }
                Some(target) => {
                    let query: String = form_urlencoded::Serializer::new(String::new())
                        .append_pair("module", name)
                        .append_pair("target", target)
                        .append_pair("debug", "true")
                        .finish();
                    format!(
                        "<td><a href=\"probe?{query}\">debug probe of {target}</a></td>",
                        query = html_escape(&query),
                        target = html_escape(target),
                    )
                }
                None => String::new(),
            };
            format!(
                "<tr><td>{name}</td><td>{prober}</td><td>{timeout}</td><td>{destination}</td>\
                 {example}</tr>\n",
                name = html_escape(name),
                prober = module.prober.name(),
                timeout = module.timeout,
                destination = html_escape(&destination),
            )
        })
        .collect()
}

/// How a recent probe ended, as the page shows and filters it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Success,
    /// It ran, and found studies missing or incomplete.
    Finding,
    Failure,
}

impl Verdict {
    const ALL: [Verdict; 3] = [Verdict::Success, Verdict::Finding, Verdict::Failure];

    fn of(record: &ProbeRecord) -> Verdict {
        match (&record.failure, record.summary) {
            (Some(_), _) => Verdict::Failure,
            (None, Some(summary)) if summary.is_finding() => Verdict::Finding,
            (None, _) => Verdict::Success,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Verdict::Success => "success",
            Verdict::Finding => "finding",
            Verdict::Failure => "failure",
        }
    }

    /// What the result column says.
    fn text(self) -> &'static str {
        match self {
            Verdict::Success => "success",
            Verdict::Finding => "success: studies not at the destination",
            Verdict::Failure => "failure",
        }
    }

    fn class(self) -> &'static str {
        match self {
            Verdict::Success => "ok",
            Verdict::Finding => "finding",
            Verdict::Failure => "failed",
        }
    }
}

/// Which recent probes the landing page lists: `/?module=M&target=T&result=R`, each optional;
/// `target` matches any part of the target. Other parameters are ignored.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Filter {
    module: Option<String>,
    target: Option<String>,
    result: Option<Verdict>,
}

/// Why a landing page query cannot be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum FilterError {
    #[error("parameter {key:?} is longer than {max} bytes", max = MAX_PARAM_BYTES)]
    TooLong { key: String },
    #[error("invalid result {0:?}: expected success, finding or failure")]
    Result(String),
}

impl Filter {
    pub(super) fn parse(query: &str) -> Result<Filter, FilterError> {
        let mut filter = Filter::default();
        for (key, value) in page_params(query).map_err(|key| FilterError::TooLong { key })? {
            // An empty field of the form means "any".
            let value = (!value.is_empty()).then_some(value);
            match &*key {
                "module" => filter.module = value,
                "target" => filter.target = value,
                "result" => {
                    filter.result = match value {
                        None => None,
                        Some(value) => Some(
                            Verdict::ALL
                                .into_iter()
                                .find(|v| v.as_str() == value)
                                .ok_or(FilterError::Result(value))?,
                        ),
                    }
                }
                // Other parameters (a cache buster, a monitoring check's own) change nothing.
                _ => {}
            }
        }
        Ok(filter)
    }

    fn keeps(&self, record: &ProbeRecord) -> bool {
        self.module.as_ref().is_none_or(|m| *m == record.module)
            && self
                .target
                .as_ref()
                .is_none_or(|t| record.target.contains(t.as_str()))
            && self.result.is_none_or(|v| v == Verdict::of(record))
    }
}

/// The filter form over the recent probes, showing the filter in force.
fn filter_form(config: &Config, recent: &[&ProbeRecord], filter: &Filter) -> String {
    let mut modules: Vec<&str> = config.modules.keys().map(String::as_str).collect();
    modules.extend(recent.iter().map(|r| r.module.as_str()));
    modules.sort_unstable();
    modules.dedup();
    let option = |value: &str, text: &str, selected: bool| {
        format!(
            "<option value=\"{value}\"{selected}>{text}</option>",
            value = html_escape(value),
            text = html_escape(text),
            selected = if selected { " selected" } else { "" },
        )
    };
    let module_options: String = std::iter::once(option("", "any", filter.module.is_none()))
        .chain(
            modules
                .iter()
                .map(|m| option(m, m, filter.module.as_deref() == Some(m))),
        )
        .collect();
    let result_options: String = std::iter::once(option("", "any", filter.result.is_none()))
        .chain(
            Verdict::ALL
                .iter()
                .map(|v| option(v.as_str(), v.as_str(), filter.result == Some(*v))),
        )
        .collect();
    format!(
        "<form id=\"filter\" action=\"\" method=\"get\">\
         <label>Module <select name=\"module\">{module_options}</select></label> \
         <label>Target <input name=\"target\" size=\"30\" value=\"{target}\"></label> \
         <label>Result <select name=\"result\">{result_options}</select></label> \
         <button type=\"submit\">Filter</button></form>\n",
        target = html_escape(filter.target.as_deref().unwrap_or_default()),
    )
}

/// The rows of the recent probes table, in the order given.
fn probes_table(recent: &[&ProbeRecord]) -> String {
    recent
        .iter()
        .map(|r| {
            let verdict = Verdict::of(r);
            let found = r.summary.map(|s| s.to_string()).unwrap_or_default();
            let failure = r
                .failure
                .as_ref()
                .map(|f| {
                    let side = f
                        .peer
                        .map(|p| format!("{}: ", p.as_str()))
                        .unwrap_or_default();
                    format!("{side}{} / {}", f.stage.as_str(), f.reason.as_str())
                })
                .unwrap_or_default();
            format!(
                "<tr class=\"{class}\"><td>{time}</td><td>{module}</td><td>{target}</td>\
                 <td>{destination}</td><td>{result}</td><td>{found}</td><td>{duration:.3}s</td>\
                 <td>{failure}</td><td><a href=\"logs?id={id}\">logs</a></td></tr>\n",
                class = verdict.class(),
                time = format_time(r.started_at),
                module = html_escape(&r.module),
                target = html_escape(&r.target),
                destination = html_escape(r.destination.as_deref().unwrap_or_default()),
                result = verdict.text(),
                found = html_escape(&found),
                duration = r.duration.as_secs_f64(),
                failure = html_escape(&failure),
                id = r.id,
            )
        })
        .collect()
}

/// `/config`: the config in force, as YAML.
pub(super) fn config(config: &Config) -> String {
    config.to_yaml()
}

/// Which probe `/logs` shows: `id=N`, or `target=T&module=M` for the latest of those (with
/// `&destination=D`, of that route).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LogsQuery {
    Id(u64),
    Latest {
        target: String,
        module: String,
        destination: Option<String>,
    },
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
        let mut params: HashMap<String, String> = page_params(query)
            .map_err(|key| LogsQueryError::TooLong { key })?
            .into_iter()
            .collect();
        match (
            params.remove("id"),
            params.remove("target"),
            params.remove("module"),
        ) {
            (Some(id), _, _) => id
                .parse::<u64>()
                .map(LogsQuery::Id)
                .map_err(|_| LogsQueryError::Id(id)),
            (None, Some(target), Some(module)) => Ok(LogsQuery::Latest {
                target,
                module,
                destination: params.remove("destination"),
            }),
            _ => Err(LogsQueryError::Incomplete),
        }
    }

    /// The probe this query names, if the history still has it.
    pub(super) fn find<'h>(&self, history: &'h History) -> Option<&'h ProbeRecord> {
        match self {
            LogsQuery::Id(id) => history.get(*id),
            LogsQuery::Latest {
                target,
                module,
                destination,
            } => history.latest(module, target, destination.as_deref()),
        }
    }
}

/// A page's query parameters in order, each value at most [`MAX_PARAM_BYTES`]; `Err` names
/// the first one longer.
fn page_params(query: &str) -> Result<Vec<(String, String)>, String> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(key, value)| {
            if value.len() > MAX_PARAM_BYTES {
                Err(key.into_owned())
            } else {
                Ok((key.into_owned(), value.into_owned()))
            }
        })
        .collect()
}

/// `/logs`: one probe's log as text, under a line saying what the probe was and how it ended.
pub(super) fn probe_log(record: &ProbeRecord) -> String {
    let destination = record
        .destination
        .as_ref()
        .map(|d| format!(" to destination {d:?}"))
        .unwrap_or_default();
    format!(
        "Probe {} of module {:?} against {:?}{destination}, started {}, {} in {:.3}s\n\n{}",
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
    fn landing_filters() {
        assert_eq!(Filter::parse(""), Ok(Filter::default()));
        assert_eq!(
            Filter::parse("module=echo&target=ORTHANC&result=failure"),
            Ok(Filter {
                module: Some("echo".into()),
                target: Some("ORTHANC".into()),
                result: Some(Verdict::Failure),
            })
        );
        // The form's empty fields mean any; other parameters change nothing.
        assert_eq!(
            Filter::parse("module=&target=&result=&nocache=1"),
            Ok(Filter::default())
        );
        let long = "x".repeat(MAX_PARAM_BYTES + 1);
        let cases = [
            (
                "result=bad",
                "invalid result \"bad\": expected success, finding or failure",
            ),
            (
                &format!("target={long}")[..],
                "parameter \"target\" is longer than 1024 bytes",
            ),
        ];
        for (query, want) in cases {
            assert_eq!(
                Filter::parse(query).unwrap_err().to_string(),
                want,
                "{query}"
            );
        }
    }

    #[test]
    fn logs_queries() {
        assert_eq!(LogsQuery::parse("id=7"), Ok(LogsQuery::Id(7)));
        assert_eq!(
            LogsQuery::parse("target=A%40h%3A104&module=echo"),
            Ok(LogsQuery::Latest {
                target: "A@h:104".into(),
                module: "echo".into(),
                destination: None,
            })
        );
        assert_eq!(
            LogsQuery::parse("target=MR%40h&module=route&destination=AR%40a%3A104"),
            Ok(LogsQuery::Latest {
                target: "MR@h".into(),
                module: "route".into(),
                destination: Some("AR@a:104".into()),
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
