//! HTTP routes: `/probe`, `/metrics`, `/`, `/config`, `/-/healthy`, `/-/ready`, `/-/reload`.
//!
//! A probe that ran answers 200 whatever it found (`probe_success` is the verdict); a request
//! that cannot be run answers 4xx with a one-line plain-text reason. Each probe gets a fresh
//! registry; the exporter's own metrics live in [`ExporterMetrics`] and never mix with them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};
use tokio::time::Instant;

use crate::config::Config;
use crate::prober::{self, ProbeLog};
use crate::target::Target;

/// Prometheus tells the exporter how long it will wait for a scrape in this header.
pub const SCRAPE_TIMEOUT_HEADER: &str = "X-Prometheus-Scrape-Timeout-Seconds";
/// Longest accepted value of a query parameter.
pub const MAX_PARAM_BYTES: usize = 1024;

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Shared by every request.
pub struct AppState {
    config: RwLock<Arc<Config>>,
    config_path: Option<PathBuf>,
    timeout_offset: Duration,
    pub metrics: ExporterMetrics,
}

impl AppState {
    /// `config_path` is what `/-/reload` and SIGHUP read again; `None` for a config that was
    /// built in memory (tests, the demo).
    pub fn new(config: Config, config_path: Option<PathBuf>, timeout_offset: Duration) -> AppState {
        let state = AppState {
            config: RwLock::new(Arc::new(config)),
            config_path,
            timeout_offset,
            metrics: ExporterMetrics::new(),
        };
        state.metrics.reload_succeeded();
        state
    }

    /// The config in force; a probe keeps the one it started with through a reload.
    pub fn config(&self) -> Arc<Config> {
        match self.config.read() {
            Ok(config) => config.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the config file again. A broken file is refused and the old config keeps serving.
    pub fn reload(&self) -> Result<(), String> {
        let Some(path) = &self.config_path else {
            return Err("the config was not read from a file; nothing to reload".into());
        };
        match Config::load(path) {
            Ok(config) => {
                match self.config.write() {
                    Ok(mut current) => *current = Arc::new(config),
                    Err(poisoned) => *poisoned.into_inner() = Arc::new(config),
                }
                self.metrics.reload_succeeded();
                tracing::info!(path = %path.display(), "config reloaded");
                Ok(())
            }
            Err(e) => {
                self.metrics.last_reload_successful.set(0);
                tracing::error!(error = %e, "config reload failed; keeping the previous config");
                Err(e.to_string())
            }
        }
    }
}

/// The exporter's own metrics, served on `/metrics`.
pub struct ExporterMetrics {
    pub registry: Registry,
    last_reload_successful: IntGauge,
    last_reload_success_timestamp: IntGauge,
    pub probes_in_flight: IntGauge,
    pub probe_requests: IntCounterVec,
    pub module_unknown: IntCounter,
}

impl ExporterMetrics {
    fn new() -> ExporterMetrics {
        let registry = Registry::new();
        let build_info = prometheus::IntGaugeVec::new(
            Opts::new(
                "pacs_exporter_build_info",
                "Version and revision of the running exporter.",
            ),
            &["version", "revision"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("PACS_EXPORTER_REVISION").unwrap_or("unknown"),
            ])
            .set(1);
        let int_gauge = |name: &str, help: &str| {
            IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("{e}"))
        };
        let metrics = ExporterMetrics {
            last_reload_successful: int_gauge(
                "pacs_exporter_config_last_reload_successful",
                "Whether the last config reload succeeded.",
            ),
            last_reload_success_timestamp: int_gauge(
                "pacs_exporter_config_last_reload_success_timestamp_seconds",
                "When the config was last loaded successfully, in Unix seconds.",
            ),
            probes_in_flight: int_gauge("pacs_exporter_probes_in_flight", "Probes running now."),
            probe_requests: IntCounterVec::new(
                Opts::new(
                    "pacs_exporter_probe_requests_total",
                    "Probe requests answered, by module and result (success, failure).",
                ),
                &["module", "result"],
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            module_unknown: IntCounter::new(
                "pacs_exporter_module_unknown_total",
                "Probe requests that named a module the config does not have.",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(build_info),
            Box::new(metrics.last_reload_successful.clone()),
            Box::new(metrics.last_reload_success_timestamp.clone()),
            Box::new(metrics.probes_in_flight.clone()),
            Box::new(metrics.probe_requests.clone()),
            Box::new(metrics.module_unknown.clone()),
            Box::new(prometheus::process_collector::ProcessCollector::for_self()),
        ];
        for collector in collectors {
            if let Err(e) = metrics.registry.register(collector) {
                tracing::error!(error = %e, "cannot register exporter metric");
            }
        }
        metrics
    }

    fn reload_succeeded(&self) {
        self.last_reload_successful.set(1);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.last_reload_success_timestamp.set(now as i64);
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(landing_page))
        .route("/probe", get(probe))
        .route("/metrics", get(metrics))
        .route("/config", get(config))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(|| async { "Ready\n" }))
        .route("/-/reload", post(reload))
        .with_state(state)
}

fn plain(status: StatusCode, text: impl Into<String>) -> Response {
    let mut text = text.into();
    text.push('\n');
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// The parameters of a `/probe` request.
#[derive(Debug, PartialEq, Eq)]
pub struct ProbeParams {
    pub target: String,
    pub module: String,
    pub debug: bool,
}

impl ProbeParams {
    /// Parses the query string. Other parameters are ignored, as blackbox_exporter does, so
    /// that relabeling may add its own.
    pub fn parse(query: &str) -> Result<ProbeParams, String> {
        let mut seen: HashMap<String, String> = HashMap::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if key.len() > MAX_PARAM_BYTES || value.len() > MAX_PARAM_BYTES {
                let key: String = key.chars().take(32).collect();
                return Err(format!(
                    "parameter {key:?} is longer than {MAX_PARAM_BYTES} bytes"
                ));
            }
            if matches!(key.as_ref(), "target" | "module" | "debug") {
                if seen.contains_key(key.as_ref()) {
                    return Err(format!("parameter {key:?} is given more than once"));
                }
                seen.insert(key.into_owned(), value.into_owned());
            }
        }
        let target = seen
            .remove("target")
            .ok_or("parameter \"target\" is missing")?;
        let module = seen
            .remove("module")
            .ok_or("parameter \"module\" is missing")?;
        let debug = match seen.remove("debug").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(format!(
                    "parameter \"debug\" must be true or false, not {other:?}"
                ))
            }
        };
        Ok(ProbeParams {
            target,
            module,
            debug,
        })
    }
}

