//! Runs probes for the HTTP layer: identical concurrent probes share one execution, a global
//! bound queues the rest within their deadlines, and every finished probe goes to the history.
//!
//! Identical means the same module of the same loaded config against the same target; a
//! send_check module's destination is part of its config, so it is covered. Two Prometheus
//! replicas scraping the same PACS therefore cost it one association, not two.
//!
//! A shared probe runs in a task of its own: it finishes (and is recorded) even if the client
//! that started it goes away, so the others still get its result. A request that joins a
//! running probe waits at most until its own deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use prometheus::{Encoder, IntGauge, Registry, TextEncoder};
use tokio::sync::{watch, Semaphore};
use tokio::time::{timeout_at, Instant};

use crate::config::Config;
use crate::history::{History, ProbeRecord};
use crate::prober::{self, ProbeLog};
use crate::target::Target;

/// How long after its deadline a request that joined a running probe still waits for it.
const JOIN_GRACE: Duration = Duration::from_millis(50);

/// A probe to run.
pub struct ProbeJob {
    /// The config the probe runs with, whatever is reloaded meanwhile.
    pub config: Arc<Config>,
    /// Which load of the config that is (it counts reloads).
    pub generation: u64,
    pub module: String,
    pub target: Target,
    /// The target as the request wrote it, for the history.
    pub target_text: String,
    pub deadline: Instant,
    pub timeout: Duration,
}

/// What a probe produced, shared by every request that asked for it.
#[derive(Debug)]
pub struct ProbeOutcome {
    /// Its id in the history (`/logs?id=N`).
    pub id: u64,
    pub success: bool,
    /// The metrics in the text exposition format.
    pub exposition: String,
    /// The probe's log, rendered.
    pub log: String,
}

#[derive(Clone, Debug)]
pub enum Outcome {
    Ran(Arc<ProbeOutcome>),
    /// The probe could not run before the request's deadline; the text says why.
    Busy(String),
    /// The probe failed in a way no probe should (a bug); the text says how.
    Crashed(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    /// The config's generation: a reload starts new probes rather than joining old ones.
    generation: u64,
    module: String,
    target: Target,
}

pub struct Scheduler {
    running: Mutex<HashMap<Key, watch::Receiver<Option<Outcome>>>>,
    permits: Option<(Arc<Semaphore>, usize)>,
    history: Mutex<History>,
    in_flight: IntGauge,
}

impl Scheduler {
    /// `max_concurrent` 0 means no bound.
    pub fn new(max_concurrent: usize, history_limit: usize, in_flight: IntGauge) -> Scheduler {
        Scheduler {
            running: Mutex::new(HashMap::new()),
            permits: (max_concurrent > 0)
                .then(|| (Arc::new(Semaphore::new(max_concurrent)), max_concurrent)),
            history: Mutex::new(History::new(history_limit)),
            in_flight,
        }
    }

    pub fn history(&self) -> MutexGuard<'_, History> {
        self.history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn running(&self) -> MutexGuard<'_, HashMap<Key, watch::Receiver<Option<Outcome>>>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs the probe, or joins an identical one already running.
    pub async fn run(self: &Arc<Self>, job: ProbeJob) -> Outcome {
        let key = Key {
            generation: job.generation,
            module: job.module.clone(),
            target: job.target.clone(),
        };
        // A request waits until its own deadline, and the moment a probe cut off there takes
        // to report; one that joined a probe started with a later deadline may stop waiting
        // before that probe ends.
        let wait_until = job.deadline + JOIN_GRACE;
        let mut receiver = {
            let mut running = self.running();
            match running.get(&key) {
                Some(receiver) => {
                    tracing::debug!(module = %key.module, target = %key.target, "joining a running probe");
                    receiver.clone()
                }
                None => {
                    let (sender, receiver) = watch::channel(None);
                    running.insert(key.clone(), receiver.clone());
                    let this = self.clone();
                    // The probe runs in a task of its own, so that a panic in it (a bug) is
                    // reported as such and the entry is removed whatever happens.
                    let probe = tokio::spawn(this.clone().execute(job));
                    tokio::spawn(async move {
                        let outcome = probe.await.unwrap_or_else(|e| {
                            tracing::error!(module = %key.module, target = %key.target, error = %e, "probe task failed");
                            Outcome::Crashed(format!("the probe failed unexpectedly: {e}"))
                        });
                        this.running().remove(&key);
                        let _ = sender.send(Some(outcome));
                    });
                    receiver
                }
            }
        };
        let waited = timeout_at(wait_until, receiver.wait_for(Option::is_some)).await;
        let outcome = match waited {
            Ok(Ok(outcome)) => outcome.clone(),
            Ok(Err(_)) => None,
            Err(_) => {
                return Outcome::Busy(
                    "the probe did not report before this request's deadline (an identical probe started earlier with a later deadline)".into(),
                )
            }
        };
        outcome.unwrap_or_else(|| Outcome::Busy("the probe ended without a result".into()))
    }

    async fn execute(self: Arc<Self>, job: ProbeJob) -> Outcome {
        let _permit = match &self.permits {
            None => None,
            Some((permits, limit)) => match timeout_at(job.deadline, permits.clone().acquire_owned()).await {
                Ok(Ok(permit)) => Some(permit),
                _ => {
                    return Outcome::Busy(format!(
                        "{limit} probes were running (--probe.max-concurrent); this one waited until its deadline"
                    ))
                }
            },
        };
        let Some(module) = job.config.modules.get(&job.module) else {
            return Outcome::Busy(format!("module {:?} is not in the config", job.module));
        };
        let log = ProbeLog::new(&job.module, &job.target_text);
        let started_at = SystemTime::now();
        let result = {
            let _in_flight = InFlight::start(&self.in_flight);
            prober::run(
                &job.target,
                module,
                &job.config.allow,
                job.deadline,
                job.timeout,
                &log,
            )
            .await
        };

        let log = log.render();
        let id = self.history().add(ProbeRecord {
            id: 0,
            started_at,
            module: job.module,
            target: job.target_text,
            duration: result.duration,
            failure: result.failure,
            log: log.clone(),
        });
        Outcome::Ran(Arc::new(ProbeOutcome {
            id,
            success: result.success,
            exposition: encode(&result.registry),
            log,
        }))
    }
}

/// Keeps `pacs_exporter_probes_in_flight` right whatever way a probe ends.
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

/// A registry in the text exposition format.
pub fn encode(registry: &Registry) -> String {
    let mut buffer = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    String::from_utf8_lossy(&buffer).into_owned()
}
