//! Runs probes for the HTTP layer: identical concurrent probes share one execution, a global
//! bound queues the rest within their deadlines, and every finished probe goes to the history.
//!
//! Identical means the same module of the same loaded config against the same target; a
//! send_check module's destination is part of its config, so it is covered. Two Prometheus
//! replicas scraping the same PACS therefore cost it one association, not two.
//!
//! The rules that keep the answers honest:
//! - A request joins a running identical probe only if that probe's deadline is not earlier
//!   than its own (by more than 5% of its budget, so that requests a moment apart still share);
//!   otherwise it starts its own (both run), so sharing never cuts a budget short.
//! - A request that had to wait for a slot (`--probe.max-concurrent`) runs with what is left of
//!   its budget, and `probe_timeout_seconds` says so. If less than the floor
//!   ([`floor`]: the larger of 250 ms and a tenth of its budget) would be left, it stops waiting
//!   and answers 503 with the reason: the exporter was the bottleneck, not the PACS.
//! - Every request is answered by its deadline plus [`JOIN_GRACE`]. A probe that has not
//!   reported by then (one with a later deadline that this request joined, or, which should
//!   not happen, one that overran its own deadline) is answered as what it is for this
//!   request: a probe that timed out at the stage it is in, with the series gathered so far.
//!
//! A probe is run by the request that started it, and moves to a task of its own when that
//! request stops waiting: it finishes (and is recorded) even if the client that started it
//! goes away, so the others still get its result.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{timeout_at, Instant};

use crate::config::Config;
use crate::history::{History, ProbeRecord};
use crate::prober::{self, ProbeLog, Progress};
use crate::target::Target;

/// How long after its deadline a request still waits for a probe to report.
pub const JOIN_GRACE: Duration = Duration::from_millis(50);
/// A request joins a running probe whose deadline is at most this share of its budget
/// earlier than its own (1/20: 5%), so that requests arriving a moment apart still share.
const JOIN_TOLERANCE: u32 = 20;
/// The least budget a probe that waited for a slot is started with.
const MIN_FLOOR: Duration = Duration::from_millis(250);

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
    /// The destination the request named (`destination: from_request` modules only), and
    /// as it wrote it.
    pub destination: Option<(Target, String)>,
    pub deadline: Instant,
    /// The request's budget; the probe's is less when it waited for a slot.
    pub timeout: Duration,
}

/// What a probe produced, shared by every request that asked for it.
#[derive(Debug)]
pub struct ProbeOutcome {
    pub success: bool,
    /// The metrics in the text exposition format.
    pub exposition: String,
    /// The probe's log, rendered.
    pub log: String,
}

#[derive(Clone, Debug)]
pub enum Outcome {
    Ran(Arc<ProbeOutcome>),
    /// The exporter could not run the probe in time (503); the text says why.
    Rejected {
        cause: Cause,
        reason: String,
    },
    /// The probe failed in a way no probe should (a bug); the text says how.
    Crashed(String),
}

/// Why a request was answered 503: the `cause` label of `pacs_exporter_probe_rejections_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// It waited for a slot until less than its floor was left.
    QueueWait,
}

impl Cause {
    pub const ALL: [Cause; 1] = [Cause::QueueWait];

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::QueueWait => "queue_wait",
        }
    }
}

/// The scheduler's series on `/metrics`.
#[derive(Clone)]
pub struct SchedulerMetrics {
    pub in_flight: IntGauge,
    /// Time from a probe's arrival to its start (or its rejection).
    pub queue_wait: Histogram,
    /// Requests answered 503, by cause.
    pub rejections: IntCounterVec,
    /// Probes that had not ended when their own deadline and the grace had passed.
    pub overruns: IntCounter,
}

/// The smallest budget worth starting a probe with after waiting for a slot: 250 ms, or a
/// tenth of the request's budget if that is more.
pub fn floor(timeout: Duration) -> Duration {
    MIN_FLOOR.max(timeout / 10)
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    /// The config's generation: a reload starts new probes rather than joining old ones.
    generation: u64,
    module: String,
    target: Target,
    destination: Option<Target>,
}

/// One execution, as those who wait for it see it.
struct Shared {
    progress: Progress,
    log: ProbeLog,
    /// When it got its slot and started; unset while it waits.
    started: OnceLock<Instant>,
    deadline: Instant,
}

struct Running {
    id: u64,
    shared: Arc<Shared>,
    receiver: watch::Receiver<Option<Outcome>>,
}

