//! `fleet`: many `/probe` requests against the release binary, measured from outside.
//!
//! - Echo: `--clients` (64) clients, each on one kept-alive connection as Prometheus scrapes,
//!   send echo probes for `--duration` seconds (10) over `--targets` (1000) distinct probes:
//!   modules `echo0000`, `echo0001`, … of the demo source (the demo SCPs answer only their
//!   own AE titles, so distinct probes are distinct modules, not distinct targets): first at
//!   the exporter's own demo SCP (`--demo`, in process, its modules file rewritten and
//!   reloaded), then at the demo SCP of a second `pacs_exporter --demo` process, so that the
//!   exporter's CPU per probe is not mixed with the SCP's. Each echo load runs `--runs` (5)
//!   times and is judged on the medians. The exporter's CPU is split into user and system
//!   (kernel) time, and the same clients then ask the second exporter for `/-/healthy`: the
//!   cost of the HTTP side alone, beside the socket floor (`crate::floor`), shows where a
//!   probe's CPU goes.
//! - send_check: the same, with send_check modules `check0000`, … of the demo's source
//!   against its destination (24 studies, 3 missing, 1 incomplete).
//! - Under pressure (held connections, a burst, an outage): see [`crate::pressure`].
//!
//! Every load reports answers by status, answers later than the probe's deadline plus 50 ms
//! (the exporter's promise; counted from the moment the request's last byte was written, and
//! also from before connecting, which adds the time a connection waits to be accepted), what
//! the exporter itself counted as late, latency percentiles, the exporter's peak resident set,
//! open descriptors and CPU time.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::process::{
    connect, cpu_seconds, exporter_metric, probe_path, send, Answer, Cpu, Exporter, Sample,
};
use crate::report::{mb, ms, thousands, Context, Samples, Section, Table};
use crate::Options;

/// The exporter's default `--timeout-offset`.
const OFFSET: f64 = 0.5;
/// How late an answer may be after the probe's deadline (README, "Never late").
const GRACE: Duration = Duration::from_millis(50);

/// The budget each probe runs under (the exporter's rule, with a module timeout of 10 s).
fn budget(options: &Options) -> Duration {
    let scrape = options.scrape_timeout;
    let budget = if scrape > OFFSET {
        scrape - OFFSET
    } else {
        scrape / 2.0
    };
    Duration::from_secs_f64(budget.min(10.0))
}

/// `count` echo modules, `echo0000`, `echo0001`, …: as many distinct probes of one target.
fn echo_modules(count: usize) -> String {
    let mut yaml = String::from("modules:\n");
    for i in 0..count {
        yaml.push_str(&format!(
            "  echo{i:04}:\n    prober: echo\n    timeout: 10s\n"
        ));
    }
    yaml
}