/// The deadline a probe runs under: the scrape timeout Prometheus announces minus
/// `offset`, capped by the module's timeout; the module's timeout without the header.
/// When the offset would leave nothing (a scrape timeout at or below it), half the scrape
/// timeout is used instead, so the answer still arrives before Prometheus gives up.
pub fn probe_timeout(
    header: Option<&str>,
    offset: Duration,
    module_timeout: Duration,
) -> Result<Duration, String> {
    let Some(text) = header else {
        return Ok(module_timeout);
    };
    let seconds: f64 = text
        .trim()
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s > 0.0)
        .ok_or_else(|| format!("invalid {SCRAPE_TIMEOUT_HEADER} header {text:?}: expected a positive number of seconds"))?;
    let scrape = Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("invalid {SCRAPE_TIMEOUT_HEADER} header {text:?}"))?;
    let budget = if scrape > offset {
        scrape - offset
    } else {
        scrape / 2
    };
    Ok(budget.min(module_timeout))
}

/// Keeps `pacs_exporter_probes_in_flight` right even when a client goes away mid-probe.
struct InFlight<'a>(&'a IntGauge);

impl<'a> InFlight<'a> {
    fn start(gauge: &'a IntGauge) -> InFlight<'a> {
        gauge.inc();
        InFlight(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn probe(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match ProbeParams::parse(query.as_deref().unwrap_or("")) {
        Ok(params) => params,
        Err(reason) => return plain(StatusCode::BAD_REQUEST, reason),
    };
    let config = state.config();
    let Some(module) = config.modules.get(&params.module) else {
        state.metrics.module_unknown.inc();
        return plain(
            StatusCode::BAD_REQUEST,
            format!("unknown module {:?}", params.module),
        );
    };
    let target = match Target::parse(&params.target) {
        Ok(target) => target,
        Err(e) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("invalid target {:?}: {e}", params.target),
            )
        }
    };
    let header = match headers.get(SCRAPE_TIMEOUT_HEADER).map(HeaderValue::to_str) {
        None => None,
        Some(Ok(value)) => Some(value),
        Some(Err(_)) => {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("invalid {SCRAPE_TIMEOUT_HEADER} header"),
            )
        }
    };
    let timeout = match probe_timeout(header, state.timeout_offset, module.timeout.0) {
        Ok(timeout) => timeout,
        Err(reason) => return plain(StatusCode::BAD_REQUEST, reason),
    };

    let deadline = Instant::now() + timeout;
    let log = ProbeLog::new(&params.module, &params.target);
    let result = {
        let _in_flight = InFlight::start(&state.metrics.probes_in_flight);
        prober::run(&target, module, deadline, timeout, &log).await
    };
    let outcome = if result.success { "success" } else { "failure" };
    state
        .metrics
        .probe_requests
        .with_label_values(&[&params.module, outcome])
        .inc();

    let exposition = encode(&result.registry);
    if params.debug {
        let body = format!(
            "Logs for the probe:\n{}\n\nMetrics that would have been returned:\n{}\n\nModule configuration:\n{}",
            log.render(),
            exposition,
            module.to_yaml()
        );
        return plain(StatusCode::OK, body);
    }
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        // A probe's metrics are all gauges, whose OpenMetrics form is the text form's.
        let body = format!("{exposition}# EOF\n");
        return ([(header::CONTENT_TYPE, OPENMETRICS_FORMAT)], body).into_response();
    }
    ([(header::CONTENT_TYPE, TEXT_FORMAT)], exposition).into_response()
}