pub struct Scheduler {
    running: Mutex<HashMap<Key, Vec<Running>>>,
    next_id: AtomicU64,
    permits: Option<(Arc<Semaphore>, usize)>,
    history: Mutex<History>,
    metrics: SchedulerMetrics,
    /// What transfer checks learnt of archives, kept across probes and reloads.
    archives: prober::send_check::Archives,
}

impl Scheduler {
    /// `max_concurrent` 0 means no bound.
    pub fn new(
        max_concurrent: usize,
        history_limit: usize,
        metrics: SchedulerMetrics,
    ) -> Scheduler {
        Scheduler {
            running: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            permits: (max_concurrent > 0)
                .then(|| (Arc::new(Semaphore::new(max_concurrent)), max_concurrent)),
            history: Mutex::new(History::new(history_limit)),
            archives: prober::send_check::Archives::default(),
            metrics,
        }
    }

    pub fn history(&self) -> MutexGuard<'_, History> {
        self.history
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn running(&self) -> MutexGuard<'_, HashMap<Key, Vec<Running>>> {
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs the probe, or joins an identical one already running whose deadline is not
    /// earlier than this request's. Answers by the request's deadline plus [`JOIN_GRACE`].
    pub async fn run(self: &Arc<Self>, job: ProbeJob) -> Outcome {
        let arrived = Instant::now();
        let (deadline, timeout) = (job.deadline, job.timeout);
        let (mut receiver, shared, mut execution) = self.join_or_start(job);
        let waiting = async {
            if let Some(execution) = execution.as_mut() {
                execution.await;
            }
            receiver
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|outcome| outcome.clone())
        };
        let waited = timeout_at(deadline + JOIN_GRACE, waiting)
            .await
            .ok()
            .flatten();
        // Unfinished, the execution goes on in a task of its own.
        drop(execution);
        // The result may have come at the last moment.
        if let Some(outcome) = waited.or_else(|| receiver.borrow().clone()) {
            return outcome;
        }
        if receiver.has_changed().is_err() {
            // The sender is gone without a result; the reporting task always sends one.
            return Outcome::Crashed("the probe ended without a result".into());
        }
        self.unfinished(&shared, timeout, arrived)
    }

    /// The receiver of the execution this request waits for, joined or started; the
    /// execution itself when this request started it.
    fn join_or_start(
        self: &Arc<Self>,
        job: ProbeJob,
    ) -> (
        watch::Receiver<Option<Outcome>>,
        Arc<Shared>,
        Option<Execution>,
    ) {
        let key = Key {
            generation: job.generation,
            module: job.module.clone(),
            target: job.target.clone(),
            destination: job.destination.as_ref().map(|(d, _)| d.clone()),
        };
        let mut running = self.running();
        let executions = running.entry(key.clone()).or_default();
        // Of the executions that give this request its own time (give or take
        // JOIN_TOLERANCE), the one that ends first.
        let earliest = job.deadline - job.timeout / JOIN_TOLERANCE;
        let joinable = executions
            .iter()
            .filter(|r| r.shared.deadline >= earliest)
            .min_by_key(|r| r.shared.deadline);
        if let Some(execution) = joinable {
            tracing::debug!(module = %key.module, target = %key.target, "joining a running probe");
            return (execution.receiver.clone(), execution.shared.clone(), None);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shared = Arc::new(Shared {
            progress: Progress::new(),
            log: ProbeLog::new(&job.module, &job.target_text)
                .with_destination(job.destination.as_ref().map(|(_, text)| text.as_str())),
            started: OnceLock::new(),
            deadline: job.deadline,
        });
        let (sender, receiver) = watch::channel(None);
        executions.push(Running {
            id,
            shared: shared.clone(),
            receiver: receiver.clone(),
        });
        drop(running);
        // The request that started the probe runs it (see `Execution`); its reporter removes
        // the entry and answers the waiters however it ends, a panic (a bug) included.
        let reporter = Reporter {
            scheduler: self.clone(),
            key,
            id,
            sender: Some(sender),
        };
        let run = self.clone().execute(job, shared.clone());
        let execution = Execution(Some(Box::pin(async move {
            let outcome = run.await;
            reporter.report(outcome);
        })));
        (receiver, shared, Some(execution))
    }

    fn remove(&self, key: &Key, id: u64) {
        let mut running = self.running();
        if let Some(executions) = running.get_mut(key) {
            executions.retain(|r| r.id != id);
            if executions.is_empty() {
                running.remove(key);
            }
        }
    }

    /// The answer for a request whose deadline passed before the probe reported.
    fn unfinished(&self, shared: &Shared, timeout: Duration, arrived: Instant) -> Outcome {
        let now = Instant::now();
        let Some(started) = shared.started.get() else {
            // Still waiting for a slot: only a request that joined a queued probe gets here.
            return self.reject(format!(
                "waited {:.3}s for a probe slot (--probe.max-concurrent) and its deadline passed",
                now.duration_since(arrived).as_secs_f64()
            ));
        };
        if now > shared.deadline + JOIN_GRACE {
            self.metrics.overruns.inc();
            shared.log.error(format!(
                "the probe did not end by its deadline ({:.3}s after it started); answered as a timeout at stage {}",
                started.elapsed().as_secs_f64(),
                shared.progress.stage().as_str()
            ));
        }
        let exposition = shared
            .progress
            .timed_out(timeout, now.duration_since(arrived));
        let log = format!(
            "{}\n(this request's deadline passed while the probe was at stage {}; answered as a timeout there)",
            shared.log.render().trim_end(),
            shared.progress.stage().as_str()
        );
        Outcome::Ran(Arc::new(ProbeOutcome {
            success: false,
            exposition,
            log,
        }))
    }

    fn reject(&self, reason: String) -> Outcome {
        Outcome::Rejected {
            cause: Cause::QueueWait,
            reason,
        }
    }

    /// Waits for a slot if there is a bound; the budget the probe gets, or the rejection.
    async fn admit(
        &self,
        job: &ProbeJob,
        log: &ProbeLog,
    ) -> Result<(Option<OwnedSemaphorePermit>, Duration), Outcome> {
        let queued = Instant::now();
        let Some((permits, limit)) = &self.permits else {
            self.metrics.queue_wait.observe(0.0);
            return Ok((None, job.timeout));
        };
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            self.metrics.queue_wait.observe(0.0);
            return Ok((Some(permit), job.timeout));
        }
        // Waiting past the point where less than the floor is left is pointless.
        let floor = floor(job.timeout);
        let give_up = job.deadline.checked_sub(floor).unwrap_or(queued);
        let acquired = timeout_at(give_up, permits.clone().acquire_owned()).await;
        let now = Instant::now();
        let waited = now.duration_since(queued);
        self.metrics.queue_wait.observe(waited.as_secs_f64());
        let left = job.deadline.saturating_duration_since(now);
        match acquired {
            Ok(Ok(permit)) if left >= floor => {
                log.info(format!(
                    "waited {:.3}s for a probe slot (--probe.max-concurrent); {:.3}s of the {:.3}s budget left",
                    waited.as_secs_f64(),
                    left.as_secs_f64(),
                    job.timeout.as_secs_f64()
                ));
                Ok((Some(permit), left))
            }
            _ => Err(self.reject(format!(
                "waited {:.3}s for a probe slot ({limit} probes were running, --probe.max-concurrent); \
                 less than the floor of {:.3}s was left of its {:.3}s budget",
                waited.as_secs_f64(),
                floor.as_secs_f64(),
                job.timeout.as_secs_f64()
            ))),
        }
    }

    async fn execute(self: Arc<Self>, job: ProbeJob, shared: Arc<Shared>) -> Outcome {
        let (_permit, budget) = match self.admit(&job, &shared.log).await {
            Ok(admitted) => admitted,
            Err(rejection) => return rejection,
        };
        let Some(module) = job.config.modules.get(&job.module) else {
            return Outcome::Crashed(format!("module {:?} is not in the config", job.module));
        };
        let _ = shared.started.set(Instant::now());
        let started_at = SystemTime::now();
        let result = {
            let _in_flight = InFlight::start(&self.metrics.in_flight);
            prober::run(
                prober::Targets {
                    target: &job.target,
                    destination: job.destination.as_ref().map(|(d, _)| d),
                },
                module,
                prober::Known {
                    allow: &job.config.allow,
                    archives: &self.archives,
                },
                job.deadline,
                budget,
                &shared.log,
                &shared.progress,
            )
            .await
        };

        let log = shared.log.render();
        let exposition = result.registry.render();
        self.history().add(ProbeRecord {
            id: 0,
            started_at,
            module: job.module,
            target: job.target_text,
            destination: job.destination.map(|(_, text)| text).or_else(|| {
                module
                    .send_check()
                    .map(|check| check.destination.to_string())
            }),
            duration: result.duration,
            failure: result.failure,
            log: log.clone(),
            summary: result.summary,
        });
        Outcome::Ran(Arc::new(ProbeOutcome {
            success: result.success,
            exposition,
            log,
        }))
    }
}