pub async fn run(options: &Options, context: &Context) -> Section {
    let mut section = Section::new("fleet", "Fleet: sustained probes", context);
    section.say(format!(
        "Clients on kept-alive connections (as Prometheus scrapes) send {} distinct probes in \
         turn for {} s: modules echo0000, echo0001, … of the demo source, at the exporter's own \
         demo SCP (`--demo`, in process), then at that of a second `pacs_exporter --demo` \
         process, so that the exporter's CPU is not mixed with the SCP's; the load generator \
         runs in this benchmark's process on the same cores. \
         Latency is counted from before the request is sent; \"late\" is an answer after the \
         probe's deadline (scrape timeout {} s minus the 0.5 s offset) plus 50 ms.",
        options.targets, options.duration, options.scrape_timeout
    ));
    let (clients, duration) = (options.clients, options.duration);
    let floor = tokio::task::spawn_blocking(move || crate::floor::measure(clients, duration))
        .await
        .expect("the socket floor");
    section.heading("Socket floor: the same traffic with nothing else");
    section.say(
        "What an echo probe's socket traffic alone costs this machine: blocking threads play \
         client, exporter and PACS with the probe's byte counts and socket options, and no \
         runtime, parsing or metrics (`examples/bench/floor.rs`). No exporter can do better \
         on this machine; read the figures below against it.",
    );
    section.table(&floor.table);

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let modules = echo_modules(options.targets);
    let demo_flag = ["--demo".to_string()];
    let (demo, printed) = Exporter::start(&context.binary, &modules, &demo_flag).await;
    let [source, destination, _] = &printed[..] else {
        panic!("the demo did not print its source, destination and modules file: {printed:?}");
    };

    // In process: the exporter probes the demo SCP it runs itself, with the echo modules
    // written to its modules file and reloaded.
    let (own, own_printed) = Exporter::start(&context.binary, &modules, &demo_flag).await;
    let [own_source, _, own_modules] = &own_printed[..] else {
        panic!("the demo did not print its source and modules file: {own_printed:?}");
    };
    own.reload_with(own_modules, &modules).await;
    let in_process = repeated(options, &own, None, echo_paths(options, own_source)).await;
    drop(own);
    section.heading("Echo probes at the exporter's own demo SCP (in process)");
    section.table(&in_process.table);
    section.target(
        "≥ 12,000 echo probes/s with the demo PACS in process, p99 under 20 ms, RSS under 64 MB",
        in_process.rate >= 12_000.0 && in_process.p99 < 0.020 && in_process.peak_kb < 64_000,
        format!(
            "{} probes/s (median of {} runs; the socket floor: {}/s), p99 {}, peak RSS {}. \
             At 12,000/s this machine's {cores} cores give {:.0} µs of CPU per probe to the \
             exporter, its SCP and the load generator together; the socket floor's three \
             parts alone take {:.0} µs.",
            thousands(in_process.rate as u64),
            options.runs.max(1),
            thousands(floor.rate as u64),
            ms(in_process.p99),
            mb(in_process.peak_kb),
            cores as f64 / 12_000.0 * 1e6,
            floor.all_cpu * 1e6,
        ),
    );

    let (exporter, _) = Exporter::start(&context.binary, &modules, &[]).await;
    let echo = repeated(options, &exporter, Some(&demo), echo_paths(options, source)).await;
    let (http, http_cpu) = http_alone(options, &exporter).await;
    drop(exporter);
    section.heading("Echo probes at the demo SCP in its own process");
    section.table(&echo.table);
    section.heading("The HTTP layer alone: `/-/healthy`");
    section.say(
        "The same clients and exporter, asking `/-/healthy` instead of a probe: what the \
         HTTP side of every probe costs (hyper, routing, the connection policy, one read and \
         one write), with no DICOM, metrics or history.",
    );
    section.table(&http);
    section.target(
        "≤ 120 µs of exporter CPU per echo probe with the PACS in its own process, p99 under 20 ms, RSS under 64 MB",
        echo.cpu_per_probe <= 120e-6 && echo.p99 < 0.020 && echo.peak_kb < 64_000,
        format!(
            "{:.0} µs per probe (median of {} runs; {} probes/s), of which {:.0} µs in the \
             kernel, where the socket floor's whole exporter part is {:.0} µs; that leaves \
             the exporter's own code {:.0} µs per probe, where `/-/healthy` alone takes \
             {:.0} µs of user CPU. p99 {}, peak RSS {}.",
            echo.cpu_per_probe * 1e6,
            options.runs.max(1),
            thousands(echo.rate as u64),
            echo.system_per_probe * 1e6,
            floor.exporter_cpu * 1e6,
            (120e-6 - echo.system_per_probe).max(0.0) * 1e6,
            http_cpu.user * 1e6,
            ms(echo.p99),
            mb(echo.peak_kb)
        ),
    );

    let check_modules: String = (0..options.targets)
        .map(|i| {
            testkit::modules::SendCheck::to(destination.to_string())
                .named(&format!("check{i:04}"))
                .timeout("10s")
                .module()
        })
        .collect();
    let (checker, _) =
        Exporter::start(&context.binary, &format!("modules:\n{check_modules}"), &[]).await;
    let check = sustained(
        options,
        &checker,
        Some(&demo),
        (0..options.targets)
            .map(|i| probe_path(&format!("check{i:04}"), source))
            .collect(),
    )
    .await;
    drop(checker);
    section.heading("send_check probes at the demo SCPs (24 studies, 3 missing)");
    section.table(&check.table);
    drop(demo);

    crate::pressure::run(options, &context.binary, &mut section).await;
    section
}

