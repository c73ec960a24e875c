//! Flags, logging, signals; then serve. No probe logic lives here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use pacs_exporter::config::{Config, InvalidDuration, PromDuration};
use pacs_exporter::web::{router, AppState, HttpOptions, ServerOptions, WebConfig};

/// `--version` as Prometheus' exporters print it; the build facts come from build.rs.
const VERSION: &str = concat!(
    "pacs_exporter, version ",
    env!("CARGO_PKG_VERSION"),
    " (branch: ",
    env!("PACS_EXPORTER_BRANCH"),
    ", revision: ",
    env!("PACS_EXPORTER_REVISION"),
    ")\n  build user:       ",
    env!("PACS_EXPORTER_BUILD_USER"),
    "\n  build date:       ",
    env!("PACS_EXPORTER_BUILD_DATE"),
    "\n  rust version:     ",
    env!("PACS_EXPORTER_RUST_VERSION"),
    "\n  platform:         ",
    env!("PACS_EXPORTER_PLATFORM"),
    "\n",
);

/// Prometheus exporter for PACS (DICOM) servers.
#[derive(Parser, Debug)]
#[command(name = "pacs_exporter", about, disable_version_flag = true)]
struct Flags {
    /// Print version and build information, then exit.
    #[arg(long)]
    version: bool,
    /// Path to the modules file.
    #[arg(long = "config.file", default_value = "modules.yml")]
    config_file: PathBuf,
    /// Validate the config file, then exit (0 valid, 1 invalid).
    #[arg(long = "config.check")]
    config_check: bool,
    /// Address to listen on, repeatable: ":9000" (the default) means every interface, IPv4
    /// and IPv6; "127.0.0.1:9000" or "[::1]:9000" one address. With --demo the default is
    /// 127.0.0.1:9000.
    #[arg(long = "web.listen-address", value_name = "ADDRESS")]
    listen_address: Vec<String>,
    /// Seconds to subtract from Prometheus' scrape timeout to leave room for the answer.
    #[arg(long = "timeout-offset", default_value_t = 0.5, value_parser = parse_offset)]
    timeout_offset: f64,
    /// Path to a web config file (exporter-toolkit format) enabling TLS and basic auth.
    #[arg(long = "web.config.file")]
    web_config_file: Option<PathBuf>,
    /// Recent probes kept for the landing page and /logs; failures are kept apart, as many.
    #[arg(long = "history.limit", default_value_t = 100)]
    history_limit: usize,
    /// Probes running at once; more wait, within their deadlines. 0 (the default): no bound of
    /// its own; every probe request holds an HTTP connection, so --web.max-connections bounds
    /// them, and a probe waiting on a silent PACS holds no slot a live probe needs.
    #[arg(long = "probe.max-concurrent", default_value_t = 0)]
    max_concurrent: usize,
    /// Only log messages with the given severity or above.
    #[arg(long = "log.level", default_value = "info", value_parser = ["debug", "info", "warn", "error"])]
    log_level: String,
    /// Start two built-in demo PACS on loopback and serve modules that probe them; the
    /// exporter listens on 127.0.0.1:9000 unless --web.listen-address says otherwise.
    #[arg(long)]
    demo: bool,
    /// Output format of log messages.
    #[arg(long = "log.format", default_value = "logfmt", value_parser = ["logfmt", "json"])]
    log_format: String,
    /// Time a client has to send a request's head (and finish the TLS handshake), e.g. 10s.
    #[arg(long = "web.header-read-timeout", default_value = "10s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// Time a kept-alive connection may wait for its next request, e.g. 60s.
    #[arg(long = "web.idle-timeout", default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// HTTP connections open at once. When they run short, idle ones are closed first, then
    /// half-sent ones of the client holding most; with none to close a connection is answered
    /// 503 at once. Lowered to half the open-files limit when that is smaller.
    #[arg(long = "web.max-connections", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// HTTP connections one client address may hold (0: three quarters of
    /// --web.max-connections); beyond it, its own idle connection is closed or it gets a 503.
    #[arg(long = "web.max-connections-per-client", default_value_t = 0)]
    max_connections_per_client: u32,
}

