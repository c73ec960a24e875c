//! The landing page in a real browser (Debian's headless Chromium) against the running binary
//! after one good and one failed probe: what a person sees, and that the logs link works.

use std::path::Path;
use std::process::Command;

use testkit::binary::Binary;
use testkit::peers::{require_binary, Orthanc};

/// Loads `url` in headless Chromium and returns the DOM it rendered.
fn render(url: &str, profile: &Path) -> String {
    let chromium = require_binary("chromium", "chromium");
    let output = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The text of every cell of the table with `id`, row by row, as a browser shows it.
fn table(dom: &str, id: &str) -> Vec<Vec<String>> {
    let start = dom
        .find(&format!("<table id=\"{id}\""))
        .unwrap_or_else(|| panic!("no table {id} in {dom}"));
    let end = start + dom[start..].find("</table>").expect("table end");
    dom[start..end]
        .split("<tr")
        .skip(1)
        .map(|row| {
            row.split("<td")
                .skip(1)
                .map(|cell| {
                    let inner = cell.split_once('>').map(|(_, rest)| rest).unwrap_or("");
                    let inner = inner.split("</td>").next().unwrap_or("");
                    // Strip tags (links) and decode the entities the page uses.
                    let mut text = String::new();
                    let mut in_tag = false;
                    for c in inner.chars() {
                        match c {
                            '<' => in_tag = true,
                            '>' => in_tag = false,
                            c if !in_tag => text.push(c),
                            _ => {}
                        }
                    }
                    text.replace("&amp;", "&")
                        .replace("&lt;", "<")
                        .replace("&gt;", ">")
                })
                .collect()
        })
        .filter(|cells: &Vec<String>| !cells.is_empty())
        .collect()
}

/// The rows of table `id` whose cells contain `text`, with the row's class.
fn rows_with<'d>(dom: &'d str, text: &str) -> Vec<&'d str> {
    dom.split("<tr").filter(|r| r.contains(text)).collect()
}

#[test]
fn landing_page_shows_recent_probes_their_findings_and_their_logs() {
    let orthanc = Orthanc::start("ORTHANC");
    let exporter = Binary::start(
        "modules:
  echo:
    prober: echo
    timeout: 5s
  find:
    prober: find
    timeout: 5s
    find: { query: { ModalitiesInStudy: CT } }
  transfer:
    prober: send_check
    timeout: 5s
    send_check: { destination: ARCHIVE@127.0.0.1:1, timezone: UTC }
",
        &[],
    );
    let profile = tempfile::tempdir().expect("profile dir");

    // Before any probe: a form to run one, no placeholder links, and a hint.
    let dom = render(&exporter.url("/"), profile.path());
    assert!(dom.contains("PACS Exporter"), "{dom}");
    assert!(dom.contains(env!("CARGO_PKG_VERSION")));
    assert!(dom.contains("<form id=\"probe\" action=\"probe\""), "{dom}");
    for module in ["echo", "find", "transfer"] {
        assert!(
            dom.contains(&format!("<option value=\"{module}\">{module}</option>")),
            "{dom}"
        );
    }
    assert!(!dom.contains("pacs.example"), "{dom}");
    assert!(dom.contains("No probe has run yet"), "{dom}");
    let modules = table(&dom, "modules");
    assert_eq!(modules[0], ["echo", "echo", "5s", ""], "{modules:?}");
    assert_eq!(
        modules[2],
        ["transfer", "send_check", "5s", "ARCHIVE@127.0.0.1:1"],
        "{modules:?}"
    );

    let good = format!("ORTHANC@127.0.0.1:{}", orthanc.dicom_port);
    for (module, target) in [
        ("echo", good.as_str()),
        ("echo", "DEAD@127.0.0.1:1"),
        ("find", &good),
        ("transfer", &good),
    ] {
        let (status, _) = exporter.get(&format!(
            "/probe?module={module}&target={}",
            target.replace('@', "%40").replace(':', "%3A")
        ));
        assert_eq!(status, 200, "{module} {target}");
    }

    let dom = render(&exporter.url("/"), profile.path());
    assert!(!dom.contains("No probe has run yet"), "{dom}");
    let probes = table(&dom, "probes");
    assert_eq!(probes.len(), 4, "{probes:?}");
    // Newest first.
    let (transfer, find, dead, echo) = (&probes[0], &probes[1], &probes[2], &probes[3]);
    assert_eq!(
        transfer[1..5],
        ["transfer", good.as_str(), "ARCHIVE@127.0.0.1:1", "failure"],
        "{transfer:?}"
    );
    assert_eq!(
        transfer[7], "destination: connect / refused",
        "{transfer:?}"
    );
    assert_eq!(
        dead[1..5],
        ["echo", "DEAD@127.0.0.1:1", "", "failure"],
        "{dead:?}"
    );
    assert_eq!(dead[7], "connect / refused");
    assert_eq!(dead[8], "logs");
    assert_eq!(
        find[1..6],
        ["find", good.as_str(), "", "success", "0 matches"],
        "{find:?}"
    );
    assert_eq!(
        echo[1..6],
        ["echo", good.as_str(), "", "success", ""],
        "an echo finds nothing beyond its verdict: {echo:?}"
    );
    assert!(rows_with(&dom, "DEAD@127.0.0.1:1")[0].contains("class=\"failed\""));

    // Filters, as the filter form submits them.
    let filtered = |query: &str| {
        table(
            &render(&exporter.url(&format!("/?{query}")), profile.path()),
            "probes",
        )
    };
    assert_eq!(filtered("module=&target=&result=failure").len(), 2);
    assert_eq!(filtered("module=find&target=&result=").len(), 1);
    let dead_only = filtered("module=&target=DEAD&result=");
    assert_eq!(dead_only.len(), 1, "{dead_only:?}");
    assert_eq!(dead_only[0][2], "DEAD@127.0.0.1:1");
    let none = render(&exporter.url("/?result=finding"), profile.path());
    assert!(
        none.contains("No recent probe matches the filter"),
        "{none}"
    );
    let (status, body) = exporter.get("/?result=maybe");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid result \"maybe\""), "{body}");

    // Follow the failed probe's logs link as the browser resolves it.
    let href = rows_with(&dom, "DEAD@127.0.0.1:1")[0]
        .split("href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("logs link");
    let log = render(&exporter.url(&format!("/{href}")), profile.path());
    assert!(log.contains("DEAD@127.0.0.1:1"), "{log}");
    assert!(log.contains("failed"), "{log}");
    assert!(log.contains("stage=connect reason=refused"), "{log}");
}

