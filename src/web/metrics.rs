//! The exporter's own metrics, served on `/metrics`: build, config reloads, probe requests,
//! the scheduler's queue and the connections refused or evicted. They live in a registry of their own and never mix with a probe's.
//! Names and help texts are in the catalogue, [`crate::metrics`].

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
    TextEncoder,
};

use super::connections::ConnectionMetrics;
use crate::metrics::{self, Metric};
use crate::scheduler::{Cause, SchedulerMetrics};

/// The buckets of `pacs_exporter_probe_queue_wait_seconds`.
const QUEUE_WAIT_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The exporter's own metrics, served on `/metrics`.
pub(crate) struct ExporterMetrics {
    pub registry: Registry,
    last_reload_successful: IntGauge,
    last_reload_success_timestamp: IntGauge,
    pub probes_in_flight: IntGauge,
    pub probe_requests: IntCounterVec,
    pub module_unknown: IntCounter,
    pub scheduler: SchedulerMetrics,
    pub connections: ConnectionMetrics,
}

impl ExporterMetrics {
    pub(super) fn new() -> ExporterMetrics {
        let probes_in_flight = int_gauge(metrics::PACS_EXPORTER_PROBES_IN_FLIGHT);
        let metrics = ExporterMetrics {
            registry: Registry::new(),
            last_reload_successful: int_gauge(metrics::PACS_EXPORTER_CONFIG_LAST_RELOAD_SUCCESSFUL),
            last_reload_success_timestamp: int_gauge(
                metrics::PACS_EXPORTER_CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
            ),
            scheduler: scheduler_metrics(probes_in_flight.clone()),
            connections: ConnectionMetrics::default(),
            probes_in_flight,
            probe_requests: IntCounterVec::new(
                metrics::PACS_EXPORTER_PROBE_REQUESTS_TOTAL.opts(),
                &["module", "result"],
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
            module_unknown: IntCounter::with_opts(
                metrics::PACS_EXPORTER_MODULE_UNKNOWN_TOTAL.opts(),
            )
            .unwrap_or_else(|e| unreachable!("{e}")),
        };
        metrics.register(build_info());
        metrics
    }

    /// Registers every series, and the process collector's.
    fn register(&self, build_info: IntGaugeVec) {
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(build_info),
            Box::new(self.last_reload_successful.clone()),
            Box::new(self.last_reload_success_timestamp.clone()),
            Box::new(self.probes_in_flight.clone()),
            Box::new(self.probe_requests.clone()),
            Box::new(self.module_unknown.clone()),
            Box::new(self.scheduler.queue_wait.clone()),
            Box::new(self.scheduler.rejections.clone()),
            Box::new(self.scheduler.overruns.clone()),
            Box::new(self.connections.refused.clone()),
            Box::new(self.connections.evicted.clone()),
            Box::new(ProcessMetrics::new()),
        ];
        for collector in collectors {
            if let Err(e) = self.registry.register(collector) {
                tracing::error!(error = %e, "cannot register exporter metric");
            }
        }
    }

    pub(super) fn reload_succeeded(&self) {
        self.last_reload_successful.set(1);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        self.last_reload_success_timestamp.set(now as i64);
    }

    pub(super) fn reload_failed(&self) {
        self.last_reload_successful.set(0);
    }
}

/// The process collector's series this exporter writes itself, with the collector's help text.
const PROCESS_CPU_SECONDS_TOTAL: Metric = Metric {
    name: "process_cpu_seconds_total",
    help: "Total user and system CPU time spent in seconds.",
};

/// The process collector's `process_*` series, with `process_cpu_seconds_total` in seconds and
/// hundredths as the kernel counts them (every Prometheus client does so; the prometheus
/// crate's collector counts whole seconds, so a CPU graph of a light process reads 0).
struct ProcessMetrics {
    collector: prometheus::process_collector::ProcessCollector,
    ticks_per_second: f64,
}

impl ProcessMetrics {
    fn new() -> ProcessMetrics {
        ProcessMetrics {
            collector: prometheus::process_collector::ProcessCollector::for_self(),
            ticks_per_second: procfs::ticks_per_second().max(1) as f64,
        }
    }

    /// User and system CPU time of this process, in seconds.
    fn cpu_seconds(&self) -> Option<f64> {
        let stat = procfs::process::Process::myself().ok()?.stat().ok()?;
        Some((stat.utime + stat.stime) as f64 / self.ticks_per_second)
    }
}

impl Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.collector.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let mut families = self.collector.collect();
        let cpu = PROCESS_CPU_SECONDS_TOTAL;
        let Some(seconds) = self.cpu_seconds() else {
            return families;
        };
        let Ok(counter) = prometheus::Counter::with_opts(cpu.opts()) else {
            return families;
        };
        counter.inc_by(seconds);
        families.retain(|f| f.name() != cpu.name);
        families.extend(counter.collect());
        families
    }
}

/// A registry in the text exposition format.
pub(super) fn encode(registry: &Registry) -> String {
    let mut buffer = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        tracing::error!(error = %e, "cannot encode metrics");
    }
    String::from_utf8_lossy(&buffer).into_owned()
}

fn int_gauge(metric: Metric) -> IntGauge {
    IntGauge::with_opts(metric.opts()).unwrap_or_else(|e| unreachable!("{e}"))
}

/// `pacs_exporter_build_info`, set to 1 with the labels build.rs sets.
fn build_info() -> IntGaugeVec {
    let build_info = IntGaugeVec::new(
        metrics::PACS_EXPORTER_BUILD_INFO.opts(),
        &["version", "revision", "branch", "rustversion", "platform"],
    )
    .unwrap_or_else(|e| unreachable!("{e}"));
    build_info
        .with_label_values(&[
            env!("CARGO_PKG_VERSION"),
            env!("PACS_EXPORTER_REVISION"),
            env!("PACS_EXPORTER_BRANCH"),
            env!("PACS_EXPORTER_RUST_VERSION").trim_start_matches("rustc "),
            env!("PACS_EXPORTER_PLATFORM"),
        ])
        .set(1);
    build_info
}

/// The scheduler's series; every rejection cause is present from the start.
fn scheduler_metrics(in_flight: IntGauge) -> SchedulerMetrics {
    let queue_wait = metrics::PACS_EXPORTER_PROBE_QUEUE_WAIT_SECONDS;
    let scheduler = SchedulerMetrics {
        in_flight,
        queue_wait: Histogram::with_opts(
            HistogramOpts::new(queue_wait.name, queue_wait.help)
                .buckets(QUEUE_WAIT_BUCKETS.to_vec()),
        )
        .unwrap_or_else(|e| unreachable!("{e}")),
        rejections: IntCounterVec::new(
            metrics::PACS_EXPORTER_PROBE_REJECTIONS_TOTAL.opts(),
            &["cause"],
        )
        .unwrap_or_else(|e| unreachable!("{e}")),
        overruns: IntCounter::with_opts(
            metrics::PACS_EXPORTER_PROBE_DEADLINE_OVERRUNS_TOTAL.opts(),
        )
        .unwrap_or_else(|e| unreachable!("{e}")),
    };
    for cause in Cause::ALL {
        scheduler.rejections.with_label_values(&[cause.as_str()]);
    }
    scheduler
}