/// Why a duration flag (`--web.idle-timeout`, ...) was refused.
#[derive(Debug, thiserror::Error)]
enum DurationFlagError {
    #[error(transparent)]
    Invalid(#[from] InvalidDuration),
    #[error("must be greater than 0")]
    Zero,
}

fn parse_duration(text: &str) -> Result<Duration, DurationFlagError> {
    match PromDuration::parse(text)? {
        PromDuration(d) if d.is_zero() => Err(DurationFlagError::Zero),
        PromDuration(d) => Ok(d),
    }
}

/// `--timeout-offset` that is not a non-negative, finite number of seconds.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a non-negative number of seconds")]
struct InvalidOffset(String);

fn parse_offset(text: &str) -> Result<f64, InvalidOffset> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(InvalidOffset(text.to_string())),
    }
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    if flags.version {
        print!("{VERSION}");
        return ExitCode::SUCCESS;
    }
    init_logging(&flags.log_level, &flags.log_format);

    if flags.demo {
        return run(serve_demo(flags));
    }
    let config = match Config::load(&flags.config_file) {
        Ok(config) => config,
        Err(e) if flags.config_check => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            tracing::error!(error = %e, "invalid config");
            return ExitCode::FAILURE;
        }
    };
    for warning in config.warnings() {
        if flags.config_check {
            eprintln!("warning: {warning}");
        } else {
            tracing::warn!("{warning}");
        }
    }
    if flags.config_check {
        let count = config.modules.len();
        println!(
            "{}: OK ({count} module{})",
            flags.config_file.display(),
            if count == 1 { "" } else { "s" }
        );
        return ExitCode::SUCCESS;
    }

    let path = flags.config_file.clone();
    run(async move {
        let listeners = listen(&flags, ":9000")?;
        serve(flags, config, path, listeners, None).await
    })
}

