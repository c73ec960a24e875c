//! Running it like a mature exporter: reload, history and logs, the landing page,
//! allowed_targets, coalescing of identical probes and the concurrency bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use pacs_exporter::config::Config;
use pacs_exporter::web::{AppState, ServerOptions};
use testkit::exporter::Exporter;
use testkit::scripted::{Conn, ScriptedPeer};

/// A peer that answers C-ECHO after `delay`, counting the associations it accepted.
async fn slow_echo(delay: Duration) -> (ScriptedPeer, Arc<AtomicUsize>) {
    let associations = Arc::new(AtomicUsize::new(0));
    let counter = associations.clone();
    let peer = ScriptedPeer::start(move |mut conn: Conn| {
        let counter = counter.clone();
        async move {
            if conn.accept().await.is_some() {
                counter.fetch_add(1, Ordering::SeqCst);
            }
            tokio::time::sleep(delay).await;
            conn.echo_response(0).await;
            conn.release().await;
        }
    })
    .await;
    (peer, associations)
}

fn exporter_with(config: &str, options: ServerOptions) -> Exporter {
    let config = Config::parse(config).expect("test config");
    Exporter {
        state: Arc::new(AppState::new(config, options)),
    }
}

const ECHO: &str = "modules:\n  echo:\n    prober: echo\n    timeout: 5s\n";

