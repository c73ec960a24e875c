//! HTTP routes: `/probe`, `/metrics`, `/`, `/config`, `/-/healthy`, `/-/ready`, `/-/reload`.
//!
//! A probe that ran answers 200 whatever it found (`probe_success` is the verdict); a request
//! that cannot be run answers 4xx with a one-line plain-text reason. Each probe gets a fresh
//! registry; the exporter's own metrics live in [`ExporterMetrics`] and never mix with them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::scheduler::{encode, Cause, Outcome, ProbeJob, Scheduler, SchedulerMetrics};

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use tokio::time::Instant;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::config::{Config, ConfigError};
use crate::target::Target;

/// Prometheus tells the exporter how long it will wait for a scrape in this header.
pub const SCRAPE_TIMEOUT_HEADER: &str = "X-Prometheus-Scrape-Timeout-Seconds";
/// Longest accepted value of a query parameter.
pub const MAX_PARAM_BYTES: usize = 1024;

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Settings of the server that are not in the config file.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// What `/-/reload` and SIGHUP read again; `None` for a config built in memory.
    pub config_path: Option<PathBuf>,
    /// Subtracted from Prometheus' scrape timeout.
    pub timeout_offset: Duration,
    /// Recent successes and, separately, failures kept for `/` and `/logs`.
    pub history_limit: usize,
    /// Probes running at once; 0 for no bound.
    pub max_concurrent: usize,
    /// The PACS the landing page's example links probe (`AET@host:port`), e.g. the demo's
    /// source; `None`: each module's `called_aet` at a placeholder host.
    pub example_target: Option<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            config_path: None,
            timeout_offset: Duration::from_millis(500),
            history_limit: 100,
            max_concurrent: 0,
            example_target: None,
        }
    }
}

/// Shared by every request.
pub struct AppState {
    /// The config in force and its generation (how many loads it is).
    config: RwLock<(u64, Arc<Config>)>,
    options: ServerOptions,
    /// One reload at a time, so that the file read last is the config in force.
    reloading: tokio::sync::Mutex<()>,
    pub metrics: ExporterMetrics,
    pub scheduler: Arc<Scheduler>,
}

impl AppState {
    pub fn new(config: Config, options: ServerOptions) -> AppState {
        let metrics = ExporterMetrics::new();
        let scheduler = Arc::new(Scheduler::new(
            options.max_concurrent,
            options.history_limit,
            metrics.scheduler.clone(),
        ));
        let state = AppState {
            config: RwLock::new((0, Arc::new(config))),
            options,
            reloading: tokio::sync::Mutex::new(()),
            metrics,
            scheduler,
        };
        state.metrics.reload_succeeded();
        state
    }

    /// The config in force; a probe keeps the one it started with through a reload.
    pub fn config(&self) -> Arc<Config> {
        self.current_config().1
    }

