//! What every request shares: the config in force (swapped whole on reload), the server's
//! own settings, the exporter's metrics and the scheduler that runs probes.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::metrics::ExporterMetrics;
use crate::config::{Config, ConfigError};
use crate::scheduler::Scheduler;

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
    /// source; `None`: none (the landing page's probe form starts empty).
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
    pub(crate) metrics: ExporterMetrics,
    pub(crate) scheduler: Arc<Scheduler>,
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

    /// The connection series, for the server's [`super::HttpOptions`].
    pub fn connection_metrics(&self) -> super::ConnectionMetrics {
        self.metrics.connections.clone()
    }

    /// The config in force; a probe keeps the one it started with through a reload.
    pub fn config(&self) -> Arc<Config> {
        self.current_config().1
    }

    /// The config in force and its generation.
    pub(super) fn current_config(&self) -> (u64, Arc<Config>) {
        match self.config.read() {
            Ok(config) => config.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub(super) fn options(&self) -> &ServerOptions {
        &self.options
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
                self.metrics.reload_failed();
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