/// A probe's execution, run by the request that started it while that request waits (no
/// task to spawn and wake), and handed to a task of its own if the request stops waiting
/// first (its client went away, or its deadline passed): the probe still finishes and is
/// recorded, and the requests that joined it get its result.
struct Execution(Option<Pin<Box<dyn Future<Output = ()> + Send>>>);

impl Future for Execution {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // Taken out while polled: one that panics is dropped then, never handed on.
        if let Some(mut execution) = self.0.take() {
            if execution.as_mut().poll(cx).is_pending() {
                self.0 = Some(execution);
                return Poll::Pending;
            }
        }
        Poll::Ready(())
    }
}

impl Drop for Execution {
    fn drop(&mut self) {
        if let Some(execution) = self.0.take() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(execution);
            }
        }
    }
}

/// Reports a probe's outcome to those waiting for it and forgets the execution; dropped
/// without reporting (the task panicked), it reports the crash.
struct Reporter {
    scheduler: Arc<Scheduler>,
    key: Key,
    id: u64,
    sender: Option<watch::Sender<Option<Outcome>>>,
}

impl Reporter {
    fn report(mut self, outcome: Outcome) {
        self.scheduler.remove(&self.key, self.id);
        if let Some(sender) = self.sender.take() {
            let _ = sender.send(Some(outcome));
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        let Some(sender) = self.sender.take() else {
            return;
        };
        self.scheduler.remove(&self.key, self.id);
        tracing::error!(module = %self.key.module, target = %self.key.target, "probe task panicked");
        let _ = sender.send(Some(Outcome::Crashed(
            "the probe failed unexpectedly (its task panicked; see the exporter's log)".into(),
        )));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A probe task that panics still answers its waiters (with the crash) and is forgotten,
    /// so the next identical request starts a new probe.
    #[tokio::test]
    async fn a_panicking_probe_task_still_answers_and_is_forgotten() {
        let metrics = SchedulerMetrics {
            in_flight: IntGauge::new("in_flight", "h").unwrap(),
            queue_wait: Histogram::with_opts(prometheus::HistogramOpts::new("wait", "h")).unwrap(),
            rejections: IntCounterVec::new(prometheus::Opts::new("rejections", "h"), &["cause"])
                .unwrap(),
            overruns: IntCounter::new("overruns", "h").unwrap(),
        };
        let scheduler = Arc::new(Scheduler::new(0, 10, metrics));
        let key = Key {
            generation: 0,
            module: "echo".into(),
            target: Target::parse("A@127.0.0.1:104").unwrap(),
            destination: None,
        };
        let (sender, mut receiver) = watch::channel(None);
        scheduler
            .running()
            .entry(key.clone())
            .or_default()
            .push(Running {
                id: 7,
                shared: Arc::new(Shared {
                    progress: Progress::new(),
                    log: ProbeLog::new("echo", "A@127.0.0.1:104"),
                    started: OnceLock::new(),
                    deadline: Instant::now(),
                }),
                receiver: receiver.clone(),
            });
        let reporter = Reporter {
            scheduler: scheduler.clone(),
            key,
            id: 7,
            sender: Some(sender),
        };
        let task = tokio::spawn(async move {
            let _reporter = reporter;
            panic!("a bug");
        });
        assert!(task.await.is_err());
        let outcome = receiver.wait_for(Option::is_some).await.unwrap().clone();
        assert!(matches!(outcome, Some(Outcome::Crashed(reason)) if reason.contains("panicked")));
        assert!(scheduler.running().is_empty());
    }

    #[test]
    fn the_floor_is_250ms_or_a_tenth_of_the_budget() {
        let ms = Duration::from_millis;
        for (timeout, want) in [
            (ms(100), ms(250)),
            (ms(1000), ms(250)),
            (ms(2500), ms(250)),
            (ms(5000), ms(500)),
            (ms(30_000), ms(3000)),
        ] {
            assert_eq!(floor(timeout), want, "{timeout:?}");
        }
    }
}