/// Runs the server on the multi-thread runtime (dicom-ul's writers need it).
fn run(server: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once: this crate's errors already name
/// their cause in their own text, which `{:#}` would repeat.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

/// Opens every `--web.listen-address` (`default` when none is given); errors name the address.
fn listen(flags: &Flags, default: &str) -> anyhow::Result<Vec<tokio::net::TcpListener>> {
    let defaults = [default.to_string()];
    let addresses = match flags.listen_address.as_slice() {
        [] => &defaults[..],
        given => given,
    };
    let mut listeners = Vec::new();
    for address in addresses {
        listeners.extend(pacs_exporter::web::listen(address)?);
    }
    Ok(listeners)
}

/// `--demo`: the HTTP port and the demo PACS' ports are taken first; only then is anything
/// printed. The demo's modules are written to a file in the temporary directory, which SIGHUP
/// and `POST /-/reload` read again like any config file; it is removed at exit.
async fn serve_demo(flags: Flags) -> anyhow::Result<()> {
    let listeners = match listen(&flags, "127.0.0.1:9000") {
        Ok(listeners) => listeners,
        Err(e) => {
            let hint = match e.downcast_ref::<std::io::Error>().map(|e| e.kind()) {
                Some(std::io::ErrorKind::AddrInUse) => {
                    "; choose another port, e.g. --web.listen-address=127.0.0.1:9001"
                }
                _ => "",
            };
            anyhow::bail!("pacs_exporter --demo: {e}{hint}");
        }
    };
    let demo = pacs_exporter::demo::start()
        .await
        .context("cannot start the demo PACS")?;
    let path = write_demo_config(&demo.yaml)?;
    let base = listeners[0]
        .local_addr()
        .map(|address| {
            let host = match address.ip() {
                ip if ip.is_unspecified() => "localhost".to_string(),
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                ip => ip.to_string(),
            };
            format!("http://{host}:{}", address.port())
        })
        .context("no listening address")?;
    let url = |module: &str, target: &str| {
        format!(
            "curl '{base}/probe?module={module}&target={}'",
            target.replace('@', "%40")
        )
    };
    let notes: String = demo
        .notes
        .iter()
        .map(|note| format!("  note:        {note}\n"))
        .collect();
    println!(
        "pacs_exporter demo: two demo PACS on loopback.\n  source:      {src}\n  destination: {dst} (3 studies missing, 1 incomplete)\n{notes}  modules:     {file} (edit, then: curl -X POST {base}/-/reload)\n\nOpen {base}/ or try:\n  {echo}\n  {find}\n  {check}\n  {debug}&debug=true'\n  curl '{base}/metrics'\n",
        src = demo.source,
        dst = demo.destination,
        file = path.display(),
        echo = url("echo", &demo.source),
        find = url("find", &demo.source),
        check = url("send_check", &demo.source),
        debug = url("send_check", &demo.source).trim_end_matches('\''),
    );
    let served = serve(
        flags,
        demo.config,
        path.clone(),
        listeners,
        Some(demo.source),
    )
    .await;
    let _ = std::fs::remove_file(&path);
    served
}

/// Writes the demo's modules to a new file of this process in the temporary directory.
fn write_demo_config(yaml: &str) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    let path = std::env::temp_dir().join(format!("pacs_exporter-demo-{}.yml", std::process::id()));
    let create = |path: &Path| {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
    };
    // A file left by an earlier process with the same id is replaced, never written through.
    let mut file = match create(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::remove_file(&path)
            .and_then(|()| create(&path))
            .with_context(|| format!("cannot write {}", path.display()))?,
        other => other.with_context(|| format!("cannot write {}", path.display()))?,
    };
    file.write_all(yaml.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Serves `config`, read from `path` (which reloads read again), on `listeners`.
async fn serve(
    flags: Flags,
    config: Config,
    path: PathBuf,
    listeners: Vec<tokio::net::TcpListener>,
    example_target: Option<String>,
) -> anyhow::Result<()> {
    let state = Arc::new(AppState::new(
        config,
        ServerOptions {
            config_path: Some(path),
            timeout_offset: Duration::from_secs_f64(flags.timeout_offset),
            history_limit: flags.history_limit,
            max_concurrent: flags.max_concurrent,
            example_target,
        },
    ));
    let web = match &flags.web_config_file {
        Some(path) => WebConfig::load(path)?,
        None => WebConfig::default(),
    };
    for listener in &listeners {
        tracing::info!(
            address = %listener.local_addr()?,
            version = env!("CARGO_PKG_VERSION"),
            tls = web.tls().is_some(),
            basic_auth = web.basic_auth().is_some(),
            "listening"
        );
    }

    let options = HttpOptions {
        header_read_timeout: flags.header_read_timeout,
        idle_timeout: flags.idle_timeout,
        max_connections: connection_bound(flags.max_connections as usize),
        max_connections_per_client: flags.max_connections_per_client as usize,
        metrics: state.connection_metrics(),
    };
    tokio::spawn(reload_on_sighup(state.clone()));
    let shutdown = shutdown_signal(state.clone());
    let router = pacs_exporter::web::protect(router(state), &web);
    pacs_exporter::web::serve_all(listeners, router, web.tls(), options, shutdown)
        .await
        .context("server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// `--web.max-connections`, lowered to half the open-files limit so that probes (and the
/// exporter itself) keep descriptors when every connection is taken. The soft limit is first
/// raised to the hard one (as Go programs do): a waiting probe costs a descriptor, not a core.
fn connection_bound(wanted: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-files limit");
            return wanted;
        }
    };
    let half = usize::try_from(limit / 2).unwrap_or(usize::MAX).max(1);
    if half < wanted {
        tracing::warn!(
            open_files_limit = limit,
            "--web.max-connections lowered from {wanted} to {half}"
        );
        return half;
    }
    wanted
}

async fn reload_on_sighup(state: Arc<AppState>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP; reload with POST /-/reload");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        // Errors are logged and counted inside reload.
        let _ = state.reload().await;
    }
}

/// Resolves on SIGTERM or Ctrl-C with how long requests in flight may still take: the longest
/// module timeout and a little, so that the process ends within that timeout plus a second.
async fn shutdown_signal(state: Arc<AppState>) -> Duration {
    use tokio::signal::unix::{signal, SignalKind};
    let terminate = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    let longest = state
        .config()
        .modules
        .values()
        .map(|m| m.timeout.0)
        .max()
        .unwrap_or_default();
    tracing::info!(
        drain = longest.as_secs_f64(),
        "shutting down: no new connections; requests in flight finish by their deadlines"
    );
    longest + Duration::from_millis(500)
}

/// Logs go to stderr as logfmt or JSON, one line per event, with the keys Prometheus' own logs
/// use: `time` (RFC 3339, UTC, milliseconds), `level`, `msg`, then the event's fields. The code
/// location (tracing's own `target`) is left out, so that `target=` in a line is always the
/// probe's target.
fn init_logging(level: &str, format: &str) {
    use tracing_subscriber::prelude::*;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::new(format!("warn,pacs_exporter={level}"));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(LogFormat {
                    json: format == "json",
                })
                .with_writer(std::io::stderr),
        )
        .init();
}