fn encode(registry: &Registry) -> String {
    let mut buffer = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    String::from_utf8_lossy(&buffer).into_owned()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, TEXT_FORMAT)],
        encode(&state.metrics.registry),
    )
        .into_response()
}

async fn config(State(state): State<Arc<AppState>>) -> Response {
    plain(StatusCode::OK, state.config().to_yaml())
}

async fn reload(State(state): State<Arc<AppState>>) -> Response {
    match state.reload() {
        Ok(()) => plain(StatusCode::OK, "config reloaded"),
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}"),
        ),
    }
}

async fn landing_page(State(state): State<Arc<AppState>>) -> Html<String> {
    let config = state.config();
    let modules: String = config
        .modules
        .iter()
        .map(|(name, module)| {
            let name = html_escape(name);
            format!(
                "<li><b>{name}</b> ({prober}, timeout {timeout}) — <a href=\"probe?target=ANY-SCP@127.0.0.1:104&amp;module={name}&amp;debug=true\">debug probe</a></li>\n",
                prober = module.prober.name(),
                timeout = module.timeout,
            )
        })
        .collect();
    Html(format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>PACS Exporter</title></head><body>\n\
         <h1>PACS Exporter</h1>\n<p>Version {version}</p>\n\
         <p><a href=\"metrics\">Exporter metrics</a> · <a href=\"config\">Configuration</a></p>\n\
         <h2>Modules</h2>\n<ul>\n{modules}</ul>\n\
         <p>Probe a PACS: <code>/probe?target=AET@host:port&amp;module=NAME</code></p>\n\
         </body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
    ))
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
    fn timeout_arithmetic() {
        let s = Duration::from_secs_f64;
        let offset = s(0.5);
        let cases: &[(Option<&str>, f64, f64)] = &[
            // (header, module timeout, expected)
            (None, 10.0, 10.0),
            (None, 5.0, 5.0),
            (Some("10"), 30.0, 9.5),
            (Some("10"), 5.0, 5.0),
            (Some("5.5"), 30.0, 5.0),
            (Some(" 3 "), 30.0, 2.5),
            (Some("0.5"), 30.0, 0.25),
            (Some("0.2"), 30.0, 0.1),
            (Some("0.2"), 0.05, 0.05),
        ];
        for &(header, module, want) in cases {
            let got = probe_timeout(header, offset, s(module)).unwrap();
            assert!(
                (got.as_secs_f64() - want).abs() < 1e-9,
                "{header:?}/{module}: got {got:?}, want {want}"
            );
        }
        assert_eq!(
            probe_timeout(Some("10"), Duration::ZERO, s(30.0)).unwrap(),
            s(10.0)
        );
        for bad in ["", "abc", "-1", "0", "NaN", "inf", "1e400"] {
            assert!(
                probe_timeout(Some(bad), offset, s(10.0)).is_err(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn probe_params() {
        let ok = ProbeParams::parse("target=A%40127.0.0.1%3A104&module=echo&foo=bar").unwrap();
        assert_eq!(
            ok,
            ProbeParams {
                target: "A@127.0.0.1:104".into(),
                module: "echo".into(),
                debug: false
            }
        );
        assert!(
            ProbeParams::parse("target=x&module=echo&debug=true")
                .unwrap()
                .debug
        );

        let long = "x".repeat(MAX_PARAM_BYTES + 1);
        let cases = [
            ("module=echo", "parameter \"target\" is missing"),
            ("target=x", "parameter \"module\" is missing"),
            (
                "target=x&target=y&module=echo",
                "parameter \"target\" is given more than once",
            ),
            (
                "target=x&module=a&module=b",
                "parameter \"module\" is given more than once",
            ),
            (
                "target=x&module=echo&debug=yes",
                "parameter \"debug\" must be true or false, not \"yes\"",
            ),
            (
                &format!("target={long}&module=echo")[..],
                "parameter \"target\" is longer than 1024 bytes",
            ),
        ];
        for (query, want) in cases {
            assert_eq!(ProbeParams::parse(query).unwrap_err(), want, "{query}");
        }
    }
}
