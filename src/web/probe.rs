//! `/probe`: parse the request, schedule the probe, render what it found.
//!
//! A probe that ran answers 200 whatever it found (`probe_success` is the verdict); a request
//! that cannot be run answers 4xx with a one-line plain-text reason, its status chosen in
//! [`RequestError::status`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use tokio::time::Instant;

use super::connections::Arrival;
use super::{plain, AppState, MAX_PARAM_BYTES, TEXT_FORMAT};
use crate::allow::NotAllowed;
use crate::scheduler::{Outcome, ProbeJob};
use crate::target::Target;

/// Prometheus tells the exporter how long it will wait for a scrape in this header.
pub const SCRAPE_TIMEOUT_HEADER: &str = "X-Prometheus-Scrape-Timeout-Seconds";

const OPENMETRICS_FORMAT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The parameters of a `/probe` request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ProbeParams {
    pub target: String,
    pub module: String,
    /// A route's destination, for a module with `destination: from_request`.
    pub destination: Option<String>,
    pub debug: bool,
}

/// Why a `/probe` query string cannot be read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParamsError {
    /// The key is cut to its first 32 characters.
    #[error("parameter {key:?} is longer than {max} bytes", max = MAX_PARAM_BYTES)]
    TooLong { key: String },
    #[error("parameter {0:?} is given more than once")]
    Repeated(String),
    #[error("parameter {0:?} is missing")]
    Missing(&'static str),
    #[error("parameter \"debug\" must be true or false, not {0:?}")]
    Debug(String),
}

impl ProbeParams {
    /// Parses the query string. Other parameters are ignored, as blackbox_exporter does, so
    /// that relabeling may add its own.
    pub(crate) fn parse(query: &str) -> Result<ProbeParams, ParamsError> {
        let mut seen: HashMap<String, String> = HashMap::new();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            if key.len() > MAX_PARAM_BYTES || value.len() > MAX_PARAM_BYTES {
                let key: String = key.chars().take(32).collect();
                return Err(ParamsError::TooLong { key });
            }
            if matches!(key.as_ref(), "target" | "module" | "destination" | "debug") {
                if seen.contains_key(key.as_ref()) {
                    return Err(ParamsError::Repeated(key.into_owned()));
                }
                seen.insert(key.into_owned(), value.into_owned());
            }
        }
        let target = seen
            .remove("target")
            .ok_or(ParamsError::Missing("target"))?;
        let module = seen
            .remove("module")
            .ok_or(ParamsError::Missing("module"))?;
        let debug = match seen.remove("debug").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => return Err(ParamsError::Debug(other.to_string())),
        };
        Ok(ProbeParams {
            target,
            module,
            // An empty destination is none (the landing page's form sends one).
            destination: seen.remove("destination").filter(|d| !d.is_empty()),
            debug,
        })
    }
}

/// Why the scrape timeout Prometheus announced cannot be used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TimeoutError {
    /// The header's value is not text.
    #[error("invalid {header} header", header = SCRAPE_TIMEOUT_HEADER)]
    NotText,
    #[error(
        "invalid {header} header {0:?}: expected a positive number of seconds",
        header = SCRAPE_TIMEOUT_HEADER
    )]
    NotPositive(String),
    /// A positive number too large for a duration.
    #[error("invalid {header} header {0:?}", header = SCRAPE_TIMEOUT_HEADER)]
    OutOfRange(String),
}

/// The deadline a probe runs under: the scrape timeout Prometheus announces minus
/// `offset`, capped by the module's timeout; the module's timeout without the header.
/// When the offset would leave nothing (a scrape timeout at or below it), half the scrape
/// timeout is used instead, so the answer still arrives before Prometheus gives up.
pub(crate) fn probe_timeout(
    header: Option<&str>,
    offset: Duration,
    module_timeout: Duration,
) -> Result<Duration, TimeoutError> {
    let Some(text) = header else {
        return Ok(module_timeout);
    };
    let seconds: f64 = text
        .trim()
        .parse()
        .ok()
        .filter(|s: &f64| s.is_finite() && *s > 0.0)
        .ok_or_else(|| TimeoutError::NotPositive(text.to_string()))?;
    let scrape = Duration::try_from_secs_f64(seconds)
        .map_err(|_| TimeoutError::OutOfRange(text.to_string()))?;
    let budget = if scrape > offset {
        scrape - offset
    } else {
        scrape / 2
    };
    Ok(budget.min(module_timeout))
}

