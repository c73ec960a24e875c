//! `fleet`, under pressure: what one client's connections, a burst far above capacity and a
//! site outage do to the answers Prometheus gets, with the exporter's default flags, timed from
//! before each client connects.
//!
//! - Held connections: `--held` (1,000) kept-alive connections from 127.0.0.2 that asked for
//!   `/-/healthy` once and sit idle, then as many that send nothing; meanwhile `--scrapes`
//!   (100) scrapes of `/metrics` from 127.0.0.3, one after another, each on a new connection.
//! - Burst: `--requests` (2,000) probes of silent PACS at once from one address, scrape
//!   timeout 3 s.
//! - Outage: `--outage` (300) silent PACS of one site probed at once, scrape timeout 2 s; the
//!   memory each waiting probe holds is the rise in resident memory while they wait.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use testkit::http::{connect_from, Connection, Request};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::process::{exporter_metric, get, probe_path, Answer, Exporter};
use crate::report::{mb, ms, Samples, Section, Table};
use crate::Options;
use testkit::metrics::series_value;

const MODULES: &str = "modules:
  echo:
    prober: echo
    timeout: 10s
";

pub async fn run(options: &Options, binary: &std::path::Path, section: &mut Section) {
    section.heading("Under pressure, with the default flags");
    section.say(
        "Each client is timed from before it connects, as Prometheus times a scrape: time in \
         the kernel's queue counts. The exporter runs with its default flags \
         (`--web.max-connections=512`, three quarters of them per client address, no bound on \
         probes of its own).",
    );
    let held = held_connections(options, binary).await;
    section.say(format!(
        "**Held connections.** {} kept-alive connections from one address (127.0.0.2), each \
         having asked for `/-/healthy` once, then {} connections from it that send nothing; \
         meanwhile {} scrapes of `/metrics` from another address (127.0.0.3), one after \
         another, each on a new connection.",
        options.held, options.held, options.scrapes
    ));
    section.table(&held.table);
    section.target(
        "Held connections: every scrape from another address answered, p99 under 20 ms",
        held.all_answered && held.p99 < 0.020,
        format!(
            "{} of {} scrapes answered 200, p99 {} (idle holders), {} (holders sending nothing).",
            held.answered,
            held.total,
            ms(held.p99_idle),
            ms(held.p99_fresh)
        ),
    );

    let burst = at_once(options, binary, options.requests, 3.0).await;
    section.say(format!(
        "**Burst.** {} probes of silent PACS at once from one address, scrape timeout 3 s \
         (probe budget 2.5 s). What can be run is run to its deadline; the rest is told at once \
         that the connections are taken (503 with the reason).",
        options.requests
    ));
    section.table(&burst.table);
    section.target(
        "Burst: every request answered (a probe result or a 503 with its reason) before the scrape timeout, as the client measures it",
        burst.unanswered == 0 && burst.after_scrape_timeout == 0,
        format!(
            "{} unanswered, {} after the scrape timeout; p99 {} from before connecting.",
            burst.unanswered,
            burst.after_scrape_timeout,
            ms(burst.p99)
        ),
    );

    let outage = at_once(options, binary, options.outage, 2.0).await;
    section.say(format!(
        "**Outage.** {} silent PACS of one site probed at once, scrape timeout 2 s (probe \
         budget 1.5 s): each should read `probe_success 0` with its reason, none a 503.",
        options.outage
    ));
    section.table(&outage.table);
    let failures = outage.statuses.get(&200).copied().unwrap_or(0);
    section.target(
        "Outage: every PACS reads as `probe_success 0` by the scrape timeout, none as a 503",
        failures == options.outage && outage.after_scrape_timeout == 0,
        format!(
            "{failures} of {} answered 200 with probe_success 0; about {:.0} KiB per waiting probe.",
            options.outage, outage.kib_per_probe
        ),
    );
}

struct Held {
    table: Table,
    total: usize,
    answered: usize,
    all_answered: bool,
    p99: f64,
    p99_idle: f64,
    p99_fresh: f64,
}