#[test]
fn demo_landing_page_probes_the_demo_pacs_and_shows_what_a_transfer_check_found() {
    let exporter = Binary::start("", &["--demo"]);
    let profile = tempfile::tempdir().expect("profile dir");
    let dom = render(&exporter.url("/"), profile.path());
    assert!(!dom.contains("pacs.example"), "{dom}");

    // Every example link probes the demo source, and the probe succeeds.
    let links: Vec<String> = dom
        .split("href=\"probe?")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(|query| format!("/probe?{}", query.replace("&amp;", "&")))
        .collect();
    assert_eq!(links.len(), 3, "{dom}");
    for link in &links {
        assert!(link.contains("target=DEMO_SOURCE%40127.0.0.1%3A"), "{link}");
        let (status, body) = exporter.get(link);
        assert_eq!(status, 200, "{link}: {body}");
        assert!(body.contains("\nprobe_success 1\n"), "{link}: {body}");
    }

    let dom = render(&exporter.url("/"), profile.path());
    let probes = table(&dom, "probes");
    let found: Vec<(&str, &str)> = probes
        .iter()
        .map(|row| (row[1].as_str(), row[5].as_str()))
        .collect();
    assert!(
        found.contains(&("send_check", "checked 23, missing 3, incomplete 1")),
        "{probes:?}"
    );
    assert!(found.contains(&("echo", "")), "{probes:?}");
    // The transfer check ran and found studies missing: said so, and coloured apart.
    let transfer = probes
        .iter()
        .find(|row| row[1] == "send_check")
        .expect("the send_check row");
    assert!(
        transfer[3].starts_with("DEMO_DEST@127.0.0.1:"),
        "{transfer:?}"
    );
    assert_eq!(
        transfer[4], "success: studies not at the destination",
        "{transfer:?}"
    );
    assert!(
        rows_with(&dom, "checked 23, missing 3")[0].contains("class=\"finding\""),
        "{dom}"
    );
    // The form starts with the demo source.
    assert!(dom.contains("value=\"DEMO_SOURCE@127.0.0.1:"), "{dom}");
}