#[tokio::test(flavor = "multi_thread")]
async fn reload_keeps_the_old_config_when_the_new_one_is_broken() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("modules.yml");
    std::fs::write(&path, ECHO).expect("write config");
    let exporter = exporter_with(
        ECHO,
        ServerOptions {
            config_path: Some(path.clone()),
            ..ServerOptions::default()
        },
    );

    std::fs::write(
        &path,
        "modules:\n  echo:\n    prober: echo\n    timeout: soon\n",
    )
    .expect("write");
    let reload = exporter.request("POST", "/-/reload", &[]).await;
    assert_eq!(reload.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        reload.body.contains("modules.echo.timeout"),
        "{}",
        reload.body
    );
    assert_eq!(reload.body.lines().count(), 1, "{}", reload.body);
    let metrics = exporter.get("/metrics", &[]).await;
    assert_eq!(
        metrics.metric("pacs_exporter_config_last_reload_successful"),
        0.0
    );
    // The old config still serves.
    let config = exporter.get("/config", &[]).await;
    assert!(config.body.contains("timeout: 5s"), "{}", config.body);
    let probe = exporter.probe("echo", "X@127.0.0.1:1", None).await;
    assert_eq!(probe.status, StatusCode::OK);

    std::fs::write(&path, "modules:\n  echo2:\n    prober: echo\n").expect("write");
    let reload = exporter.request("POST", "/-/reload", &[]).await;
    assert_eq!(reload.status, StatusCode::OK, "{}", reload.body);
    let metrics = exporter.get("/metrics", &[]).await;
    assert_eq!(
        metrics.metric("pacs_exporter_config_last_reload_successful"),
        1.0
    );
    assert_eq!(
        exporter.probe("echo", "X@127.0.0.1:1", None).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        exporter.probe("echo2", "X@127.0.0.1:1", None).await.status,
        StatusCode::OK
    );

    for method in ["GET", "PUT", "DELETE"] {
        let answer = exporter.request(method, "/-/reload", &[]).await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_probe_in_flight_finishes_with_the_config_it_started_with() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("modules.yml");
    let slow = "modules:\n  slow:\n    prober: echo\n    timeout: 5s\n";
    std::fs::write(&path, slow).expect("write config");
    let exporter = Arc::new(exporter_with(
        slow,
        ServerOptions {
            config_path: Some(path.clone()),
            ..ServerOptions::default()
        },
    ));
    let (peer, _) = slow_echo(Duration::from_millis(400)).await;
    let target = peer.target("SLOW");
    let running = {
        let exporter = exporter.clone();
        let target = target.clone();
        tokio::spawn(async move { exporter.probe("slow", &target, None).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    std::fs::write(&path, ECHO).expect("write config");
    assert_eq!(
        exporter.request("POST", "/-/reload", &[]).await.status,
        StatusCode::OK
    );
    let answer = running.await.expect("probe task");
    assert_eq!(answer.metric("probe_success"), 1.0, "{}", answer.body);
    assert_eq!(
        exporter.probe("slow", &target, None).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn history_landing_page_and_logs() {
    let (peer, _) = slow_echo(Duration::ZERO).await;
    let exporter = Exporter::new(ECHO);
    let good = exporter.probe("echo", &peer.target("GOOD"), None).await;
    assert_eq!(good.metric("probe_success"), 1.0);
    let bad = exporter.probe("echo", "BAD@127.0.0.1:1", None).await;
    assert_eq!(bad.metric("probe_success"), 0.0);

    let page = exporter.get("/", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.content_type.starts_with("text/html"));
    assert!(page.body.contains(&peer.target("GOOD")), "{}", page.body);
    assert!(page.body.contains("BAD@127.0.0.1:1"));
    assert!(page.body.contains("connect / refused"));
    assert!(page.body.contains(env!("CARGO_PKG_VERSION")));

    // The failed probe is the newest: id 1.
    let log = exporter.get("/logs?id=1", &[]).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    assert!(log.body.contains("failed"), "{}", log.body);
    assert!(
        log.body.contains("stage=connect reason=refused"),
        "{}",
        log.body
    );
    let latest = exporter
        .get(
            &format!(
                "/logs?module=echo&target={}",
                peer.target("GOOD").replace('@', "%40")
            ),
            &[],
        )
        .await;
    assert_eq!(latest.status, StatusCode::OK);
    assert!(latest.body.contains("succeeded"), "{}", latest.body);
    assert!(
        latest.body.contains("associating with GOOD@127.0.0.1"),
        "debug lines are kept: {}",
        latest.body
    );

    assert_eq!(
        exporter.get("/logs?id=99", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        exporter.get("/logs?id=x", &[]).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        exporter.get("/logs", &[]).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn allowed_targets_refuse_with_403_and_send_nothing() {
    let (peer, associations) = slow_echo(Duration::ZERO).await;
    let port = peer.port;
    let config = |allowed: &str| format!("allowed_targets: [{allowed}]\n{ECHO}");

    let cases: &[(String, &str, StatusCode)] = &[
        (config("127.0.0.2"), "127.0.0.1", StatusCode::FORBIDDEN),
        (config("\"10.0.0.0/8\""), "localhost", StatusCode::FORBIDDEN),
        (
            config(&format!("\"127.0.0.1:{}\"", port + 1)),
            "127.0.0.1",
            StatusCode::FORBIDDEN,
        ),
        (config("\"127.0.0.0/8\""), "127.0.0.1", StatusCode::OK),
        (
            config(&format!("\"localhost:{port}\"")),
            "localhost",
            StatusCode::OK,
        ),
        (
            config("\"127.0.0.0/8\", \"::1\""),
            "localhost",
            StatusCode::OK,
        ),
    ];
    let mut expected_associations = 0;
    for (config, host, status) in cases {
        let exporter = Exporter::new(config);
        let answer = exporter
            .probe("echo", &format!("PEER@{host}:{port}"), None)
            .await;
        assert_eq!(answer.status, *status, "{config} {host}: {}", answer.body);
        if *status == StatusCode::FORBIDDEN {
            assert!(
                answer.body.contains("not in allowed_targets"),
                "{}",
                answer.body
            );
            assert_eq!(answer.body.lines().count(), 1);
        } else {
            assert_eq!(
                answer.metric("probe_success"),
                1.0,
                "{config} {host}: {}",
                answer.body
            );
            expected_associations += 1;
        }
        assert_eq!(
            associations.load(Ordering::SeqCst),
            expected_associations,
            "{config} {host}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn identical_concurrent_probes_share_one_association() {
    let (peer, associations) = slow_echo(Duration::from_millis(300)).await;
    let exporter = Arc::new(Exporter::new(ECHO));
    let target = peer.target("PEER");
    let probes: Vec<_> = (0..5)
        .map(|_| {
            let (exporter, target) = (exporter.clone(), target.clone());
            tokio::spawn(async move { exporter.probe("echo", &target, None).await })
        })
        .collect();
    for probe in probes {
        let answer = probe.await.expect("probe task");
        assert_eq!(answer.metric("probe_success"), 1.0, "{}", answer.body);
    }
    assert_eq!(associations.load(Ordering::SeqCst), 1);
    let metrics = exporter.get("/metrics", &[]).await;
    assert_eq!(
        metrics.metric("pacs_exporter_probe_requests_total{module=\"echo\",result=\"success\"}"),
        5.0
    );
    assert_eq!(metrics.metric("pacs_exporter_probes_in_flight"), 0.0);

    // Once it has finished, the next probe is a new one.
    exporter.probe("echo", &target, None).await;
    assert_eq!(associations.load(Ordering::SeqCst), 2);
}

/// The request that started a probe runs it while it waits; when its client goes away the
/// probe carries on by itself: a request that joined it still gets its result, from the one
/// association, and the probe is then forgotten (the next request starts a new one).
#[tokio::test(flavor = "multi_thread")]
async fn a_probe_outlives_the_request_that_started_it() {
    // The PACS answers 1.5 s after accepting: the probe is running all through the steps.
    let (peer, associations) = slow_echo(Duration::from_millis(1500)).await;
    let exporter = Arc::new(Exporter::new(ECHO));
    let target = peer.target("PEER");
    let leader = {
        let (exporter, target) = (exporter.clone(), target.clone());
        tokio::spawn(async move { exporter.probe("echo", &target, None).await })
    };
    // The leader's probe is running once the PACS has accepted its association.
    let started = std::time::Instant::now();
    while associations.load(Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < Duration::from_secs(5), "no association");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let joiner = {
        let (exporter, target) = (exporter.clone(), target.clone());
        tokio::spawn(async move { exporter.probe("echo", &target, None).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    leader.abort();
    assert!(leader.await.is_err(), "the leader was not cut off");
    let answer = joiner.await.expect("joiner");
    assert_eq!(answer.metric("probe_success"), 1.0, "{}", answer.body);
    assert_eq!(associations.load(Ordering::SeqCst), 1);
    let logs = exporter
        .get(
            &format!("/logs?module=echo&target={}", target.replace('@', "%40")),
            &[],
        )
        .await;
    assert_eq!(
        logs.status,
        StatusCode::OK,
        "the probe was not recorded:\n{}",
        logs.body
    );
    assert!(
        logs.body.contains("C-ECHO") || logs.body.contains("succeeded"),
        "{}",
        logs.body
    );

    exporter.probe("echo", &target, None).await;
    assert_eq!(associations.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_concurrency_bound_queues_within_the_deadline() {
    let options = ServerOptions {
        max_concurrent: 1,
        ..ServerOptions::default()
    };
    let exporter = Arc::new(exporter_with(ECHO, options));
    let (a, _) = slow_echo(Duration::from_millis(200)).await;
    let (b, _) = slow_echo(Duration::from_millis(200)).await;
    // Both fit in their deadlines one after the other.
    let first = {
        let (exporter, target) = (exporter.clone(), a.target("A"));
        tokio::spawn(async move { exporter.probe("echo", &target, Some(2.0)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = exporter.probe("echo", &b.target("B"), Some(2.0)).await;
    assert_eq!(second.metric("probe_success"), 1.0, "{}", second.body);
    assert_eq!(first.await.expect("task").metric("probe_success"), 1.0);

    // A request whose deadline passes in the queue is answered 503, in time.
    let (slow, _) = slow_echo(Duration::from_millis(1500)).await;
    let blocker = {
        let (exporter, target) = (exporter.clone(), slow.target("SLOW"));
        tokio::spawn(async move { exporter.probe("echo", &target, Some(2.0)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let queued = exporter.probe("echo", &b.target("B"), Some(1.0)).await;
    assert_eq!(
        queued.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        queued.body
    );
    assert!(
        queued.body.contains("--probe.max-concurrent"),
        "{}",
        queued.body
    );
    assert!(
        queued.elapsed < Duration::from_secs(1),
        "{:?}",
        queued.elapsed
    );
    blocker.await.expect("task");
}

/// A request never gets less than its own budget from sharing: it joins a running probe only
/// if that probe's deadline is not earlier than its own. One that joined a probe with a later
/// deadline is answered at its own deadline as what it saw: a timeout at the probe's stage.
#[tokio::test(flavor = "multi_thread")]
async fn coalescing_only_helps() {
    let (peer, associations) = slow_echo(Duration::from_millis(1500)).await;
    let exporter = Arc::new(Exporter::new(ECHO));
    let target = peer.target("PEER");
    let probe = |scrape_timeout: Option<f64>| {
        let (exporter, target) = (exporter.clone(), target.clone());
        tokio::spawn(async move { exporter.probe("echo", &target, scrape_timeout).await })
    };

    // A short request that arrives during a long probe joins it, and answers by its deadline.
    let long = probe(None);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let short = probe(Some(1.5)).await.expect("task");
    short.assert_failed("echo", "timeout");
    assert_eq!(short.metric("probe_timeout_seconds"), 1.0, "{}", short.body);
    assert!(
        short.elapsed < Duration::from_millis(1000 + 500),
        "answered after its deadline: {:?}",
        short.elapsed
    );
    let long = long.await.expect("task");
    assert_eq!(long.metric("probe_success"), 1.0, "{}", long.body);
    assert_eq!(associations.load(Ordering::SeqCst), 1);

    // A long request that arrives during a short probe runs its own, and gets its full time.
    let short = probe(Some(1.5));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let long = probe(None).await.expect("task");
    assert_eq!(long.metric("probe_success"), 1.0, "{}", long.body);
    assert_eq!(long.metric("probe_timeout_seconds"), 5.0, "{}", long.body);
    short.await.expect("task").assert_failed("echo", "timeout");
    assert_eq!(associations.load(Ordering::SeqCst), 3);
}

/// A request that joins a running probe is told the stage the probe is in, as a request of its
/// own would be: here TCP is connected and the PACS never answers the A-ASSOCIATE-RQ, so the
/// stage is `associate` (an operator reading `connect` would look at the network, not the PACS).
#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_joins_a_probe_is_told_its_stage() {
    let peer = ScriptedPeer::start(|mut conn: Conn| async move {
        let _request = conn.read_request().await;
        tokio::time::sleep(Duration::from_secs(10)).await;
    })
    .await;
    let exporter = Arc::new(Exporter::new(ECHO));
    let target = peer.target("SILENT");
    let long = {
        let (exporter, target) = (exporter.clone(), target.clone());
        tokio::spawn(async move { exporter.probe("echo", &target, None).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let short = exporter.probe("echo", &target, Some(1.5)).await;
    short.assert_failed("associate", "timeout");
    assert_eq!(short.metric("probe_timeout_seconds"), 1.0, "{}", short.body);
    long.await
        .expect("task")
        .assert_failed("associate", "timeout");
}

/// Time spent waiting for a slot is not blamed on the PACS: a request that waited runs with
/// what is left of its budget and says so in probe_timeout_seconds; one left with less than
/// its floor is answered 503 with the reason. Both show on /metrics.
#[tokio::test(flavor = "multi_thread")]
async fn queueing_is_honest() {
    let options = ServerOptions {
        max_concurrent: 1,
        ..ServerOptions::default()
    };
    let exporter = Arc::new(exporter_with(ECHO, options));
    let (slow, _) = slow_echo(Duration::from_millis(800)).await;
    let (fast, _) = slow_echo(Duration::ZERO).await;
    let blocker = {
        let (exporter, target) = (exporter.clone(), slow.target("SLOW"));
        tokio::spawn(async move { exporter.probe("echo", &target, Some(3.0)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let queued = exporter
        .probe("echo", &fast.target("FAST"), Some(3.0))
        .await;
    assert_eq!(queued.status, StatusCode::OK, "{}", queued.body);
    assert_eq!(queued.metric("probe_success"), 1.0, "{}", queued.body);
    let budget = queued.metric("probe_timeout_seconds");
    // It waited about 0.7 s of its 2.5 s for the slot, and ran with the rest.
    assert!(
        budget < 2.4 && budget > 0.25,
        "budget {budget}: {}",
        queued.body
    );
    assert_eq!(blocker.await.expect("task").metric("probe_success"), 1.0);

    // A request whose budget would be below its floor (250 ms) when a slot frees is refused.
    let blocker = {
        let (exporter, target) = (exporter.clone(), slow.target("SLOW"));
        tokio::spawn(async move { exporter.probe("echo", &target, Some(3.0)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let refused = exporter
        .probe("echo", &fast.target("FAST"), Some(1.0))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.body
    );
    assert_eq!(refused.body.lines().count(), 1, "{}", refused.body);
    for words in ["waited", "--probe.max-concurrent", "floor"] {
        assert!(refused.body.contains(words), "{words}: {}", refused.body);
    }
    assert!(
        refused.elapsed < Duration::from_millis(500 + 500),
        "{:?}",
        refused.elapsed
    );
    blocker.await.expect("task");

    let metrics = exporter.get("/metrics", &[]).await;
    assert_eq!(
        metrics.metric("pacs_exporter_probe_rejections_total{cause=\"queue_wait\"}"),
        1.0
    );
    assert_eq!(
        metrics.metric("pacs_exporter_probe_queue_wait_seconds_count"),
        4.0,
        "{}",
        metrics.body
    );
    assert_eq!(
        metrics.metric("pacs_exporter_probe_deadline_overruns_total"),
        0.0
    );
}

/// Without a concurrency bound nothing queues, so nothing is refused: many concurrent
/// requests each get a probe result (whatever it found), never a 503.
#[tokio::test(flavor = "multi_thread")]
async fn no_bound_means_no_503() {
    let (peer, _) = slow_echo(Duration::from_millis(200)).await;
    let exporter = Arc::new(Exporter::new(ECHO));
    let requests: Vec<_> = (0..250)
        .map(|i| {
            let exporter = exporter.clone();
            let target = peer.target(&format!("PEER{i}"));
            tokio::spawn(async move { exporter.probe("echo", &target, Some(1.5)).await })
        })
        .collect();
    for request in requests {
        let answer = request.await.expect("task");
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        assert!(answer.value("probe_success").is_some(), "{}", answer.body);
    }
}

/// A file without modules (empty, or every module commented out) is refused on reload like a
/// broken one: the old config keeps serving and stays ready, the gauge says 0.
#[tokio::test(flavor = "multi_thread")]
async fn reload_refuses_a_config_without_modules() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("modules.yml");
    std::fs::write(&path, ECHO).expect("write config");
    let exporter = exporter_with(
        ECHO,
        ServerOptions {
            config_path: Some(path.clone()),
            ..ServerOptions::default()
        },
    );
    for text in ["", "\n  \n", "modules: {}\n", "allowed_targets: []\n"] {
        std::fs::write(&path, text).expect("write");
        let reload = exporter.request("POST", "/-/reload", &[]).await;
        assert_eq!(reload.status, StatusCode::INTERNAL_SERVER_ERROR, "{text:?}");
        assert!(
            reload.body.contains("no module is defined"),
            "{text:?}: {}",
            reload.body
        );
        assert_eq!(reload.body.lines().count(), 1, "{}", reload.body);
        let metrics = exporter.get("/metrics", &[]).await;
        assert_eq!(
            metrics.metric("pacs_exporter_config_last_reload_successful"),
            0.0
        );
        assert_eq!(exporter.get("/-/ready", &[]).await.status, StatusCode::OK);
        let probe = exporter.probe("echo", "X@127.0.0.1:1", None).await;
        assert_eq!(probe.status, StatusCode::OK, "{text:?}: {}", probe.body);
    }
}