async fn held_connections(options: &Options, binary: &std::path::Path) -> Held {
    let (exporter, _) = Exporter::start(binary, MODULES, &[]).await;
    let port = exporter.port;
    let holder = Ipv4Addr::new(127, 0, 0, 2);
    let mut table = Table::new(&[
        "holder",
        "connections still held",
        "scrapes answered",
        "scrape latency p50 / p99 / max",
        "evicted / refused",
    ]);

    // Kept-alive connections that asked once and sit idle.
    let mut idle = Vec::new();
    for _ in 0..options.held {
        if let Ok(mut connection) = Connection::open_from(holder, port).await {
            if connection.send(Request::get("/-/healthy")).await.is_ok() {
                idle.push(connection);
            }
        }
    }
    let (idle_scrapes, idle_latency) = scrapes(port, options.scrapes).await;
    let mut still = 0;
    for connection in &mut idle {
        if connection
            .send(Request::get("/-/healthy"))
            .await
            .is_ok_and(|(r, _)| r.status == 200)
        {
            still += 1;
        }
    }
    let counters = |text: &str| {
        let value = |series: &str| series_value(text, series).unwrap_or(0.0);
        (
            value("pacs_exporter_http_connections_evicted_total"),
            value("pacs_exporter_http_connections_refused_total{reason=\"client_limit\"}")
                + value("pacs_exporter_http_connections_refused_total{reason=\"full\"}"),
        )
    };
    let (evicted, refused) = counters(&metrics_text(port).await);
    table.row(vec![
        format!("{} idle kept-alive", options.held),
        format!("{still} (answered again)"),
        format!("{idle_scrapes} of {}", options.scrapes),
        spread(&idle_latency),
        format!("{evicted} / {refused}"),
    ]);
    drop(idle);

    // Connections that send nothing.
    let mut silent = Vec::new();
    for _ in 0..options.held {
        if let Ok(stream) = connect_from(holder, port).await {
            silent.push(stream);
        }
    }
    let (fresh_scrapes, fresh_latency) = scrapes(port, options.scrapes).await;
    let (evicted_after, refused_after) = counters(&metrics_text(port).await);
    let refused_now = refused_after - refused;
    table.row(vec![
        format!("{} sending nothing", options.held),
        format!(
            "{} (of {} connected; {refused_now} refused)",
            silent.len() as f64 - refused_now,
            silent.len()
        ),
        format!("{fresh_scrapes} of {}", options.scrapes),
        spread(&fresh_latency),
        format!("{} / {refused_now}", evicted_after - evicted),
    ]);
    drop(silent);

    let all: Samples = idle_latency
        .values()
        .chain(fresh_latency.values())
        .collect();
    Held {
        table,
        total: 2 * options.scrapes,
        answered: idle_scrapes + fresh_scrapes,
        all_answered: idle_scrapes + fresh_scrapes == 2 * options.scrapes,
        p99: all.quantile(0.99),
        p99_idle: idle_latency.quantile(0.99),
        p99_fresh: fresh_latency.quantile(0.99),
    }
}

/// `count` scrapes of `/metrics` from 127.0.0.3, one after another, each on a new
/// connection: how many were answered 200, and their latency from before connecting.
async fn scrapes(port: u16, count: usize) -> (usize, Samples) {
    let scraper = Ipv4Addr::new(127, 0, 0, 3);
    let mut answered = 0;
    let mut latency = Samples::default();
    for _ in 0..count {
        let start = Instant::now();
        let answer = tokio::time::timeout(Duration::from_secs(10), async {
            let mut connection = Connection::open_from(scraper, port).await.ok()?;
            connection.send(Request::get("/metrics")).await.ok()
        })
        .await;
        latency.push_duration(start.elapsed());
        if matches!(answer, Ok(Some((ref response, _))) if response.status == 200) {
            answered += 1;
        }
    }
    (answered, latency)
}

async fn metrics_text(port: u16) -> String {
    let answer = async {
        let mut connection = Connection::open_from(Ipv4Addr::new(127, 0, 0, 4), port)
            .await
            .ok()?;
        Some(
            connection
                .send(Request::get("/metrics"))
                .await
                .ok()?
                .0
                .text(),
        )
    };
    answer.await.unwrap_or_default()
}

fn spread(latency: &Samples) -> String {
    format!(
        "{} / {} / {}",
        ms(latency.median()),
        ms(latency.quantile(0.99)),
        ms(latency.max())
    )
}