    fn current_config(&self) -> (u64, Arc<Config>) {
        match self.config.read() {
            Ok(config) => config.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the config file again. A broken or module-less file is refused and the old
    /// config keeps serving. Reading and parsing run on a blocking thread, so that a large
    /// file does not hold up probes and `/metrics`.
    pub async fn reload(&self) -> Result<(), ReloadError> {
        let Some(path) = &self.options.config_path else {
            return Err(ReloadError::NoFile);
        };
        let _one_at_a_time = self.reloading.lock().await;
        let file = path.clone();
        let loaded = match tokio::task::spawn_blocking(move || Config::load(&file)).await {
            Ok(loaded) => loaded.map_err(ReloadError::Config),
            Err(e) => Err(ReloadError::Interrupted {
                path: path.display().to_string(),
                source: e,
            }),
        };
        match loaded {
            Ok(config) => {
                for warning in config.warnings() {
                    tracing::warn!("{warning}");
                }
                let mut current = match self.config.write() {
                    Ok(current) => current,
                    Err(poisoned) => poisoned.into_inner(),
                };
                *current = (current.0 + 1, Arc::new(config));
                drop(current);
                self.metrics.reload_succeeded();
                tracing::info!(path = %path.display(), "config reloaded");
                Ok(())
            }
            Err(e) => {
                self.metrics.last_reload_successful.set(0);
                tracing::error!(error = %e, "config reload failed; keeping the previous config");
                Err(e)
            }
        }
    }
}

/// Why a reload kept the config in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the config was not read from a file; nothing to reload")]
    NoFile,
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The blocking read was cancelled or panicked.
    #[error("{path}: reading the config failed: {source}")]
    Interrupted {
        path: String,
        source: tokio::task::JoinError,
    },
}

/// The exporter's own metrics, served on `/metrics`.
pub struct ExporterMetrics {
    pub registry: Registry,
    last_reload_successful: IntGauge,
    last_reload_success_timestamp: IntGauge,
    pub probes_in_flight: IntGauge,
    pub probe_requests: IntCounterVec,
    pub module_unknown: IntCounter,
    scheduler: SchedulerMetrics,
}

impl ExporterMetrics {
    fn new() -> ExporterMetrics {
        let registry = Registry::new();
        let build_info = prometheus::IntGaugeVec::new(
            Opts::new(
                "pacs_exporter_build_info",
                "A metric with a constant '1' value labeled by version, revision, branch, \
                 rustversion and platform from which pacs_exporter was built.",
            ),
            &["version", "revision", "branch", "rustversion", "platform"],
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        // Set by build.rs.
        build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                env!("PACS_EXPORTER_REVISION"),
                env!("PACS_EXPORTER_BRANCH"),
                env!("PACS_EXPORTER_RUST_VERSION").trim_start_matches("rustc "),
                env!("PACS_EXPORTER_PLATFORM"),
            ])
            .set(1);
        let int_gauge = |name: &str, help: &str| {
            IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("{e}"))
        };
        let probes_in_flight = int_gauge("pacs_exporter_probes_in_flight", "Probes running now.");
        let scheduler = SchedulerMetrics {
            in_flight: probes_in_flight.clone(),
            queue_wait: Histogram::with_opts(
                HistogramOpts::new(
                    "pacs_exporter_probe_queue_wait_seconds",
                    "How long probes waited for a slot (--probe.max-concurrent) before they started or were refused.",
                )
                .buckets(vec![
                    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                ]),
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            rejections: IntCounterVec::new(
                Opts::new(
                    "pacs_exporter_probe_rejections_total",
                    "Probe requests answered 503 because the exporter could not run them in time, by cause.",
                ),
                &["cause"],
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            overruns: IntCounter::new(
                "pacs_exporter_probe_deadline_overruns_total",
                "Probes that had not ended when their deadline had passed; each was answered as a timeout.",
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
        };
        for cause in Cause::ALL {
            scheduler.rejections.with_label_values(&[cause.as_str()]);
        }
        let metrics = ExporterMetrics {
            last_reload_successful: int_gauge(
                "pacs_exporter_config_last_reload_successful",
                "Whether the last config reload succeeded.",
            ),
            last_reload_success_timestamp: int_gauge(
                "pacs_exporter_config_last_reload_success_timestamp_seconds",
                "When the config was last loaded successfully, in Unix seconds.",
            ),
            probes_in_flight,
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
            scheduler,
            registry,
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(build_info),
            Box::new(metrics.last_reload_successful.clone()),
            Box::new(metrics.last_reload_success_timestamp.clone()),
            Box::new(metrics.probes_in_flight.clone()),
            Box::new(metrics.probe_requests.clone()),
            Box::new(metrics.module_unknown.clone()),
            Box::new(metrics.scheduler.queue_wait.clone()),
            Box::new(metrics.scheduler.rejections.clone()),
            Box::new(metrics.scheduler.overruns.clone()),
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

/// The routes, with tower-http's layers around them: request tracing, a panic turned into a
/// 500, a bound on request bodies, a timeout for the pages (probes keep their own deadlines),
/// and a one-line reason in every 4xx/5xx answer.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(landing_page))
        .route("/metrics", get(metrics))
        .route("/config", get(config))
        .route("/logs", get(logs))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(|| async { "Ready\n" }))
        .route("/-/reload", post(reload))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            PAGE_TIMEOUT,
        ))
        .route("/probe", get(probe))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn(reason_for_every_error))
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(CatchPanicLayer::custom(handler_panicked))
        .layer(
            TraceLayer::new_for_http()
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
}

/// How long any endpoint but `/probe` may take (a reload of a large config included).
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests carry no body worth reading; `POST /-/reload` needs none.
const MAX_BODY_BYTES: usize = 64 * 1024;

async fn not_found(uri: Uri) -> Response {
    plain(
        StatusCode::NOT_FOUND,
        format!(
            "not found: {} is not served here; see / for what is",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    plain(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method {method} is not allowed for {}", uri.path()),
    )
}

fn handler_panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown");
    tracing::error!(panic = message, "a request handler panicked");
    plain(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error: the request's handler failed; the exporter's log has the details",
    )
}

/// Gives an error answer that has no body (from a layer, not a handler) a one-line reason.
async fn reason_for_every_error(request: axum::extract::Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let empty = axum::body::HttpBody::size_hint(response.body()).exact() == Some(0);
    if !(status.is_client_error() || status.is_server_error()) || !empty {
        return response;
    }
    let reason = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("request body too large: at most {MAX_BODY_BYTES} bytes")
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            format!("the request took longer than {}s", PAGE_TIMEOUT.as_secs())
        }
        other => other
            .canonical_reason()
            .unwrap_or("request refused")
            .to_lowercase(),
    };
    let (mut parts, _) = response.into_parts();
    let answer = plain(status, reason);
    parts.headers.remove(header::CONTENT_LENGTH);
    let (answer_parts, body) = answer.into_parts();
    parts.headers.extend(answer_parts.headers);
    Response::from_parts(parts, body)
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

/// Why a `/probe` request cannot run. The HTTP status of each is chosen in [`RequestError::status`].
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    Params(String),
    #[error("unknown module {0:?}")]
    UnknownModule(String),
    #[error("invalid target {text:?}: {error}")]
    Target {
        text: String,
        error: crate::target::TargetError,
    },
    #[error("{0}")]
    Timeout(String),
    #[error(transparent)]
    NotAllowed(#[from] crate::allow::NotAllowed),
}

impl RequestError {
    fn status(&self) -> StatusCode {
        match self {
            RequestError::NotAllowed(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A `/probe` request that may run: what to probe, how, and by when.
struct ProbeRequest {
    params: ProbeParams,
    job: ProbeJob,
    /// The module as configured, for `debug=true`.
    module_yaml: String,
}

/// `/probe` reads as parse → schedule → render.
async fn probe(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let request = match ProbeRequest::parse(&state, &headers, query.as_deref()).await {
        Ok(request) => request,
        Err(error) => {
            if let RequestError::UnknownModule(_) = error {
                state.metrics.module_unknown.inc();
            }
            if let RequestError::NotAllowed(reason) = &error {
                tracing::info!("{reason}");
            }
            return plain(error.status(), error.to_string());
        }
    };
    let outcome = state.scheduler.run(request.job).await;
    render(
        &state,
        &request.params,
        &request.module_yaml,
        &headers,
        outcome,
    )
}

impl ProbeRequest {
    async fn parse(
        state: &AppState,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<ProbeRequest, RequestError> {
        let params = ProbeParams::parse(query.unwrap_or("")).map_err(RequestError::Params)?;
        let (generation, config) = state.current_config();
        let module = config
            .modules
            .get(&params.module)
            .ok_or_else(|| RequestError::UnknownModule(params.module.clone()))?;
        let target = Target::parse(&params.target).map_err(|error| RequestError::Target {
            text: params.target.clone(),
            error,
        })?;
        let header = match headers.get(SCRAPE_TIMEOUT_HEADER).map(HeaderValue::to_str) {
            None => None,
            Some(Ok(value)) => Some(value),
            Some(Err(_)) => {
                return Err(RequestError::Timeout(format!(
                    "invalid {SCRAPE_TIMEOUT_HEADER} header"
                )))
            }
        };
        let timeout = probe_timeout(header, state.options.timeout_offset, module.timeout.0)
            .map_err(RequestError::Timeout)?;
        let deadline = Instant::now() + timeout;
        // Checked before anything is sent to the target: a refused target sees no packet.
        config.allow.check(&target, deadline).await?;
        let module_yaml = module.to_yaml();
        let job = ProbeJob {
            config: config.clone(),
            generation,
            module: params.module.clone(),
            target,
            target_text: params.target.clone(),
            deadline,
            timeout,
        };
        Ok(ProbeRequest {
            params,
            job,
            module_yaml,
        })
    }
}

/// The answer to a probe request: its metrics (or log, with `debug=true`), or why the exporter
/// could not run it.
fn render(
    state: &AppState,
    params: &ProbeParams,
    module_yaml: &str,
    headers: &HeaderMap,
    outcome: Outcome,
) -> Response {
    let count = |result: &str| {
        state
            .metrics
            .probe_requests
            .with_label_values(&[&params.module, result])
            .inc();
    };
    let outcome = match outcome {
        Outcome::Ran(outcome) => outcome,
        Outcome::Rejected { cause, reason } => {
            count("busy");
            state
                .metrics
                .scheduler
                .rejections
                .with_label_values(&[cause.as_str()])
                .inc();
            tracing::info!(module = %params.module, target = %params.target, "probe refused: {reason}");
            return plain(StatusCode::SERVICE_UNAVAILABLE, reason);
        }
        Outcome::Crashed(reason) => {
            count("error");
            return plain(StatusCode::INTERNAL_SERVER_ERROR, reason);
        }
    };
    count(if outcome.success {
        "success"
    } else {
        "failure"
    });

    if params.debug {
        let body = format!(
            "Logs for the probe:\n{}\n\nMetrics that would have been returned:\n{}\n\nModule configuration:\n{}",
            outcome.log, outcome.exposition, module_yaml
        );
        return plain(StatusCode::OK, body);
    }
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        // A probe's metrics are all gauges, whose OpenMetrics form is the text form's.
        let body = format!("{}# EOF\n", outcome.exposition);
        return ([(header::CONTENT_TYPE, OPENMETRICS_FORMAT)], body).into_response();
    }
    (
        [(header::CONTENT_TYPE, TEXT_FORMAT)],
        outcome.exposition.clone(),
    )
        .into_response()
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
    match state.reload().await {
        Ok(()) => plain(StatusCode::OK, "config reloaded"),
        Err(e) => plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to reload config: {e}"),
        ),
    }
}

/// `/logs?id=N` or `/logs?target=T&module=M`: one recent probe's log as text.
async fn logs(State(state): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Response {
    let mut params: HashMap<String, String> = HashMap::new();
    for (key, value) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        if value.len() > MAX_PARAM_BYTES {
            return plain(
                StatusCode::BAD_REQUEST,
                format!("parameter {key:?} is longer than {MAX_PARAM_BYTES} bytes"),
            );
        }
        params.insert(key.into_owned(), value.into_owned());
    }
    let history = state.scheduler.history();
    let record = match (params.get("id"), params.get("target"), params.get("module")) {
        (Some(id), _, _) => match id.parse::<u64>() {
            Ok(id) => history.get(id),
            Err(_) => {
                return plain(
                    StatusCode::BAD_REQUEST,
                    format!("invalid id {id:?}: expected a number"),
                )
            }
        },
        (None, Some(target), Some(module)) => history.latest(module, target),
        _ => {
            return plain(
                StatusCode::BAD_REQUEST,
                "give id=N, or target=T and module=M",
            )
        }
    };
    match record {
        Some(record) => plain(
            StatusCode::OK,
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
            ),
        ),
        None => plain(StatusCode::NOT_FOUND, "no such probe in the recent history"),
    }
}

/// UTC, to the second: `2026-11-25 12:31:52Z`.
fn format_time(time: SystemTime) -> String {
    let time: chrono::DateTime<chrono::Utc> = time.into();
    time.format("%Y-%m-%d %H:%M:%SZ").to_string()
}

async fn landing_page(State(state): State<Arc<AppState>>) -> Html<String> {
    let config = state.config();
    let example_target = state.options.example_target.as_deref();
    let modules: String = config
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
        .collect();
    let placeholder = if example_target.is_none() {
        format!(
            "<p id=\"placeholder\">The example links probe <code>{EXAMPLE_HOST}</code>, a placeholder: \
             replace it with your PACS' host name or address, and the AE title and port with its own.</p>\n"
        )
    } else {
        String::new()
    };
    let probes: String = state
        .scheduler
        .history()
        .recent()
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
        .collect();
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

/// The host of the landing page's example links when there is no real PACS to name.
const EXAMPLE_HOST: &str = "pacs.example";

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