/// Why a `/probe` request cannot run. The HTTP status of each is chosen in [`RequestError::status`].
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    #[error(transparent)]
    Params(#[from] ParamsError),
    #[error("unknown module {0:?}")]
    UnknownModule(String),
    #[error("invalid target {text:?}: {error}")]
    Target {
        text: String,
        error: crate::target::TargetError,
    },
    #[error("invalid destination {text:?}: {error}")]
    Destination {
        text: String,
        error: crate::target::TargetError,
    },
    #[error(
        "module {0:?} takes its destination from the request (destination: from_request): \
         add &destination=AET@host:port"
    )]
    NoDestination(String),
    #[error(
        "module {0:?} does not take a destination from the request: only a send_check module \
         with destination: from_request does"
    )]
    DestinationNotTaken(String),
    #[error(transparent)]
    Timeout(#[from] TimeoutError),
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
    /// The module as configured when the request came, for `debug=true` only.
    module_yaml: Option<String>,
}

/// `/probe` reads as parse → schedule → render.
pub(super) async fn probe(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    arrival: Option<Extension<Arrival>>,
    RawQuery(query): RawQuery,
) -> Response {
    // The budget counts from when the request reached the host, as Prometheus counts it.
    let arrived = arrival.map_or_else(Instant::now, |Extension(Arrival(at))| at);
    let request = match ProbeRequest::parse(&state, &headers, arrived, query.as_deref()).await {
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
        request.module_yaml.as_deref(),
        &headers,
        outcome,
    )
}

impl ProbeRequest {
    async fn parse(
        state: &AppState,
        headers: &HeaderMap,
        arrived: Instant,
        query: Option<&str>,
    ) -> Result<ProbeRequest, RequestError> {
        let params = ProbeParams::parse(query.unwrap_or(""))?;
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
            Some(Err(_)) => return Err(TimeoutError::NotText.into()),
        };
        let timeout = probe_timeout(header, state.options().timeout_offset, module.timeout.0)?;
        let deadline = arrived + timeout;
        let destination = route_destination(module, &params)?;
        // Checked before anything is sent to the target: a refused target sees no packet.
        config.allow.check(&target, deadline).await?;
        if let Some((destination, _)) = &destination {
            config
                .allow
                .check(destination, deadline)
                .await
                .map_err(NotAllowed::for_destination)?;
        }
        let module_yaml = params.debug.then(|| module.to_yaml());
        let job = ProbeJob {
            config: config.clone(),
            generation,
            module: params.module.clone(),
            target,
            target_text: params.target.clone(),
            destination,
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

/// The destination a request names for its module: required by a send_check module with
/// `destination: from_request`, refused by every other module (a relabeling meant for a
/// route would otherwise check another pair than the one its labels name).
fn route_destination(
    module: &crate::prober::module::Module,
    params: &ProbeParams,
) -> Result<Option<(Target, String)>, RequestError> {
    match (&params.destination, module.takes_destination()) {
        (Some(text), true) => Target::parse(text)
            .map(|target| Some((target, text.clone())))
            .map_err(|error| RequestError::Destination {
                text: text.clone(),
                error,
            }),
        (None, true) => Err(RequestError::NoDestination(params.module.clone())),
        (Some(_), false) => Err(RequestError::DestinationNotTaken(params.module.clone())),
        (None, false) => Ok(None),
    }
}

/// The answer to a probe request: its metrics (or log, with `debug=true`), or why the exporter
/// could not run it.
fn render(
    state: &AppState,
    params: &ProbeParams,
    module_yaml: Option<&str>,
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
            outcome.log,
            outcome.exposition,
            module_yaml.unwrap_or_default()
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
    fn timeout_errors_name_the_header() {
        assert_eq!(
            probe_timeout(Some("abc"), Duration::ZERO, Duration::from_secs(10))
                .unwrap_err()
                .to_string(),
            "invalid X-Prometheus-Scrape-Timeout-Seconds header \"abc\": expected a positive number of seconds"
        );
        assert_eq!(
            TimeoutError::NotText.to_string(),
            "invalid X-Prometheus-Scrape-Timeout-Seconds header"
        );
    }

    #[test]
    fn probe_params() {
        let ok = ProbeParams::parse("target=A%40127.0.0.1%3A104&module=echo&foo=bar").unwrap();
        assert_eq!(
            ok,
            ProbeParams {
                target: "A@127.0.0.1:104".into(),
                module: "echo".into(),
                destination: None,
                debug: false
            }
        );
        let route = ProbeParams::parse(
            "target=MR%40mr.example&module=route&destination=AR%40ar.example:11112",
        )
        .unwrap();
        assert_eq!(route.destination.as_deref(), Some("AR@ar.example:11112"));
        let form = ProbeParams::parse("target=x&module=echo&destination=&debug=true").unwrap();
        assert_eq!(form.destination, None);
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
                "target=x&module=a&destination=y&destination=z",
                "parameter \"destination\" is given more than once",
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
            assert_eq!(
                ProbeParams::parse(query).unwrap_err().to_string(),
                want,
                "{query}"
            );
        }
    }
}
