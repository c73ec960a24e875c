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

#[test]
fn landing_page_shows_recent_probes_and_their_logs() {
    let orthanc = Orthanc::start("ORTHANC");
    let exporter = Binary::start(
        "modules:\n  echo:\n    prober: echo\n    timeout: 5s\n",
        &[],
    );
    let good = format!("ORTHANC@127.0.0.1:{}", orthanc.dicom_port);
    let (status, _) = exporter.get(&format!(
        "/probe?module=echo&target={}",
        good.replace('@', "%40")
    ));
    assert_eq!(status, 200);
    let (status, _) = exporter.get("/probe?module=echo&target=DEAD%40127.0.0.1%3A1");
    assert_eq!(status, 200);

    let profile = tempfile::tempdir().expect("profile dir");
    let dom = render(&exporter.url("/"), profile.path());
    assert!(dom.contains("PACS Exporter"), "{dom}");
    assert!(dom.contains(env!("CARGO_PKG_VERSION")));
    let modules = table(&dom, "modules");
    assert_eq!(modules[0][..3], ["echo", "echo", "5s"], "{modules:?}");
    // No real PACS to name: the module's called AE title at a placeholder host, said so.
    assert_eq!(modules[0][3], "debug probe of ANY-SCP@pacs.example:104");
    assert!(
        dom.contains("<code>pacs.example</code>, a placeholder: replace it"),
        "{dom}"
    );

    let probes = table(&dom, "probes");
    assert_eq!(probes.len(), 2, "{probes:?}");
    // Newest first: the failed probe, then the good one.
    let (failed, succeeded) = (&probes[0], &probes[1]);
    assert_eq!(
        failed[1..4],
        ["echo", "DEAD@127.0.0.1:1", "failure"],
        "{failed:?}"
    );
    assert_eq!(failed[4], "", "{failed:?}");
    assert_eq!(failed[6], "connect / refused");
    assert_eq!(failed[7], "logs");
    assert_eq!(
        succeeded[1..4],
        ["echo", good.as_str(), "success"],
        "{succeeded:?}"
    );
    assert_eq!(succeeded[4], "", "an echo finds nothing beyond its verdict");
    assert_eq!(succeeded[6], "");

    // Follow the failed probe's logs link as the browser resolves it.
    let row = dom
        .split("<tr")
        .find(|r| r.contains("DEAD@127.0.0.1:1"))
        .expect("row");
    let href = row
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
    assert!(!dom.contains("placeholder"), "{dom}");

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
        .map(|row| (row[1].as_str(), row[4].as_str()))
        .collect();
    assert!(
        found.contains(&("send_check", "checked 23, missing 3, incomplete 1")),
        "{probes:?}"
    );
    assert!(found.contains(&("echo", "")), "{probes:?}");
}