/// Echo probes of `target`, one per module of [`echo_modules`].
fn echo_paths(options: &Options, target: &str) -> Vec<String> {
    (0..options.targets)
        .map(|i| probe_path(&format!("echo{i:04}"), target))
        .collect()
}

/// `/-/healthy` from the clients of the echo loads, `--runs` times: its table, and the
/// exporter's CPU per request (medians of user and system time).
async fn http_alone(options: &Options, exporter: &Exporter) -> (Table, Cpu) {
    let runs = options.runs.max(1);
    let (mut rates, mut users, mut systems) =
        (Samples::default(), Samples::default(), Samples::default());
    let mut statuses = String::new();
    for _ in 0..runs {
        let before = exporter.sample();
        let (answers, wall) = drive(options, exporter.port, vec!["/-/healthy".into()]).await;
        let cpu = (exporter.sample().cpu - before.cpu).per(answers.len().max(1) as f64);
        rates.push(answers.len() as f64 / wall.as_secs_f64());
        users.push(cpu.user);
        systems.push(cpu.system);
        statuses = by_status(&answers);
    }
    let median = Cpu {
        user: users.median(),
        system: systems.median(),
    };
    let mut table = Table::pairs();
    table.pair(
        "load",
        format!(
            "{} clients for {} s, {runs} runs",
            options.clients, options.duration
        ),
    );
    table.pair("answers by HTTP status (last run)", statuses);
    table.pair("requests/s: median", thousands(rates.median() as u64));
    table.pair("exporter CPU per request: median", median.micros());
    (table, median)
}

/// The figures of one sustained load.
struct Sustained {
    table: Table,
    rate: f64,
    p99: f64,
    peak_kb: u64,
    /// The exporter's CPU seconds per probe.
    cpu_per_probe: f64,
    /// … of which in the kernel (`stime`).
    system_per_probe: f64,
}

/// [`sustained`] `--runs` times: the last run's table, with the median (and spread) of every
/// run's rate and CPU per probe, which the targets are judged on; this machine's figures vary
/// from run to run by a quarter or more.
async fn repeated(
    options: &Options,
    exporter: &Exporter,
    scp: Option<&Exporter>,
    paths: Vec<String>,
) -> Sustained {
    let runs = options.runs.max(1);
    let (mut rates, mut cpus, mut systems, mut p99s, mut peak_kb) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
        0,
    );
    let mut last = None;
    for _ in 0..runs {
        let run = sustained(options, exporter, scp, paths.clone()).await;
        rates.push(run.rate);
        cpus.push(run.cpu_per_probe);
        systems.push(run.system_per_probe);
        p99s.push(run.p99);
        peak_kb = peak_kb.max(run.peak_kb);
        last = Some(run);
    }
    let Some(mut last) = last else {
        unreachable!("at least one run")
    };
    let spread = |s: &Samples, scale: f64, unit: &str| {
        format!(
            "{:.0}{unit} ({:.0}–{:.0})",
            s.median() * scale,
            s.min() * scale,
            s.max() * scale
        )
    };
    last.table.pair(
        &format!("probes/s over {runs} runs: median (min–max)"),
        spread(&rates, 1.0, ""),
    );
    last.table.pair(
        &format!("exporter CPU per probe over {runs} runs: median (min–max)"),
        spread(&cpus, 1e6, " µs"),
    );
    last.table.pair(
        &format!("… of it system (kernel) CPU over {runs} runs: median (min–max)"),
        spread(&systems, 1e6, " µs"),
    );
    last.table.pair(
        &format!("latency p99 over {runs} runs: median (min–max)"),
        format!(
            "{} ({}–{})",
            ms(p99s.median()),
            ms(p99s.min()),
            ms(p99s.max())
        ),
    );
    Sustained {
        table: last.table,
        rate: rates.median(),
        p99: p99s.median(),
        peak_kb,
        cpu_per_probe: cpus.median(),
        system_per_probe: systems.median(),
    }
}