/// One log line: `time=… level=… msg=… key=value…` (logfmt) or the same keys as a JSON object.
struct LogFormat {
    json: bool,
}

impl<S, N> tracing_subscriber::fmt::FormatEvent<S, N> for LogFormat
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut fields = LogFields::default();
        event.record(&mut fields);
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        let mut pairs = vec![
            ("time", time, false),
            ("level", level, false),
            ("msg", fields.msg, false),
        ];
        pairs.extend(fields.pairs);
        let line: Vec<String> = pairs
            .iter()
            .map(|(key, value, number)| match self.json {
                true if *number => format!("{}:{value}", json_string(key)),
                true => format!("{}:{}", json_string(key), json_string(value)),
                false => format!("{key}={}", logfmt_value(value)),
            })
            .collect();
        match self.json {
            true => writeln!(writer, "{{{}}}", line.join(",")),
            false => writeln!(writer, "{}", line.join(" ")),
        }
    }
}

/// An event's message and its other fields, as text; numbers and booleans marked (JSON
/// writes them bare).
#[derive(Default)]
struct LogFields {
    msg: String,
    pairs: Vec<(&'static str, String, bool)>,
}

impl LogFields {
    fn push(&mut self, field: &tracing::field::Field, value: String, bare: bool) {
        match field.name() {
            "message" => self.msg = value,
            name => self.pairs.push((name, value, bare)),
        }
    }
}

impl tracing::field::Visit for LogFields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.push(field, value.to_string(), false);
    }

    fn record_bool(&mut self, field: &tracing::field::Field, value: bool) {
        self.push(field, value.to_string(), true);
    }

    fn record_i64(&mut self, field: &tracing::field::Field, value: i64) {
        self.push(field, value.to_string(), true);
    }

    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        self.push(field, value.to_string(), true);
    }

    fn record_f64(&mut self, field: &tracing::field::Field, value: f64) {
        // JSON has no NaN or infinities.
        self.push(field, value.to_string(), value.is_finite());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.push(field, format!("{value:?}"), false);
    }
}

/// A logfmt value: bare when it can be, else quoted, with quotes, backslashes and control
/// characters escaped.
fn logfmt_value(value: &str) -> String {
    let bare = !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '=' && c != '\\');
    if bare {
        return value.to_string();
    }
    quoted(value, char::is_control)
}

/// A JSON string literal. JSON requires only U+0000 to U+001F escaped; DEL is escaped too.
fn json_string(value: &str) -> String {
    quoted(value, |c| (c as u32) < 0x20 || c == '\u{7f}')
}

/// `value` in double quotes, with quotes and backslashes escaped, newline, carriage return and
/// tab as `\n`, `\r`, `\t`, and any other character `as_code_point` picks as `\uXXXX`.
fn quoted(value: &str, as_code_point: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if as_code_point(c) => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::{json_string, logfmt_value};

    #[test]
    fn log_values_are_escaped_per_format() {
        let value = "a\u{1}\u{7f}\u{85}\"\\\n\r\t é";
        let cases = [
            (
                logfmt_value(value),
                r#""a\u0001\u007f\u0085\"\\\n\r\t é""#.to_string(),
            ),
            // JSON leaves C1 controls such as U+0085 as they are.
            (
                json_string(value),
                "\"a\\u0001\\u007f\u{85}\\\"\\\\\\n\\r\\t é\"".to_string(),
            ),
            (logfmt_value("bare"), "bare".to_string()),
            (logfmt_value(""), r#""""#.to_string()),
            (json_string(""), r#""""#.to_string()),
        ];
        for (got, expected) in cases {
            assert_eq!(got, expected);
        }
    }
}