struct Burst {
    table: Table,
    statuses: BTreeMap<u16, usize>,
    unanswered: usize,
    after_scrape_timeout: usize,
    p99: f64,
    kib_per_probe: f64,
}

/// `requests` probes of distinct silent PACS at once, each with `scrape_timeout`.
async fn at_once(
    options: &Options,
    binary: &std::path::Path,
    requests: usize,
    scrape_timeout: f64,
) -> Burst {
    let peers = silent_listeners(options.listeners.max(1)).await;
    let (exporter, _) = Exporter::start(binary, MODULES, &[]).await;
    let port = exporter.port;
    let before = exporter.sample();
    let rss_before = exporter.rss_kb();
    let tasks: Vec<_> = (0..requests)
        .map(|i| {
            let target = format!("SILENT{i:04}@{}", peers[i % peers.len()]);
            tokio::spawn(async move {
                get(port, &probe_path("echo", &target), Some(scrape_timeout)).await
            })
        })
        .collect();
    // While they wait: the memory they hold.
    tokio::time::sleep(Duration::from_secs_f64(scrape_timeout / 2.0)).await;
    let rss_waiting = exporter.rss_kb();
    let mut answers: Vec<Answer> = Vec::with_capacity(requests);
    for task in tasks {
        answers.push(task.await.expect("request task"));
    }
    let after = exporter.sample();
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for a in &answers {
        *statuses.entry(a.status).or_default() += 1;
    }
    let scrape = Duration::from_secs_f64(scrape_timeout);
    let after_scrape_timeout = answers.iter().filter(|a| a.elapsed > scrape).count();
    let latency: Samples = answers
        .iter()
        .filter(|a| a.status != 0)
        .map(|a| a.elapsed.as_secs_f64())
        .collect();
    let running = answers.iter().filter(|a| a.status == 200).count().max(1);
    let kib_per_probe = rss_waiting.saturating_sub(rss_before) as f64 / running as f64;
    let mut table = Table::pairs();
    table.pair("exporter", format!("`{}`", exporter.command()));
    table.pair(
        "answers by HTTP status",
        statuses
            .iter()
            .map(|(s, n)| match s {
                0 => format!("{n} without an answer"),
                s => format!("{n} × {s}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
    );
    table.pair(
        "`probe_success 0` among the 200s",
        answers
            .iter()
            .filter(|a| a.status == 200 && !a.success)
            .count(),
    );
    table.pair(
        &format!("answers after the scrape timeout ({scrape_timeout} s), from before connecting"),
        after_scrape_timeout,
    );
    if latency.len() > 0 {
        table.pair(
            "latency from before connecting p50 / p99 / max",
            spread(&latency),
        );
    }
    let refused_latency: Samples = answers
        .iter()
        .filter(|a| a.status == 503)
        .map(|a| a.elapsed.as_secs_f64())
        .collect();
    if refused_latency.len() > 0 {
        table.pair("503s: latency p50 / p99 / max", spread(&refused_latency));
    }
    table.pair(
        "`pacs_exporter_probe_deadline_overruns_total`",
        exporter_metric(port, "pacs_exporter_probe_deadline_overruns_total").await,
    );
    table.pair(
        "resident memory before → while waiting (per probe run)",
        format!(
            "{} → {} ({kib_per_probe:.0} KiB)",
            mb(rss_before),
            mb(rss_waiting)
        ),
    );
    table.pair(
        "exporter CPU",
        format!("{:.2} s", (after.cpu - before.cpu).total()),
    );
    Burst {
        table,
        unanswered: statuses.get(&0).copied().unwrap_or(0),
        statuses,
        after_scrape_timeout,
        p99: latency.quantile(0.99),
        kib_per_probe,
    }
}

/// Listeners on 127.0.0.10, 127.0.0.11, … that accept connections and never write; each
/// connection is read (and discarded) until the exporter closes it. Dropped with the runtime.
async fn silent_listeners(count: usize) -> Vec<String> {
    let mut addresses = Vec::new();
    for i in 0..count {
        let listener = TcpListener::bind((format!("127.0.0.{}", i + 10), 0))
            .await
            .expect("bind a loopback address");
        addresses.push(listener.local_addr().expect("address").to_string());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut sink = [0u8; 1024];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                });
            }
        });
    }
    addresses
}