/// Clients on kept-alive connections send the requests of `paths` in turn to `exporter`
/// for the configured duration; `scp` is the demo SCP's process when it runs apart.
async fn sustained(
    options: &Options,
    exporter: &Exporter,
    scp: Option<&Exporter>,
    paths: Vec<String>,
) -> Sustained {
    let paths_len = paths.len();
    let before = exporter.sample();
    let scp_before = scp.map(Exporter::sample);
    let load_before = cpu_seconds(std::process::id());
    let (answers, wall) = drive(options, exporter.port, paths).await;
    let after = exporter.sample();
    let scp_after = scp.map(Exporter::sample);
    let load_cpu = (cpu_seconds(std::process::id()) - load_before).total();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let settled = exporter.sample();

    let probes = answers.len().max(1) as f64;
    let rate = answers.len() as f64 / wall.as_secs_f64();
    let mut latency = Samples::default();
    for a in &answers {
        latency.push_duration(a.elapsed);
    }
    let mut table = Table::pairs();
    table.pair("exporter", format!("`{}`", exporter.command()));
    table.pair(
        "load",
        format!(
            "{} clients for {} s, {} distinct probes",
            options.clients, options.duration, paths_len
        ),
    );
    table.pair("probes/s", thousands(rate as u64));
    table.pair(
        "`probe_success 1`",
        format!(
            "{} of {}",
            answers.iter().filter(|a| a.success).count(),
            answers.len()
        ),
    );
    answer_rows(
        &mut table,
        &answers,
        budget(options),
        options.scrape_timeout,
    );
    overruns(&mut table, exporter).await;
    let cpu = (after.cpu - before.cpu).per(probes);
    table.pair("exporter CPU per probe", cpu.micros());
    let share = |cpu: f64| format!("{:.0}%", 100.0 * cpu / wall.as_secs_f64());
    let scp_cpu = match (scp_before, scp_after) {
        (Some(b), Some(a)) => share((a.cpu - b.cpu).total()),
        _ => "(in the exporter)".to_string(),
    };
    table.pair(
        "CPU over the run: exporter / demo SCP / load generator (100% = one core)",
        format!(
            "{} / {scp_cpu} / {}",
            share((after.cpu - before.cpu).total()),
            share(load_cpu)
        ),
    );
    process_rows(&mut table, before, after, settled);
    Sustained {
        table,
        rate,
        p99: latency.quantile(0.99),
        peak_kb: after.hwm_kb,
        cpu_per_probe: cpu.total(),
        system_per_probe: cpu.system,
    }
}

/// `--clients` clients on kept-alive connections send the requests of `paths` in turn to the
/// exporter on `port` for `--duration` seconds: every answer, and the time it took.
async fn drive(options: &Options, port: u16, paths: Vec<String>) -> (Vec<Answer>, Duration) {
    let paths = Arc::new(paths);
    let started = Instant::now();
    let end = started + Duration::from_secs_f64(options.duration);
    let next = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..options.clients)
        .map(|_| {
            let (paths, next) = (paths.clone(), next.clone());
            let scrape = options.scrape_timeout;
            tokio::spawn(async move { client(port, scrape, end, &paths, &next).await })
        })
        .collect();
    let mut answers = Vec::new();
    for client in clients {
        answers.extend(client.await.expect("client task"));
    }
    (answers, started.elapsed())
}

