//! The exporter's real router, driven in-process, and a reader for its metrics text.


use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use pacs_exporter::config::Config;
use pacs_exporter::web::{router, AppState, ServerOptions};
use tower::ServiceExt;

pub struct Exporter {
    pub state: Arc<AppState>,
}

/// One HTTP answer.
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub body: String,
    /// How long the request took, end to end.
    pub elapsed: Duration,
}

impl Exporter {
    /// An exporter serving `config` (YAML), with the default 0.5 s timeout offset.
    pub fn new(config: &str) -> Exporter {
        let config = Config::parse(config).unwrap_or_else(|e| panic!("test config: {e}"));
        Exporter {
            state: Arc::new(AppState::new(config, ServerOptions::default())),
        }
    }

    pub async fn get(&self, uri: &str, headers: &[(&str, &str)]) -> Answer {
        self.request("GET", uri, headers).await
    }

    pub async fn request(&self, method: &str, uri: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Body::empty()).expect("valid test request");
        let start = Instant::now();
        let response = router(self.state.clone())
            .oneshot(request)
            .await
            .expect("router answers");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        Answer {
            status,
            content_type,
            body: String::from_utf8(bytes.to_vec()).expect("UTF-8 body"),
            elapsed: start.elapsed(),
        }
    }

    /// `GET /probe?target=…&module=…`, with Prometheus' scrape-timeout header when given.
    pub async fn probe(&self, module: &str, target: &str, scrape_timeout: Option<f64>) -> Answer {
        let uri = format!(
            "/probe?module={module}&target={}",
            target.replace('@', "%40").replace(' ', "%20")
        );
        let header;
        let headers: &[(&str, &str)] = match scrape_timeout {
            Some(t) => {
                header = t.to_string();
                &[("X-Prometheus-Scrape-Timeout-Seconds", &header)]
            }
            None => &[],
        };
        self.get(&uri, headers).await
    }
}

impl Answer {
    /// Asserts the answer came before Prometheus would have given up (`scrape_timeout`
    /// seconds), and passes it on.
    pub fn within(self, scrape_timeout: f64) -> Answer {
        assert!(
            self.elapsed < std::time::Duration::from_secs_f64(scrape_timeout),
            "answered after the scrape timeout: {:?}\n{}",
            self.elapsed,
            self.body
        );
        self
    }

    /// The value of one series, written as it appears in the exposition
    /// (`probe_success`, `probe_failure_info{reason="refused",stage="connect"}`).
    pub fn value(&self, series: &str) -> Option<f64> {
        crate::metrics::series_value(&self.body, series)
    }

    /// Like [`Answer::value`], panicking with the whole body when the series is absent.
    pub fn metric(&self, series: &str) -> f64 {
        self.value(series)
            .unwrap_or_else(|| panic!("no series {series} in:\n{}", self.body))
    }

    /// (StudyInstanceUID, state) of every `pacs_study_unsent` series.
    pub fn unsent(&self) -> std::collections::BTreeSet<(String, String)> {
        self.series("pacs_study_unsent")
            .into_iter()
            .map(|l| (l["study_instance_uid"].clone(), l["state"].clone()))
            .collect()
    }

    /// The names of every series family in the answer, sorted.
    pub fn families(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .body
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .map(str::to_string)
            .collect();
        names.sort();
        names
    }

    /// Asserts a failed probe with exactly this stage and reason (and, for send_check, some
    /// side: see [`Answer::assert_failed_on`]).
    pub fn assert_failed(&self, stage: &str, reason: &str) {
        self.assert_failure(stage, reason, None);
    }

    /// Asserts a failed send_check probe with this side, stage and reason.
    pub fn assert_failed_on(&self, peer: &str, stage: &str, reason: &str) {
        self.assert_failure(stage, reason, Some(peer));
    }

    fn assert_failure(&self, stage: &str, reason: &str, peer: Option<&str>) {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        assert_eq!(self.metric("probe_success"), 0.0, "{}", self.body);
        let failures = self.series("probe_failure_info");
        assert_eq!(
            failures.len(),
            1,
            "one failure series expected:\n{}",
            self.body
        );
        let labels = &failures[0];
        assert_eq!(
            (
                labels.get("stage").map(String::as_str),
                labels.get("reason").map(String::as_str)
            ),
            (Some(stage), Some(reason)),
            "expected stage={stage} reason={reason} in:\n{}",
            self.body
        );
        if let Some(peer) = peer {
            assert_eq!(
                labels.get("peer").map(String::as_str),
                Some(peer),
                "expected peer={peer} in:\n{}",
                self.body
            );
        }
    }
}

impl Answer {
    /// The label sets of every series of `family`, as name → value maps.
    pub fn series(&self, family: &str) -> Vec<std::collections::BTreeMap<String, String>> {
        let prefix = format!("{family}{{");
        self.body
            .lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .map(|rest| {
                let mut labels = std::collections::BTreeMap::new();
                let mut chars = rest.chars().peekable();
                loop {
                    let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
                    if name.is_empty() || chars.next() != Some('"') {
                        break;
                    }
                    let mut value = String::new();
                    while let Some(c) = chars.next() {
                        match c {
                            '\\' => match chars.next() {
                                Some('n') => value.push('\n'),
                                Some(other) => value.push(other),
                                None => break,
                            },
                            '"' => break,
                            c => value.push(c),
                        }
                    }
                    labels.insert(name.trim_start_matches(',').to_string(), value);
                    if chars.peek() == Some(&'}') {
                        break;
                    }
                }
                labels
            })
            .collect()
    }
}
