//! HTTP: the routes and everything under them. [`router`] assembles the endpoints, each
//! answered by the module that owns it:
//! - `probe`: `/probe`, which reads as parse → schedule → render;
//! - `pages`: `/`, `/logs` and `/config`, each given what it shows;
//! - `/metrics` (the exporter's own, `metrics`), `/-/healthy`, `/-/ready` and `/-/reload`
//!   (see `state`, which holds the config in force and reloads it).
//!
//! Under the routes, `connections` accepts and serves connections (keep-alive, idle and
//! header-read timeouts, graceful shutdown), `admission` decides which connections are kept
//! when they run short, and `auth` and `tls` read the web config file
//! (basic authentication, the TLS server config). A probe's own metrics come from a registry
//! made fresh for it; the exporter's own never mix with them. Every 4xx/5xx answer carries a
//! one-line plain-text reason.

mod admission;
mod auth;
mod connections;
mod metrics;
mod pages;
mod probe;
mod state;
mod tls;

pub use auth::{protect, serve, BasicAuth, WebConfig, WebConfigError, WebConfigProblem};
pub use connections::{listen, serve_all, Arrival, ConnectionMetrics, HttpOptions};
pub use probe::SCRAPE_TIMEOUT_HEADER;
pub use state::{AppState, ReloadError, ServerOptions};
pub use tls::TlsProblem;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use self::pages::LogsQuery;

/// Longest accepted value of a query parameter.
pub const MAX_PARAM_BYTES: usize = 1024;

const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The routes, with tower-http's layers around them: request tracing, a panic turned into a
/// 500, a bound on request bodies, a timeout for the pages (probes keep their own deadlines),
/// and a one-line reason in every 4xx/5xx answer.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(landing_page))
        .route("/metrics", get(exporter_metrics))
        .route("/config", get(config_page))
        .route("/logs", get(logs))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(|| async { "Ready\n" }))
        .route("/-/reload", post(reload))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            PAGE_TIMEOUT,
        ))
        .route("/probe", get(probe::probe))
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

async fn exporter_metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, TEXT_FORMAT)],
        metrics::encode(&state.metrics.registry),
    )
        .into_response()
}

async fn config_page(State(state): State<Arc<AppState>>) -> Response {
    plain(StatusCode::OK, pages::config(&state.config()))
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
    let wanted = match LogsQuery::parse(query.as_deref().unwrap_or("")) {
        Ok(wanted) => wanted,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let history = state.scheduler.history();
    match wanted.find(&history) {
        Some(record) => plain(StatusCode::OK, pages::probe_log(record)),
        None => plain(StatusCode::NOT_FOUND, "no such probe in the recent history"),
    }
}

async fn landing_page(State(state): State<Arc<AppState>>, RawQuery(query): RawQuery) -> Response {
    let filter = match pages::Filter::parse(query.as_deref().unwrap_or_default()) {
        Ok(filter) => filter,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let config = state.config();
    let history = state.scheduler.history();
    pages::landing(
        &config,
        state.options().example_target.as_deref(),
        &history.recent(),
        &filter,
    )
    .into_response()
}