/// One client: sends the requests in turn (shared with the other clients) until `end`,
/// reconnecting when the exporter closes its connection.
async fn client(
    port: u16,
    scrape: f64,
    end: Instant,
    paths: &[String],
    next: &AtomicUsize,
) -> Vec<Answer> {
    let mut answers = Vec::new();
    let mut connection = None;
    while Instant::now() < end {
        let path = &paths[next.fetch_add(1, Ordering::Relaxed) % paths.len()];
        let start = Instant::now();
        if connection.is_none() {
            connection = connect(port).await;
        }
        let answer = match connection.as_mut() {
            Some(c) => send(c, path, Some(scrape), start).await.ok(),
            None => None,
        };
        match answer {
            Some(answer) => answers.push(answer),
            None => {
                connection = None;
                answers.push(Answer::none(start));
            }
        }
    }
    answers
}

/// Statuses, lateness and latency of `answers`, for probes that ran under `budget`.
fn answer_rows(table: &mut Table, answers: &[Answer], budget: Duration, scrape_timeout: f64) {
    table.pair("answers by HTTP status", by_status(answers));
    let limit = budget + GRACE;
    let late = answers.iter().filter(|a| a.since_written > limit).count();
    let late_from_start = answers.iter().filter(|a| a.elapsed > limit).count();
    let scrape = Duration::from_secs_f64(scrape_timeout);
    let dropped = answers.iter().filter(|a| a.elapsed > scrape).count();
    let verdict = if late == 0 { "" } else { " **late**" };
    table.pair(
        &format!(
            "answers after deadline + 50 ms ({:.2} s after the request was sent)",
            limit.as_secs_f64()
        ),
        format!("{late}{verdict}"),
    );
    table.pair(
        "… counted from before connecting (includes waiting to be accepted)",
        late_from_start,
    );
    table.pair(
        &format!("answers after the scrape timeout ({scrape_timeout} s)"),
        dropped,
    );
    let mut latency = Samples::default();
    for a in answers {
        latency.push_duration(a.elapsed);
    }
    if latency.len() > 0 {
        table.pair(
            "latency p50 / p99 / max",
            format!(
                "{} / {} / {}",
                ms(latency.median()),
                ms(latency.quantile(0.99)),
                ms(latency.max())
            ),
        );
    }
    let mut outside = Samples::default();
    let mut slowest: f64 = 0.0;
    for a in answers {
        if let Some(probe) = a.probe_seconds {
            slowest = slowest.max(probe);
            outside.push(a.since_written.as_secs_f64() - probe);
        }
    }
    if outside.len() > 0 {
        table.pair(
            "slowest `probe_duration_seconds` (exporter's clock)",
            ms(slowest),
        );
        table.pair(
            "answer time minus `probe_duration_seconds`, p99 / max",
            format!("{} / {}", ms(outside.quantile(0.99)), ms(outside.max())),
        );
    }
}

/// "80265 × 200, 3 without an answer".
fn by_status(answers: &[Answer]) -> String {
    let mut statuses: BTreeMap<u16, usize> = BTreeMap::new();
    for a in answers {
        *statuses.entry(a.status).or_default() += 1;
    }
    let statuses: Vec<String> = statuses
        .iter()
        .map(|(s, n)| match s {
            0 => format!("{n} without an answer"),
            s => format!("{n} × {s}"),
        })
        .collect();
    statuses.join(", ")
}

/// What the exporter itself counted as late.
async fn overruns(table: &mut Table, exporter: &Exporter) {
    let name = "pacs_exporter_probe_deadline_overruns_total";
    table.pair(
        &format!("`{name}`"),
        exporter_metric(exporter.port, name).await,
    );
}

/// Memory and descriptors of the exporter between `before`, `after` and `settled`.
fn process_rows(table: &mut Table, before: Sample, after: Sample, settled: Sample) {
    table.pair(
        "exporter peak RSS (VmHWM) before → after",
        format!("{} → {}", mb(before.hwm_kb), mb(after.hwm_kb)),
    );
    table.pair(
        "exporter open fds before → after → 2 s later",
        format!("{} → {} → {}", before.fds, after.fds, settled.fds),
    );
}
